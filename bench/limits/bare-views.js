'use strict';
/**
 * The honest limit of the conversation and comparison views (issue 20 item 2):
 * node:http + pg, ONE prepared statement per request that builds the whole
 * JSON document in PostgreSQL, as ours' compiled read does
 * (src/graphql/compiled-read.ts, src/db/read-plan.ts). No GraphQL, no ORM, no
 * cache. It answers ours' own requests (`operationName` ConversationView or
 * ComparisonView, the variables parsed from the body) with ours' data:
 *
 * - conversation view: the conversation (owner checked, not deleted) and a page
 *   of its current messages (its own and a fork's inherited ones, as ours reads
 *   them) after the cursor, oldest first, with `hasNextPage` and `endCursor`, in
 *   one pass over the page (ours' statement reads it twice: nodes, then
 *   pageInfo). The cursor is ours' (same HMAC, same scope): verified and decoded
 *   here, and the end cursor signed the same way, so the bench can feed either
 *   server the other's cursor (the data check compares the end cursors too).
 * - comparison view: the comparison (owner checked) and its responses by
 *   position, model, provider and completion tokens hidden (null) while a
 *   blind comparison has no vote, as ours hides them.
 *
 * Env: PORT, DATABASE_URL, DB_POOL_MAX, BENCH_CURSOR_SECRET (ours' JWT_SECRET).
 */
const http = require('node:http');
const { createHmac, timingSafeEqual } = require('node:crypto');
const { Pool } = require('pg');
const { benchRoute, countStatements, listen } = require('../peers/common');
const { userIdFromAuthorization } = require('./token');

const pool = countStatements(new Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.DB_POOL_MAX || 10) }));
const secret = process.env.BENCH_CURSOR_SECRET || '';

const ISO = `'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'`;
const at = (column) => `'"' || to_char(${column} at time zone 'UTC', ${ISO}) || '"'`;

/**
 * The conversation's current messages, its own and those a fork inherits (as of the fork), as ours' read plan
 * defines them (src/db/read-plan.ts childSourceSql): the seeded conversations have no ancestors, so the second branch
 * is one index probe, but the limit answers every conversation as ours does.
 */
const OWN_AND_INHERITED = `
  select o.id, o.role, o.content, o.created_at from messages o where o.conversation_id = c.id and o.replaced_at is null
  union all
  select s.id, s.role, s.content, s.created_at
    from conversation_ancestors x
    join messages s on s.conversation_id = x.ancestor_id
     and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id)
     and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
   where x.conversation_id = c.id
     and not exists (select 1 from messages f
                      where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id)
                        and f.replaced_at is null)
     and not exists (select 1 from conversation_ancestors y
                       join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
                      where y.conversation_id = x.conversation_id and y.created_at > x.created_at
                        and coalesce(g.answered_at, g.created_at) <= y.created_at
                        and (g.replaced_at is null or g.replaced_at > y.created_at))`;

/** $1 id, $2 owner, $3 page size, $4/$5 the cursor's position (null: first page). chr(2) marks the end cursor to sign. */
const CONVERSATION = {
  name: 'bare_conversation_view',
  text: `select '{"data":{"conversation":{"id":' || to_json(c.id::text)::text || ',"title":' || to_json(c.title)::text
                || ',"messages":{"nodes":[' || coalesce(p.nodes, '') || '],"pageInfo":{"hasNextPage":'
                || (case when p.n > $3::int then 'true' else 'false' end) || ',"endCursor":'
                || (case when p.end_id is null then 'null' else chr(2) end) || '}}}}}' as j,
                p.end_at, p.end_id
           from conversations c
           cross join lateral (
             select count(*) as n,
                    string_agg('{"id":' || to_json(m.id::text)::text || ',"role":"' || m.role || '","content":'
                               || to_json(m.content)::text || ',"createdAt":' || ${at('m.created_at')} || '}', ','
                               order by m.created_at, m.id) filter (where m.rn <= $3::int) as nodes,
                    (array_agg(to_char(m.created_at at time zone 'UTC', ${ISO}) order by m.rn desc)
                      filter (where m.rn <= $3::int))[1] as end_at,
                    (array_agg(m.id::text order by m.rn desc) filter (where m.rn <= $3::int))[1] as end_id
               from (select t.*, row_number() over (order by t.created_at, t.id) as rn
                       from (${OWN_AND_INHERITED}) t
                      where $4::timestamptz is null or (t.created_at, t.id) > ($4::timestamptz, $5::uuid)
                      order by t.created_at, t.id
                      limit $3::int + 1) m) p
          where c.id = $1::uuid and c.owner_id = $2::uuid and c.deleted_at is null`,
};

