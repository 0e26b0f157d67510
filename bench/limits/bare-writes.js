'use strict';
/**
 * The limit of the writes (issue 20 item 4): node:http + pg, the same INSERTs
 * as ours in ONE transaction per request (begin … commit on one pooled
 * client), the JSON written by hand in ours' shape. No GraphQL, no ORM, no
 * cache, no rate limits, no budgets. It answers ours' own requests, told apart
 * by `operationName`:
 *
 * - CreateConversation: insert the conversation.
 * - Vote: insert the vote, guarded in the same statement (the caller owns the
 *   comparison, no response still running, the winner a COMPLETED response of
 *   it); a second vote on a comparison fails on the unique key, as it must.
 * - SendMessage: read the conversation's history (owner checked), call the
 *   fake provider (the OpenAI wire format, streamed, one keep-alive pool),
 *   then insert the user's message and the reply and touch the conversation.
 *
 * Env: PORT, DATABASE_URL, DB_POOL_MAX, BENCH_OPENAI_BASE_URL (the fake provider).
 */
const http = require('node:http');
const { randomUUID } = require('node:crypto');
const { Pool } = require('pg');
const { benchRoute, countStatements, listen } = require('../peers/common');
const { userIdFromAuthorization } = require('./token');

const pool = countStatements(new Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.DB_POOL_MAX || 10) }));
const openai = process.env.BENCH_OPENAI_BASE_URL || '';
const str = JSON.stringify;

const CREATE = {
  name: 'bare_create_conversation',
  text: `insert into conversations (id, created_at, owner_id, title, updated_at) values ($1, $2, $3, $4, $2)
         returning id::text, title, created_at`,
};
const VOTE = {
  name: 'bare_vote',
  text: `insert into votes (id, created_at, comparison_id, user_id, outcome, winner_id, cast_blind)
         select $1::uuid, now(), r.id, $3::uuid, $4::vote_outcome, $5::uuid, r.blind
           from comparison_results r
          where r.id = $2::uuid and r.owner_id = $3::uuid
            and not exists (select 1 from comparison_responses s where s.comparison_id = r.id and s.status in ('PENDING', 'STREAMING'))
            and ($5::uuid is null or exists (select 1 from comparison_responses w
                                              where w.id = $5::uuid and w.comparison_id = r.id and w.status = 'COMPLETED'))
         returning id::text, outcome`,
};
const HISTORY = {
  name: 'bare_history',
  text: `select m.role, m.content, m.model
           from conversations c left join messages m on m.conversation_id = c.id and m.replaced_at is null
          where c.id = $1::uuid and c.owner_id = $2::uuid and c.deleted_at is null
          order by m.created_at, m.id`,
};
const MESSAGE = {
  name: 'bare_insert_message',
  text: `insert into messages (id, created_at, conversation_id, role, content, provider, model,
                              prompt_tokens, completion_tokens, latency_ms)
         values ($1, $2, $3, $4::message_role, $5, $6::provider, $7, $8, $9, $10)`,
};
const TOUCH = { name: 'bare_touch_conversation', text: 'update conversations set updated_at = $2 where id = $1' };

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function answer(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Runs `fn(client)` between begin and commit on one pooled client. */
async function transaction(fn) {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const result = await fn(client);
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** One streamed chat completion from the fake provider: the text and the usage. */
async function complete(model, messages) {
  const started = performance.now();
  const res = await fetch(`${openai}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench-limit' },
    body: str({ model, messages, stream: true, stream_options: { include_usage: true } }),
  });
  if (!res.ok) throw new Error(`provider HTTP ${res.status}`);
  let text = '';
  let usage = null;
  for (const line of (await res.text()).split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
    const event = JSON.parse(line.slice(6));
    text += event.choices?.[0]?.delta?.content ?? '';
    if (event.usage) usage = event.usage;
  }
  return { text, usage, latencyMs: Math.round(performance.now() - started) };
}

async function sendMessage(userId, input) {
  const [provider, name] = String(input.model).split(':');
  if (provider !== 'openai' || !name) return { errors: 'unsupported model' };
  const history = (await pool.query({ ...HISTORY, values: [input.conversationId, userId] })).rows;
  if (!history.length) return { errors: 'Conversation not found' };
  // Each model sees the user's turns and its own answers, as ours' history does.
  const turns = history
    .filter((m) => m.role === 'USER' || (m.role === 'ASSISTANT' && m.model === input.model))
    .map((m) => ({ role: m.role.toLowerCase(), content: m.content }));
  turns.push({ role: 'user', content: input.content });
  const reply = await complete(name, turns);
  const at = Date.now();
  const id = randomUUID();
  await transaction(async (client) => {
    await client.query({
      ...MESSAGE,
      values: [randomUUID(), new Date(at), input.conversationId, 'USER', input.content, null, null, null, null, null],
    });
    await client.query({
      ...MESSAGE,
      values: [
        id,
        new Date(at + 1),
        input.conversationId,
        'ASSISTANT',
        reply.text,
        'OPENAI',
        input.model,
        reply.usage?.prompt_tokens ?? null,
        reply.usage?.completion_tokens ?? null,
        reply.latencyMs,
      ],
    });
    await client.query({ ...TOUCH, values: [input.conversationId, new Date(at + 1)] });
  });
  return `{"data":{"sendMessage":{"id":${str(id)},"role":"ASSISTANT","content":${str(reply.text)},"model":${str(input.model)}}}}`;
}

async function handle(req, res) {
  const { operationName, variables = {} } = JSON.parse(await readBody(req));
  const userId = userIdFromAuthorization(req.headers.authorization);
  if (!userId) return answer(res, 401, '{"errors":[{"message":"no token"}]}');
  let body;
  if (operationName === 'CreateConversation') {
    const title = String(variables.title ?? 'New conversation').trim() || 'New conversation';
    const [row] = await transaction(
      async (client) => (await client.query({ ...CREATE, values: [randomUUID(), new Date(), userId, title] })).rows,
    );
    body = `{"data":{"createConversation":{"id":${str(row.id)},"title":${str(row.title)},"createdAt":"${row.created_at.toISOString()}"}}}`;
  } else if (operationName === 'Vote') {
    const input = variables.input ?? {};
    const values = [randomUUID(), input.comparisonId, userId, input.outcome, input.winnerResponseId ?? null];
    const [row] = await transaction(async (client) => (await client.query({ ...VOTE, values })).rows);
    body = row ? `{"data":{"vote":{"id":${str(row.id)},"outcome":"${row.outcome}"}}}` : { errors: 'Comparison not found' };
  } else if (operationName === 'SendMessage') {
    body = await sendMessage(userId, variables.input ?? {});
  } else {
    return answer(res, 400, '{"errors":[{"message":"unknown operation"}]}');
  }
  if (typeof body !== 'string') return answer(res, 200, `{"data":null,"errors":[{"message":${str(body.errors)}}]}`);
  return answer(res, 200, body);
}

const server = http.createServer((req, res) => {
  if (benchRoute(req, res)) return;
  handle(req, res).catch((error) => {
    console.error(error);
    if (!res.headersSent) res.writeHead(500);
    res.end('{"errors":[{"message":"internal"}]}');
  });
});
listen(server, () => pool.end());
