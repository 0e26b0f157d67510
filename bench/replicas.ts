/**
 * `npm run bench:replicas [-- --users=40 --seconds=20 --think=1000 --delay=500]`: the soak's mix (per 20
 * requests: 10 history pages, 4 message pages, 6 writes; here the writes are createConversation and
 * renameConversation, which need no model provider) from `--users` people, each waiting about `--think` ms
 * between requests (0.5 to 1.5 times, as someone reading a page does), against ours in-process with a private
 * primary and a streaming replica applying commits `--delay` ms late (`test/helpers/private-postgres.ts`).
 *
 * Reports where the reads that reached the database went (`llmselect_db_read_routes_total`: replica, or the
 * primary and why), how many history pages came from the read cache, and how many history pages missed the
 * writer's own last write (stale: must be 0). Exits non-zero on a stale read, a client error, or a replica
 * share of the reads below 60 %.
 */
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { buildApp } from '../src/app';
import { loadConfig } from '../src/config';
import { startPrivatePostgres } from '../test/helpers/private-postgres';

const flags = new Map(
  process.argv
    .slice(2)
    .map((a) => /^--([^=]+)(?:=(.*))?$/.exec(a))
    .flatMap((m) => (m ? [[m[1]!, m[2] ?? '']] : [])),
);
const USERS = Number(flags.get('users') ?? 40);
const SECONDS = Number(flags.get('seconds') ?? 20);
const THINK_MS = Number(flags.get('think') ?? 1000);
const DELAY_MS = Number(flags.get('delay') ?? 500);

const HISTORY = `query History {
  me { id email }
  conversations(first: 20) { nodes { id title createdAt updatedAt messages(first: 10) { nodes { id role content createdAt } } } }
  comparisons(first: 10) { nodes { id responses { id provider model content latencyMs completionTokens } } }
}`;
const PAGE = `query Page($id: ID!) { conversation(id: $id) { id messages(first: 4) { nodes { id role } pageInfo { hasNextPage } } } }`;
const CREATE = 'mutation Create($title: String) { createConversation(title: $title) { id title } }';
const RENAME = 'mutation Rename($id: ID!, $title: String!) { renameConversation(id: $id, title: $title) { id title } }';
/** One cycle of the soak's mix: H history, P message page, C create, R rename (10 / 4 / 6). */
const CYCLE = 'HHPCHHPRHHPCHHPRHHCR';

async function main(): Promise<void> {
  const pg = await startPrivatePostgres();
  const replica = await pg.startReplica({ applyDelayMs: DELAY_MS });
  const config = loadConfig({
    NODE_ENV: 'production',
    DATABASE_URL: pg.url,
    DATABASE_REPLICA_URLS: replica.url,
    JWT_SECRET: randomBytes(32).toString('hex'),
    ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    CACHE_PREFIX: `bench-replicas-${randomBytes(4).toString('hex')}`,
    LOG_LEVEL: 'warn',
    SLOW_QUERY_MS: '60000',
    SLOW_REQUEST_MS: '60000',
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_TIME_COST: '1',
    RATE_LIMIT_PROVIDER_CALLS: '0',
    RATE_LIMIT_LOGIN_FAILURES: '0',
    RATE_LIMIT_AUTH_PER_IP: '0',
    ...(process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {}),
  });
  const app = await buildApp(config);
  await new Promise<void>((resolve) => app.httpServer.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(app.httpServer.address() as AddressInfo).port}/graphql`;
  let errors = 0;
  const gql = async (query: string, variables: object, token?: string) => {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await response.json()) as { data?: any; errors?: unknown };
    if (body.errors) errors++;
    return { data: body.data, hit: response.headers.get('x-cache') === 'HIT' };
  };
  try {
    const users = await Promise.all(
      Array.from({ length: USERS }, async (_, i) => {
        const reg = await gql('mutation($e: String!) { register(email: $e, password: "correct horse battery") { token } }', {
          e: `replica-bench-${i}@example.com`,
        });
        const token = reg.data.register.token as string;
        const first = await gql(CREATE, { title: 'first' }, token);
        return { token, conversation: first.data.createConversation.id as string };
      }),
    );
    const before = await routes(app);
    let stale = 0;
    let history = 0;
    let hits = 0;
    const until = Date.now() + SECONDS * 1000;
    await Promise.all(
      users.map(async (u, ui) => {
        let lastTitle = 'first';
        let n = ui; // users start at different points of the cycle
        while (Date.now() < until) {
          await new Promise((resolve) => setTimeout(resolve, THINK_MS * (0.5 + Math.random())));
          const step = CYCLE[n++ % CYCLE.length];
          if (step === 'H') {
            const res = await gql(HISTORY, {}, u.token);
            history++;
            if (res.hit) hits++;
            if (res.data && !res.data.conversations.nodes.some((c: { title: string }) => c.title === lastTitle)) stale++;
          } else if (step === 'P') {
            await gql(PAGE, { id: u.conversation }, u.token);
          } else if (step === 'C') {
            lastTitle = `c-${n}`;
            u.conversation = (await gql(CREATE, { title: lastTitle }, u.token)).data.createConversation.id;
          } else {
            lastTitle = `r-${n}`;
            await gql(RENAME, { id: u.conversation, title: lastTitle }, u.token);
          }
        }
      }),
    );
    const counted = diff(before, await routes(app));
    const reads = Object.entries(counted).filter(([k]) => !k.endsWith('/write') && !k.endsWith('/replica_failed'));
    const total = reads.reduce((s, [, v]) => s + v, 0);
    const replicaReads = reads.filter(([k]) => k.startsWith('replica/')).reduce((s, [, v]) => s + v, 0);
    const share = total ? replicaReads / total : 0;
    const result = {
      users: USERS,
      seconds: SECONDS,
      thinkMs: THINK_MS,
      applyDelayMs: DELAY_MS,
      historyPages: history,
      historyCacheHits: hits,
      readsReachingTheDatabase: total,
      replicaShare: Number(share.toFixed(3)),
      routes: counted,
      stale,
      errors,
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    if (stale || errors || share < 0.6) process.exitCode = 1;
  } finally {
    await app.close();
    await pg.stop();
  }
}

async function routes(app: Awaited<ReturnType<typeof buildApp>>): Promise<Record<string, number>> {
  const metric = await app.metrics.readRoutes.get();
  return Object.fromEntries(metric.values.map((v) => [`${v.labels.target}/${v.labels.reason}`, v.value]));
}

function diff(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]));
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
