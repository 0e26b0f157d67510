/**
 * `npm run bench`: seeds a realistic history, then measures through real HTTP
 * the numbers the design promises: statements per history query, cached vs
 * uncached latency, throughput under concurrency with a small pool, the
 * wall time of a parallel comparison against the fake providers, and how fast
 * hostile documents are answered.
 *
 * Database: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/llmselect_bench,
 * recreated each run), or the embedded PostgreSQL when nothing answers.
 * Cache: REDIS_URL when set, else in memory.
 */
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Client } from 'pg';
import { buildApp } from '../src/app';
import { loadConfig } from '../src/config';
import { startEmbeddedPostgres } from '../src/db/embedded';
import { FakeLlmServer } from '../test/helpers/fake-llm';
import { seedUserData } from '../test/helpers/factories';

const HISTORY = `query History($n: Int!) {
  conversations(first: $n) { totalCount nodes { id title messageCount lastMessage { content } messages(first: 10) { nodes { id content } } } }
  comparisons(first: $n) { nodes { id prompt responses { content status } vote { outcome } } }
}`;

interface Row {
  what: string;
  value: string;
}
const rows: Row[] = [];
const report = (what: string, value: string) => {
  rows.push({ what, value });
  console.log(`${what}: ${value}`);
};

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const ms = (v: number) => `${v.toFixed(2)} ms`;

/**
 * A database of its own for this run (`llmselect_bench_<random>` unless
 * BENCH_DATABASE_URL names one), dropped when the bench ends: nothing is left
 * on the developer's PostgreSQL, and two runs never share one.
 */
async function databaseUrl(): Promise<{ url: string; stop: () => Promise<void> }> {
  const url = new URL(process.env.BENCH_DATABASE_URL ?? `postgres://postgres@127.0.0.1:5432/llmselect_bench_${randomBytes(4).toString('hex')}`);
  const admin = new URL(url);
  const name = url.pathname.slice(1);
  admin.pathname = '/postgres';
  const client = new Client({ connectionString: admin.toString(), connectionTimeoutMillis: 2000 });
  const sql = async (statement: string) => {
    const c = new Client({ connectionString: admin.toString() });
    await c.connect();
    try {
      await c.query(statement);
    } finally {
      await c.end();
    }
  };
  try {
    await client.connect();
    await client.end();
    await sql(`drop database if exists ${client.escapeIdentifier(name)} with (force)`);
    await sql(`create database ${client.escapeIdentifier(name)}`);
    return { url: url.toString(), stop: () => sql(`drop database if exists ${client.escapeIdentifier(name)} with (force)`) };
  } catch {
    await client.end().catch(() => undefined);
    console.log('No PostgreSQL at BENCH_DATABASE_URL: using the embedded one');
    const embedded = await startEmbeddedPostgres({ dataDir: join(__dirname, '..', '.data', 'bench'), port: 54331, database: `bench_${randomBytes(3).toString('hex')}` });
    return { url: embedded.url, stop: embedded.stop };
  }
}

