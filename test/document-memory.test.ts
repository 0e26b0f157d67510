/**
 * Memory per distinct document (issue 16, case 2), on the server as a
 * separate process (production), its memory read from `/proc/<pid>/status`:
 * the cases assert RSS growth, never a duration.
 *
 * The issue's figure is 50,000 distinct anonymous documents within +200 MB
 * (before: 20,000 took the heap from 77 MB to 1,218 MB). A test sends fewer:
 * 600 documents of 10 aliases each (`query Q<i> { a<i>: models { id name } a<i>_1: … }`,
 * ten times the issue's document), with the bound scaled
 * (+200 MB × 600 × 10 / 50,000 = 24 MB, plus 24 MB
 * for what a fresh process grows by anyway under load: garbage not yet
 * collected, V8's own code, the allocator; the server runs with a 192 MB
 * heap limit so that V8 collects rather than grows). `npm run bench:documents` measures the full 50,000
 * (docs/OPERATIONS.md).
 */
import { createTestDatabase, type TestDatabase } from './helpers/database';
import { memoryOf, sendDistinctDocuments } from './helpers/document-load';
import { buildDist, type ServerProcess, startServer } from './helpers/server-process';

const DOCUMENTS = 600;
/** Each test document repeats the selection under 10 aliases: 10× what one document costs to keep. */
const ALIASES = 10;
const SCALED_BOUND_MB = Math.round((200 * DOCUMENTS * ALIASES) / 50_000) + 24;

let db: TestDatabase;
const servers: ServerProcess[] = [];

async function start(env: Record<string, string> = {}): Promise<ServerProcess> {
  const server = await startServer({
    env: {
      NODE_ENV: 'production',
      DATABASE_URL: db.url,
      JWT_SECRET: 'document-memory-secret-that-is-long-enough-0123456789',
      ENCRYPTION_KEY: Buffer.alloc(32, 4).toString('base64'),
      ARGON2_MEMORY_KIB: '1024',
      ARGON2_TIME_COST: '1',
      LOG_LEVEL: 'info',
      // A heap limit well above what the server needs makes V8 collect before it grows the heap, so RSS
      // follows what is kept rather than garbage not yet collected (a leak still grows it, or fails the requests).
      NODE_OPTIONS: '--max-old-space-size=192',
      ...env,
    },
  });
  servers.push(server);
  return server;
}

/** Sends DOCUMENTS distinct documents after a warm-up of 100; returns RSS before and after, in MB. */
async function rssAcross(server: ServerProcess, token?: string): Promise<{ before: number; after: number }> {
  expect(await sendDistinctDocuments(server.url, 1_000_000, 1_000_100, { token, aliases: ALIASES })).toBe(0);
  const before = memoryOf(server.child.pid!).rssMb;
  expect(await sendDistinctDocuments(server.url, 0, DOCUMENTS, { token, concurrency: 8, aliases: ALIASES })).toBe(0);
  const after = memoryOf(server.child.pid!).rssMb;
  return { before, after };
}

beforeAll(async () => {
  buildDist();
  db = await createTestDatabase('docmem');
}, 60_000);

afterAll(async () => {
  for (const server of servers) if (server.child.exitCode === null && server.child.signalCode === null) await server.stop('SIGKILL');
  await db?.drop();
});

describe('memory per distinct document', () => {
  it(`keeps RSS within +${SCALED_BOUND_MB} MB across ${DOCUMENTS} distinct anonymous documents of ${ALIASES} aliases`, async () => {
    const server = await start();
    const { before, after } = await rssAcross(server);
    console.log(`document-memory: ${DOCUMENTS} anonymous documents: RSS ${before.toFixed(0)} MB → ${after.toFixed(0)} MB`);
    expect(after - before).toBeLessThan(SCALED_BOUND_MB);
  }, 150_000);
});

describe('compiled subscription documents', () => {
  it('are kept within their byte share, least recently used out, and never for a call without a key (anonymous)', async () => {
    const { buildSchema } = await import('graphql');
    const { jitSubscribe } = await import('../src/graphql/jit-executor');
    const { compiledWeight } = await import('../src/graphql/document-cache');
    const { parse } = await import('graphql');
    const schema = buildSchema('type Query { a: Int } type Subscription { tick(n: Int): Int }');
    const text = (i: number) => `subscription S${i} { tick(n: ${i}) }`;
    const subscribe = jitSubscribe(compiledWeight(text(10).length) * 3);
    const rootValue = { tick: () => (async function* () {})() };
    for (let i = 10; i < 20; i++) await subscribe({ schema, document: parse(text(i)), rootValue }, text(i));
    expect(subscribe.kept()).toEqual({ documents: 3, bytes: compiledWeight(text(10).length) * 3 });
    await subscribe({ schema, document: parse(text(30)), rootValue }, undefined);
    expect(subscribe.kept().documents).toBe(3);
  });
});
