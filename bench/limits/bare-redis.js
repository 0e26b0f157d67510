'use strict';
/**
 * The cache-hit limit: node:http + one Redis GET of the exact bytes ours
 * answers for the user (the bench stores them under `<BENCH_KEY_PREFIX><userId>`
 * before the run), written to the socket as stored. Env: PORT, REDIS_URL, BENCH_KEY_PREFIX.
 */
const http = require('node:http');
const { createClient, RESP_TYPES } = require('@redis/client');
const { benchRoute, listen } = require('../peers/common');
const { drain, userIdFromAuthorization } = require('./token');

const prefix = process.env.BENCH_KEY_PREFIX;
const redis = createClient({ url: process.env.REDIS_URL }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });

async function handle(req, res) {
  await drain(req);
  const userId = userIdFromAuthorization(req.headers.authorization);
  const body = userId ? await redis.get(prefix + userId) : null;
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