async function main(): Promise<void> {
  const db = await databaseUrl();
  const fake = await FakeLlmServer.start();
  const app = await buildApp(
    loadConfig({
      NODE_ENV: 'test',
      DATABASE_URL: db.url,
      REDIS_URL: process.env.REDIS_URL,
      CACHE_PREFIX: `bench-${randomBytes(4).toString('hex')}`,
      JWT_SECRET: randomBytes(32).toString('hex'),
      ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      DB_POOL_MAX: process.env.DB_POOL_MAX ?? '10',
      LOG_LEVEL: 'error',
      ARGON2_MEMORY_KIB: '1024',
      OPENAI_BASE_URL: fake.baseUrls.openai,
      ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
      GOOGLE_BASE_URL: fake.baseUrls.google,
      MISTRAL_BASE_URL: fake.baseUrls.mistral,
    }),
  );
  await new Promise<void>((resolve) => app.httpServer.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(app.httpServer.address() as AddressInfo).port}`;
  const gql = async (query: string, variables: object, token?: string) => {
    const res = await fetch(`${base}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await res.json()) as { data?: any; errors?: unknown[] };
    if (body.errors) throw new Error(JSON.stringify(body.errors));
    return body.data;
  };

  try {
    report('cache store', app.cache.health().store);
    report('pool max', String(app.config.pool.max));
    const reg = await gql(`mutation { register(email: "bench@example.com", password: "bench password") { token user { id } } }`, {});
    const token: string = reg.register.token;
    const userId: string = reg.register.user.id;
    await seedUserData(db.url, userId, { conversations: 500, messagesPerConversation: 20, comparisons: 500, responsesPerComparison: 3, votes: true });
    report('seeded', '500 conversations x 20 messages, 500 comparisons x 3 responses');

    // 1. Statements per history query: constant in N.
    for (const n of [1, 10, 50]) {
      await app.services.invalidation.invalidateUser(userId);
      let count = 0;
      const stop = app.queryObserver.onQuery(() => count++);
      await gql(HISTORY, { n }, token);
      stop();
      report(`SQL statements, history query N=${n}`, String(count));
    }

    // 2. Uncached vs cached latency of the sidebar + comparisons history (N=20).
    const timed = async (before?: () => Promise<void>) => {
      const samples: number[] = [];
      for (let i = 0; i < 200; i++) {
        await before?.();
        const start = performance.now();
        await gql(HISTORY, { n: 20 }, token);
        samples.push(performance.now() - start);
      }
      return samples;
    };
    const uncached = await timed(() => app.services.invalidation.invalidateUser(userId));
    await gql(HISTORY, { n: 20 }, token);
    const cached = await timed();
    report('history N=20 uncached p50 / p95', `${ms(percentile(uncached, 50))} / ${ms(percentile(uncached, 95))}`);
    report('history N=20 cached p50 / p95', `${ms(percentile(cached, 50))} / ${ms(percentile(cached, 95))}`);

    // 3. Throughput: 50 concurrent clients, 20 requests each, distinct ids (uncached reads through the pool).
    const start = performance.now();
    let errors = 0;
    await Promise.all(
      Array.from({ length: 50 }, async (_, c) => {
        for (let i = 0; i < 20; i++) {
          await gql(`query($n: Int!) { conversations(first: $n) { nodes { id messageCount } } }`, { n: ((c + i) % 40) + 1 }, token).catch(() => errors++);
        }
      }),
    );
    const seconds = (performance.now() - start) / 1000;
    report('1000 requests, 50 concurrent clients', `${(1000 / seconds).toFixed(0)} req/s, ${errors} errors`);

    // 4. A comparison's wall time is the slowest model plus a small overhead.
    await gql(`mutation($i: SaveApiKeyInput!) { saveApiKey(input: $i) { id } }`, { i: { provider: 'OPENAI', apiKey: 'sk-bench-1' } }, token);
    await gql(`mutation($i: SaveApiKeyInput!) { saveApiKey(input: $i) { id } }`, { i: { provider: 'ANTHROPIC', apiKey: 'sk-bench-2' } }, token);
    await gql(`mutation($i: SaveApiKeyInput!) { saveApiKey(input: $i) { id } }`, { i: { provider: 'GOOGLE', apiKey: 'sk-bench-3' } }, token);
    const walls: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      await gql(`mutation($i: RunComparisonInput!) { runComparison(input: $i) { responses { status } } }`, { i: { prompt: `bench ${i}`, models: ['openai:slow-300', 'anthropic:slow-300', 'google:slow-300'] } }, token);
      walls.push(performance.now() - t0);
    }
    report('runComparison, 3 models x 300 ms (fake), p50 / max', `${ms(percentile(walls, 50))} / ${ms(Math.max(...walls))}`);

    // 5. Hostile documents (issue 8) answer fast, up to the 1 MB body limit: each is refused (or, the
    //    fragment chain, answered) before any resolver runs. Target: well under 50 ms each.
    const fragmentChain = Array.from({ length: 24 }, (_, i) => `fragment F${i} on User { ${i === 23 ? 'id' : `...F${i + 1} ...F${i + 1}`} }`).join(' ');
    const alias = (i: number) => `a${i}: conversations(first: 100) { nodes { messages(first: 100) { nodes { id content } } } }`;
    const hostile: Array<[string, string, object]> = [
      ['24 fragments each spreading the next twice', `{ me { ...F0 } } ${fragmentChain}`, {}],
      ['300 aliases of a 100 x 100 page (26 KB)', `{ ${Array.from({ length: 300 }, (_, i) => alias(i)).join(' ')} }`, {}],
      ['60 aliases (under the token limit)', `{ ${Array.from({ length: 60 }, (_, i) => alias(i)).join(' ')} }`, {}],
      ['300,000 tokens (~900 KB)', `{ me { ${'id '.repeat(300_000)} } }`, {}],
      ['600 conflicting aliased fields', `{ me { ${Array.from({ length: 600 }, (_, i) => (i % 2 ? `x${i - 1}: email` : `x${i}: id`)).join(' ')} } }`, {}],
      ['1,900 copies of one field', `{ me { ${'id '.repeat(1_900)} } }`, {}],
      ['first: $n = 100 x 100 (cost)', `query($n: Int) { conversations(first: $n) { nodes { messages(first: $n) { nodes { id } } } } }`, { n: 100 }],
    ];
    for (const [what, query, variables] of hostile) {
      const samples: number[] = [];
      for (let i = 0; i < 30; i++) {
        const t0 = performance.now();
        const res = await fetch(`${base}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ query, variables }),
        });
        await res.text();
        samples.push(performance.now() - t0);
      }
      report(`hostile document: ${what}, p50 / max`, `${ms(percentile(samples, 50))} / ${ms(Math.max(...samples))}`);
    }

    const health = await (await fetch(`${base}/health`)).json();
    report('cache hit rate (health)', JSON.stringify((health as { cache: { hitRate: number } }).cache.hitRate));
  } finally {
    await app.close();
    await fake.close();
    await db.stop();
  }

  console.log('\n| measurement | value |\n| --- | --- |');
  for (const row of rows) console.log(`| ${row.what} | ${row.value} |`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
