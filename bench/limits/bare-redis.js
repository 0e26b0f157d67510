'use strict';
/**
 * The cache-hit limit: node:http + one Redis GET of the exact bytes ours
 * answers for the user (the bench stores them under `<BENCH_KEY_PREFIX><userId>`
 * before the run), written to the socket as stored. Env: PORT, REDIS_URL, BENCH_KEY_PREFIX.
 *
 * BENCH_KEY_FROM=token (the shared-page limit, `bare-redis-shared`): the key is
 * `<BENCH_KEY_PREFIX><variables.token>` of the JSON body, as a shared page is
 * named by its token and asked anonymously; the body is read and parsed, as any
 * server must to know which page is asked (ours also hashes the token and
 * checks a per-IP limit: this limit does neither).
 */
const http = require('node:http');
const { createClient, RESP_TYPES } = require('@redis/client');
const { benchRoute, listen } = require('../peers/common');
const { drain, readAll, userIdFromAuthorization } = require('./token');

const prefix = process.env.BENCH_KEY_PREFIX;
const byToken = process.env.BENCH_KEY_FROM === 'token';

/** The page's key: the user of the bearer token, or (shared pages) the body's `variables.token`. */
async function keyOf(req) {
  if (!byToken) {
    await drain(req);
    return userIdFromAuthorization(req.headers.authorization);
  }
  try {
    const token = JSON.parse((await readAll(req)).toString('utf8'))?.variables?.token;
    return typeof token === 'string' ? token : null;
  } catch {
    return null;
  }
}
const redis = createClient({ url: process.env.REDIS_URL }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });

async function handle(req, res) {
  const key = await keyOf(req);
  const body = key ? await redis.get(prefix + key) : null;
  if (!body) {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"errors":[{"message":"not seeded"}]}');
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
  res.end(body);
}

async function main() {
  redis.on('error', (error) => console.error('redis error', error.message));
  await redis.connect();
  const server = http.createServer((req, res) => {
    if (benchRoute(req, res)) return;
    handle(req, res).catch((error) => {
      console.error(error);
      if (!res.headersSent) res.writeHead(500);
      res.end('{"errors":[{"message":"internal"}]}');
    });
  });
  listen(server, () => redis.close());
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
