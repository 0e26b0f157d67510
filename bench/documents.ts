/**
 * `npm run bench:documents`: memory per distinct document (issue 16, case 2).
 *
 * Starts the server as `npm start` runs it (`node dist/src/main.js`, production)
 * on a fresh database, sends DOCUMENTS (default 50,000) distinct documents
 * `query Q<i> { a<i>: models { id name } }` — anonymous, then (SIGNED_IN=1)
 * with a token — and prints the server's RSS before, every 10,000 documents
 * and after, with its peak (VmHWM). The test `document-memory.test.ts` sends
 * fewer and asserts a scaled bound; this is the full figure.
 *
 *   DOCUMENTS=50000 SIGNED_IN=0 npm run bench:documents
 */
import { randomBytes } from 'node:crypto';
import { createBenchDatabase, DEFAULT_ADMIN_URL } from './lib/db';
import { memoryOf, sendDistinctDocuments } from '../test/helpers/document-load';
import { buildDist, gqlAt, startServer } from '../test/helpers/server-process';

async function main(): Promise<void> {
  const total = Number(process.env.DOCUMENTS ?? 50_000);
  const signedIn = process.env.SIGNED_IN === '1';
  buildDist();
  const db = await createBenchDatabase(process.env.BENCH_DATABASE_URL ?? DEFAULT_ADMIN_URL);
  const server = await startServer({
    env: {
      NODE_ENV: 'production',
      DATABASE_URL: db.url,
      JWT_SECRET: randomBytes(32).toString('hex'),
      ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      ARGON2_MEMORY_KIB: '1024',
      ARGON2_TIME_COST: '1',
      LOG_LEVEL: 'info',
      RATE_LIMIT_AUTH_PER_IP: '0',
      ...(process.env.DOCUMENT_CACHE_MB ? { DOCUMENT_CACHE_MB: process.env.DOCUMENT_CACHE_MB } : {}),
      ...(process.env.GRAPHQL_EXECUTOR ? { GRAPHQL_EXECUTOR: process.env.GRAPHQL_EXECUTOR } : {}),
    },
  });
  try {
    const pid = server.child.pid!;
    let token: string | undefined;
    if (signedIn) {
      const reg = await gqlAt(
        server.url,
        `mutation { register(email: "bench-${randomBytes(4).toString('hex')}@example.com", password: "correct horse battery") { token } }`,
      );
      token = reg.data.register.token;
    }
    // Warm up: the first requests load code and fill pools.
    await sendDistinctDocuments(server.url, 1_000_000, 1_000_200, { token });
    const start = memoryOf(pid);
    const rows: string[] = [
      `documents  rss MB  peak MB`,
      `${'0'.padStart(9)}  ${start.rssMb.toFixed(0).padStart(6)}  ${start.peakMb.toFixed(0).padStart(7)}`,
    ];
    let failed = 0;
    for (let done = 0; done < total; ) {
      const next = Math.min(total, done + 10_000);
      failed += await sendDistinctDocuments(server.url, done, next, { token, concurrency: 16 });
      done = next;
      const m = memoryOf(pid);
      rows.push(`${String(done).padStart(9)}  ${m.rssMb.toFixed(0).padStart(6)}  ${m.peakMb.toFixed(0).padStart(7)}`);
      process.stderr.write(`bench: ${rows[rows.length - 1]}\n`);
    }
    const end = memoryOf(pid);
    console.log(
      `${total} distinct ${signedIn ? 'signed-in' : 'anonymous'} documents, executor ${process.env.GRAPHQL_EXECUTOR ?? 'jit'}, failed ${failed}`,
    );
    console.log(rows.join('\n'));
    console.log(
      `RSS ${start.rssMb.toFixed(0)} MB → ${end.rssMb.toFixed(0)} MB (+${(end.rssMb - start.rssMb).toFixed(0)} MB), peak ${end.peakMb.toFixed(0)} MB`,
    );
  } finally {
    await server.stop('SIGTERM');
    await db.drop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