/** $1 id, $2 owner. */
const hidden = (column) => `case when h.hidden then 'null' else ${column} end`;
const COMPARISON = {
  name: 'bare_comparison_view',
  text: `select '{"data":{"comparison":{"id":' || to_json(r.id::text)::text || ',"prompt":' || to_json(r.prompt)::text
                || ',"createdAt":' || ${at('r.created_at')} || ',"responses":[' || coalesce((
                  select string_agg('{"id":' || to_json(s.id::text)::text
                                    || ',"provider":' || ${hidden(`'"' || s.provider || '"'`)}
                                    || ',"model":' || ${hidden('to_json(s.model)::text')}
                                    || ',"content":' || to_json(s.content)::text
                                    || ',"latencyMs":' || coalesce(s.latency_ms::text, 'null')
                                    || ',"completionTokens":' || ${hidden(`coalesce(s.completion_tokens::text, 'null')`)} || '}', ','
                                    order by s.position)
                    from comparison_responses s where s.comparison_id = r.id), '') || ']}}}' as j
           from comparison_results r
           cross join lateral (select r.blind and not exists (select 1 from votes v where v.comparison_id = r.id) as hidden) h
          where r.id = $1::uuid and r.owner_id = $2::uuid`,
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const sign = (body) => createHmac('sha256', secret).update(body).digest('base64url').slice(0, 22);

/** Ours' cursor (src/db/pagination.ts): base64url(JSON [scope, iso, id]).hmac; null when it does not verify. */
function decodeCursor(scope, cursor) {
  const [body, mac, trailing] = cursor.split('.');
  if (!body || !mac || trailing !== undefined) return null;
  const expected = Buffer.from(sign(body));
  const given = Buffer.from(mac);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return null;
  try {
    const [s, iso, id] = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    return s === scope && typeof iso === 'string' && UUID.test(id) ? { iso, id } : null;
  } catch {
    return null;
  }
}

function encodeCursor(scope, iso, id) {
  const body = Buffer.from(JSON.stringify([scope, iso, id])).toString('base64url');
  return `${body}.${sign(body)}`;
}

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

async function handle(req, res) {
  const { operationName, variables = {} } = JSON.parse(await readBody(req));
  const userId = userIdFromAuthorization(req.headers.authorization);
  if (!userId) return answer(res, 401, '{"errors":[{"message":"no token"}]}');
  const id = String(variables.id ?? '');
  if (!UUID.test(id)) return answer(res, 200, '{"errors":[{"message":"not found"}]}');
  if (operationName === 'ConversationView') {
    const n = variables.n ?? 20;
    if (!Number.isInteger(n) || n < 1 || n > 100) return answer(res, 200, '{"errors":[{"message":"bad first"}]}');
    const scope = `messages:${id}`;
    const after = variables.after ? decodeCursor(scope, String(variables.after)) : null;
    if (variables.after && !after) return answer(res, 200, '{"errors":[{"message":"Invalid cursor"}]}');
    const { rows } = await pool.query({ ...CONVERSATION, values: [id, userId, n, after?.iso ?? null, after?.id ?? null] });
    if (!rows[0]) return answer(res, 200, '{"data":{"conversation":null},"errors":[{"message":"Conversation not found"}]}');
    const row = rows[0];
    return answer(res, 200, row.end_id ? row.j.replace('\u0002', JSON.stringify(encodeCursor(scope, row.end_at, row.end_id))) : row.j);
  }
  if (operationName === 'ComparisonView') {
    const { rows } = await pool.query({ ...COMPARISON, values: [id, userId] });
    if (!rows[0]) return answer(res, 200, '{"data":{"comparison":null},"errors":[{"message":"Comparison not found"}]}');
    return answer(res, 200, rows[0].j);
  }
  return answer(res, 400, '{"errors":[{"message":"unknown operation"}]}');
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
