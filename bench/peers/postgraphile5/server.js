'use strict';
/**
 * PostGraphile 5 (Grafast) on the bench tables, in library mode on node:http,
 * with the production settings a team would use (no GraphiQL, no watch, no
 * explain, NODE_ENV=production set by the bench). Env: PORT, DATABASE_URL,
 * DB_POOL_MAX.
 *
 * PostGraphile 5 declares Node >= 22; Grafast and Grafserv call
 * `Promise.withResolvers`, which Node 20 lacks, so it is polyfilled before they load.
 */
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

const http = require('node:http');
const { Pool } = require('pg');
const { postgraphile } = require('postgraphile');
const { PostGraphileAmberPreset } = require('postgraphile/presets/amber');
const { makePgService } = require('postgraphile/adaptors/pg');
const { grafserv } = require('postgraphile/grafserv/node');
const { benchRoute, countStatements, listen } = require('../common');

const pool = countStatements(new Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.DB_POOL_MAX || 10) }));

const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [makePgService({ pool, schemas: ['public'] })],
  grafserv: { graphqlPath: '/graphql', graphiql: false, watch: false },
  grafast: { explain: false },
};

async function main() {
  const pgl = postgraphile(preset);
  await pgl.getSchema(); // build the schema before reporting ready
  const serv = pgl.createServ(grafserv);
  const handler = serv.createHandler();
  const server = http.createServer((req, res) => {
    if (!benchRoute(req, res)) handler(req, res);
  });
  listen(server, async () => {
    await pgl.release();
    await pool.end();
  });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
