'use strict';
/**
 * The practical SQL limit of the history page: node:http + pg, three prepared
 * statements (user; 20 conversations with their first 10 messages through one
 * LATERAL join; 10 comparisons with their responses) run concurrently on the
 * pool, and the JSON written by hand in exactly ours' shape. No GraphQL, no
 * ORM, no cache. Env: PORT, DATABASE_URL, DB_POOL_MAX.
 */
const http = require('node:http');
const { Pool } = require('pg');
const { benchRoute, countStatements, listen } = require('../peers/common');
const { drain, userIdFromAuthorization } = require('./token');

const pool = countStatements(new Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.DB_POOL_MAX || 10) }));

const ME = { name: 'bare_me', text: 'select id, email from users where id = $1' };
const CONVERSATIONS = {
  name: 'bare_conversations',
  text: `select c.id, c.title, c.created_at, c.updated_at, m.id as m_id, m.role, m.content, m.created_at as m_created_at
           from (select id, title, created_at, updated_at from conversations where owner_id = $1
                  order by created_at desc, id desc limit 20) c
           left join lateral (select id, role, content, created_at from messages where conversation_id = c.id
                               order by created_at, id limit 10) m on true
          order by c.created_at desc, c.id desc, m.created_at, m.id`,
};
const COMPARISONS = {
  name: 'bare_comparisons',
  text: `select r.id, s.id as s_id, s.provider, s.model, s.content, s.latency_ms, s.completion_tokens
           from (select id, created_at from comparison_results where owner_id = $1
                  order by created_at desc, id desc limit 10) r
           left join comparison_responses s on s.comparison_id = r.id
          order by r.created_at desc, r.id desc, s.position`,
};

const str = JSON.stringify;

function page(me, conversations, comparisons) {
  let out = `{"data":{"me":{"id":${str(me.id)},"email":${str(me.email)}},"conversations":{"nodes":[`;
  let current = null;
  let messages = 0;
  for (const row of conversations) {
    if (row.id !== current) {
      if (current !== null) out += ']}},';
      current = row.id;
      messages = 0;
      out += `{"id":${str(row.id)},"title":${str(row.title)},"createdAt":"${row.created_at.toISOString()}","updatedAt":"${row.updated_at.toISOString()}","messages":{"nodes":[`;
    }
    if (row.m_id !== null) {
      out += `${messages++ ? ',' : ''}{"id":${str(row.m_id)},"role":"${row.role}","content":${str(row.content)},"createdAt":"${row.m_created_at.toISOString()}"}`;
    }
  }
  if (current !== null) out += ']}}';
  out += ']},"comparisons":{"nodes":[';
  current = null;
  let responses = 0;
  for (const row of comparisons) {
    if (row.id !== current) {
      if (current !== null) out += ']},';
      current = row.id;
      responses = 0;
      out += `{"id":${str(row.id)},"responses":[`;
    }
    if (row.s_id !== null) {
      out += `${responses++ ? ',' : ''}{"id":${str(row.s_id)},"provider":"${row.provider}","model":${str(row.model)},"content":${str(row.content)},"latencyMs":${row.latency_ms},"completionTokens":${row.completion_tokens}}`;
    }
  }
  if (current !== null) out += ']}';
  return out + ']}}}';
}

async function handle(req, res) {
  await drain(req);
  const userId = userIdFromAuthorization(req.headers.authorization);
  if (!userId) {
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end('{"errors":[{"message":"no token"}]}');
    return;
  }
  const values = [userId];
  const [me, conversations, comparisons] = await Promise.all([
    pool.query({ ...ME, values }),
    pool.query({ ...CONVERSATIONS, values }),
    pool.query({ ...COMPARISONS, values }),
  ]);
  if (!me.rows[0]) {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"errors":[{"message":"no such user"}]}');
    return;
  }
  const body = page(me.rows[0], conversations.rows, comparisons.rows);
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
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
