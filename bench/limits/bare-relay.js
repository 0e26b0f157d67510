'use strict';
/**
 * The streaming limit of `npm run bench:stream`: node:http and nothing else.
 * `POST /relay` with `{ "prompt": "…", "models": ["bench-stream-1", …] }`
 * opens one upstream chat-completions stream per model at the fake provider
 * (UPSTREAM_URL, the same requests the AI SDK sends), and relays every delta
 * to the client the moment it arrives, as graphql-sse `next` events in the
 * shape of ours' `comparisonEvents` (responseId = the model name): an opening
 * event per response with `content: ""`, a `delta` event per upstream delta,
 * the full `content` at the end of each upstream, then `event: complete`.
 * No database, no pub/sub, no replay: the floor of parse, re-serialise and write.
 * Env: PORT, UPSTREAM_URL.
 */
const http = require('node:http');
const { benchRoute, listen } = require('../peers/common');

const upstream = new URL(`${process.env.UPSTREAM_URL.replace(/\/+$/, '')}/chat/completions`);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

function event(res, responseId, status, delta, content) {
  if (res.destroyed) return;
  const data = JSON.stringify({ data: { comparisonEvents: { responseId, status, delta, content, error: null } } });
  res.write(`event: next\ndata: ${data}\n\n`);
}

/** One upstream stream: calls onDelta(text) per delta, resolves with the whole text. */
function relayOne(model, prompt, onDelta, signal) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({
      model,
      messages: [{ role: 'user', content: prompt }],
      max_tokens: 4096,
      stream: true,
      stream_options: { include_usage: true },
    });
    const req = http.request(
      upstream,
      {
        method: 'POST',
        agent,
        signal,
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench-relay', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`upstream answered ${res.statusCode}`));
          return;
        }
        res.setEncoding('utf8');
        let buffer = '';
        let text = '';
        res.on('data', (chunk) => {
          buffer += chunk;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            if (!block.startsWith('data: ')) continue;
            const data = block.slice(6);
            if (data === '[DONE]') continue;
            const delta = JSON.parse(data).choices?.[0]?.delta?.content;
            if (delta) {
              text += delta;
              onDelta(delta);
            }
          }
        });
        res.on('end', () => resolve(text));
        res.on('error', reject);
      },
    );
    req.on('socket', (socket) => socket.setNoDelay(true));
    req.on('error', reject);
    req.end(body);
  });
}

function handle(req, res) {
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    let input;
    try {
      input = JSON.parse(Buffer.concat(parts).toString('utf8'));
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end('{"errors":[{"message":"bad body"}]}');
      return;
    }
    const controller = new AbortController();
    res.on('close', () => controller.abort());
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
    for (const model of input.models) event(res, model, 'PENDING', null, '');
    Promise.all(
      input.models.map((model) =>
        relayOne(model, input.prompt, (delta) => event(res, model, 'STREAMING', delta, null), controller.signal).then(
          (text) => event(res, model, 'COMPLETED', null, text),
          () => event(res, model, 'FAILED', null, ''),
        ),
      ),
    ).then(() => {
      if (!res.destroyed) res.end('event: complete\ndata: \n\n');
    });
  });
}

const server = http.createServer({ noDelay: true }, (req, res) => {
  if (benchRoute(req, res)) return;
  if (req.method === 'POST' && req.url === '/relay') return handle(req, res);
  res.writeHead(404);
  res.end();
});
listen(server);
