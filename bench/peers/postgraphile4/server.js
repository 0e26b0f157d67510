'use strict';
/**
 * PostGraphile 4 on the bench tables, as middleware on node:http, with the
 * options PostGraphile's docs recommend for production (no GraphiQL, no
 * watch, no query log, RBAC respected, errors without stacks; NODE_ENV=production
 * set by the bench). It needs graphql 15, hence its own folder. Env: PORT,
 * DATABASE_URL, DB_POOL_MAX.
 */
const http = require('node:http');
const { Pool } = require('pg');
const { postgraphile } = require('postgraphile');
const { benchRoute, countStatements, listen } = require('../common');

const pool = countStatements(new Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.DB_POOL_MAX || 10) }));

const middleware = postgraphile(pool, 'public', {
  graphqlRoute: '/graphql',
  graphiql: false,
  watchPg: false,
  retryOnInitFail: false,
  dynamicJson: true,
  setofFunctionsContainNulls: false,
  ignoreRBAC: false,
  legacyRelations: 'omit',
  disableQueryLog: true,
  enableQueryBatching: false,
  extendedErrors: ['errcode'],
  showErrorStack: false,
});

async function main() {
  await middleware.getGraphQLSchema(); // build the schema before reporting ready
  const server = http.createServer((req, res) => {
    if (!benchRoute(req, res)) middleware(req, res);
  });
  listen(server, () => pool.end());
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
