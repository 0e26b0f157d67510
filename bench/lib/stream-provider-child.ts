/**
 * The fake LLM provider of `npm run bench:stream`, in its own process (forked
 * by bench/stream.ts): OpenAI chat completions over SSE, as the AI SDK's
 * openai provider reads them and as test/helpers/fake-llm.ts writes them (a
 * role chunk, one chunk per delta, a finish chunk, the usage chunk when
 * `stream_options.include_usage`, `data: [DONE]`), on 127.0.0.1.
 *
 * Every answer is `deltas` deltas written `intervalMs` apart on a fixed
 * cadence from the request (delta i due at (i + 1) × intervalMs; a late
 * timer does not push the next ones back), each a token that carries its own
 * write time (lib/stream-tokens.ts). The comparison number comes from the
 * prompt and the model number from the model name.
 *
 * argv: <deltas> <intervalMs>. Sends `{ url }` to the parent once listening,
 * answers `{ type: 'stats' }` with its counters and `{ type: 'written' }` with
 * the deltas written per answer since the last such call, exits when the parent disconnects.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { COMPARISON_IN_PROMPT, MODEL_INDEX, nowMs, tokenText } from './stream-tokens';

export interface ProviderStats {
  /** Streams started, finished (all deltas and [DONE] written), and closed early by the client. */
  started: number;
  finished: number;
  aborted: number;
  open: number;
  /** Deltas written. */
  deltas: number;
  /** Sum and max of how late a delta was written after its due time (timer lag of this process), ms. */
  lagMsSum: number;
  lagMsMax: number;
  /** Requests that were not a streamed chat completion of a bench model. */
  rejected: number;
}

const deltas = Number(process.argv[2] ?? 100);
const intervalMs = Number(process.argv[3] ?? 20);
const stats: ProviderStats = { started: 0, finished: 0, aborted: 0, open: 0, deltas: 0, lagMsSum: 0, lagMsMax: 0, rejected: 0 };
const CREATED = 1_700_000_000;
let nextId = 1;
/** Deltas written per answer ("k.m"), handed to the parent (and forgotten) on `{ type: 'written' }`. */
let written = new Map<string, number>();

function reject(res: ServerResponse, status: number, message: string): void {
  stats.rejected++;
  const body = JSON.stringify({ error: { message, type: 'invalid_request_error', param: null, code: null } });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function lastUserText(body: any): string {
  const messages: any[] = Array.isArray(body?.messages) ? body.messages : [];
  const user = [...messages].reverse().find((m) => m?.role === 'user');
  const content = user?.content;
  if (typeof content === 'string') return content;
  return Array.isArray(content) ? content.map((p: any) => (typeof p?.text === 'string' ? p.text : '')).join('') : '';
}

function handle(req: IncomingMessage, res: ServerResponse, raw: string): void {
  if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
    reject(res, 404, `No such route: ${req.method} ${req.url}`);
    return;
  }
  let body: any;
  try {
    body = JSON.parse(raw);
  } catch {
    reject(res, 400, 'Request body is not valid JSON.');
    return;
  }
  const model = String(body?.model ?? '');
  const m = MODEL_INDEX.exec(model)?.[1];
  const k = COMPARISON_IN_PROMPT.exec(lastUserText(body))?.[1];
  if (body?.stream !== true || !m || !k) {
    reject(res, 400, 'The bench provider only streams bench-stream models for bench-stream prompts.');
    return;
  }

  stats.started++;
  stats.open++;
  const answer = `${Number(k)}.${Number(m)}`;
  const base = `{"id":"bench-${nextId++}","object":"chat.completion.chunk","created":${CREATED},"model":${JSON.stringify(model)},`;
  const includeUsage = body?.stream_options?.include_usage === true;
  const usageNull = includeUsage ? ',"usage":null' : '';
  const chunk = (delta: object, finish: string | null) =>
    `data: ${base}"choices":[{"index":0,"delta":${JSON.stringify(delta)},"logprobs":null,"finish_reason":${JSON.stringify(finish)}}]${usageNull}}\n\n`;

  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  res.write(chunk({ role: 'assistant', content: '' }, null));
  const t0 = performance.now();
  let i = 0;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  res.on('close', () => {
    if (closed) return;
    closed = true;
    clearTimeout(timer);
    stats.open--;
    if (i < deltas || !res.writableFinished) stats.aborted++;
  });
  const tick = () => {
    if (closed) return;
    const lag = performance.now() - (t0 + (i + 1) * intervalMs);
    stats.lagMsSum += Math.max(0, lag);
    stats.lagMsMax = Math.max(stats.lagMsMax, lag);
    res.write(chunk({ content: tokenText(Number(k), Number(m), i, nowMs()) }, null));
    stats.deltas++;
    written.set(answer, i + 1);
    i++;
    if (i < deltas) {
      timer = setTimeout(tick, Math.max(0, t0 + (i + 1) * intervalMs - performance.now()));
      return;
    }
    const completionTokens = deltas;
    res.write(chunk({}, 'stop'));
    if (includeUsage)
      res.write(
        `data: ${base}"choices":[],"usage":{"prompt_tokens":8,"completion_tokens":${completionTokens},"total_tokens":${8 + completionTokens}}}\n\n`,
      );
    res.end('data: [DONE]\n\n', () => {
      stats.finished++;
    });
  };
  timer = setTimeout(tick, intervalMs);
}

const server = createServer({ noDelay: true, keepAliveTimeout: 65_000 }, (req, res) => {
  const parts: Buffer[] = [];
  req.on('data', (c: Buffer) => parts.push(c));
  req.on('end', () => handle(req, res, Buffer.concat(parts).toString('utf8')));
  req.on('error', () => res.destroy());
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.send!({ type: 'ready', url: `http://127.0.0.1:${port}` });
});
process.on('message', (message: { type: string }) => {
  if (message.type === 'stats') process.send!({ type: 'stats', stats });
  if (message.type === 'written') {
    process.send!({ type: 'written', written: [...written] });
    written = new Map();
  }
});
process.on('disconnect', () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
});
