/**
 * Bytes inside the limits (issue 16, case 1), on the server as a separate
 * process (production, default limits: `MAX_RESPONSE_BYTES` 32 MB,
 * `LLM_MAX_OUTPUT_BYTES` 256 KB), with its memory read from
 * `/proc/<pid>/status`: each case asserts the growth of the peak RSS
 * (VmHWM) over the RSS before it, never a duration.
 *
 * The data: 25 comparisons of 8 answers of 256 KB each (50 MB of text), all
 * in one conversation. Before this change the 8-alias document below
 * answered 419.5 MB and took RSS from 331 MB to 2.0 GB.
 */
import { randomBytes } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from './helpers/database';
import { memoryOf } from './helpers/document-load';
import { withClient } from './helpers/factories';
import { buildDist, gqlAt, type ServerProcess, startServer } from './helpers/server-process';

const MAX_RESPONSE_BYTES = 32 * 1024 * 1024;
const ANSWER_BYTES = 256 * 1024;
/** The bound of issue 16: memory during the 8-alias case stays under +256 MB. */
const MAX_GROWTH_MB = 256;

let db: TestDatabase;
let server: ServerProcess;
let token: string;
let conversationId: string;

async function gqlRaw(query: string, variables: Record<string, unknown> = {}): Promise<{ status: number; text: string }> {
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, text: await response.text() };
}

/** Runs `fn` and returns how far the server's peak RSS rose above its RSS before. */
async function growthDuring(what: string, fn: () => Promise<void>): Promise<number> {
  const before = memoryOf(server.child.pid!).rssMb;
  await fn();
  const after = memoryOf(server.child.pid!);
  console.log(
    `response-bytes: ${what}: RSS ${before.toFixed(0)} MB before, peak ${after.peakMb.toFixed(0)} MB, ${after.rssMb.toFixed(0)} MB after`,
  );
  return Math.max(0, after.peakMb - before);
}

beforeAll(async () => {
  buildDist();
  db = await createTestDatabase('bytes');
  server = await startServer({
    env: {
      NODE_ENV: 'production',
      DATABASE_URL: db.url,
      JWT_SECRET: 'response-bytes-secret-that-is-long-enough-0123456789',
      ENCRYPTION_KEY: Buffer.alloc(32, 5).toString('base64'),
      ARGON2_MEMORY_KIB: '1024',
      ARGON2_TIME_COST: '1',
      LOG_LEVEL: 'info',
    },
  });
  const reg = await gqlAt(
    server.url,
    `mutation($e: String!) { register(email: $e, password: "correct horse battery") { token user { id } } }`,
    { e: `bytes-${randomBytes(4).toString('hex')}@example.com` },
  );
  token = reg.data.register.token;
  const userId: string = reg.data.register.user.id;
  conversationId = await withClient(db.url, async (c) => {
    const conversation = await c.query(
      `insert into conversations (id, created_at, updated_at, owner_id, title)
       values (gen_random_uuid(), now(), now(), $1, 'long answers') returning id`,
      [userId],
    );
    const id: string = conversation.rows[0].id;
    await c.query(
      `insert into comparison_results (id, created_at, owner_id, conversation_id, prompt)
       select gen_random_uuid(), now() - make_interval(secs => g / 1000.0), $1, $2, 'Prompt ' || g from generate_series(1, 25) g`,
      [userId, id],
    );
    await c.query(
      `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, status, content, latency_ms)
       select gen_random_uuid(), r.created_at, r.id, p - 1, 'OPENAI', 'openai:model-' || p, 'COMPLETED', repeat(chr(97 + p), $2), 100
         from comparison_results r cross join generate_series(1, 8) p where r.owner_id = $1`,
      [userId, ANSWER_BYTES],
    );
    return id;
  });
}, 120_000);

afterAll(async () => {
  if (server && server.child.exitCode === null && server.child.signalCode === null) await server.stop('SIGKILL');
  await db?.drop();
});

const EIGHT_ALIASES =
  '{ ' + Array.from({ length: 8 }, (_, i) => `a${i}: comparisons(first: 100) { nodes { responses { content } } }`).join(' ') + ' }';

describe('a byte budget per response', () => {
  it('refuses eight aliases of comparisons(first: 100) { … content } up front with QUERY_TOO_COMPLEX, RSS within +256 MB', async () => {
    let answer!: { status: number; text: string };
    const growth = await growthDuring('8 aliases of comparisons(first: 100)', async () => {
      answer = await gqlRaw(EIGHT_ALIASES);
    });
    expect(answer.text.length).toBeLessThan(10_000);
    expect(JSON.parse(answer.text).errors[0].extensions.code).toBe('QUERY_TOO_COMPLEX');
    expect(growth).toBeLessThan(MAX_GROWTH_MB);
  });

  it.each([
    ['a compiled read (SQL-built JSON)', ''],
    ['the ordinary path (resolvers)', ' @include(if: true)'],
  ])(
    'cuts off a response growing past MAX_RESPONSE_BYTES with RESPONSE_TOO_LARGE (maxBytes) on %s, twice (never cached), peak RSS +256 MB',
    async (_path, directive) => {
      // 25 × 8 × 256 KB = 50 MB of answers: under the cost limit, over the byte limit.
      const query = `{ comparisons(first: 25) { nodes { id responses${directive} { content } } } }`;
      const answers: Array<{ status: number; text: string }> = [];
      const growth = await growthDuring(`comparisons(first: 25) on ${_path}`, async () => {
        for (let i = 0; i < 2; i++) answers.push(await gqlRaw(query));
      });
      for (const answer of answers) {
        expect(answer.text.length).toBeLessThan(10_000);
        const body = JSON.parse(answer.text);
        expect(body.data).toBeUndefined();
        expect(body.errors).toEqual([
          expect.objectContaining({ extensions: { code: 'RESPONSE_TOO_LARGE', maxBytes: MAX_RESPONSE_BYTES } }),
        ]);
      }
      expect(growth).toBeLessThan(MAX_GROWTH_MB);
    },
  );

  it('answers a page that fits (4 MB) whole, on both paths', async () => {
    for (const directive of ['', ' @include(if: true)']) {
      const answer = await gqlRaw(`{ comparisons(first: 2) { nodes { responses${directive} { content } } } }`);
      const body = JSON.parse(answer.text);
      expect(body.errors).toBeUndefined();
      expect(
        body.data.comparisons.nodes.flatMap((n: { responses: Array<{ content: string }> }) => n.responses.map((r) => r.content.length)),
      ).toEqual(Array(16).fill(ANSWER_BYTES));
    }
  });

  it('answers exportConversation aliased eight times with RESPONSE_TOO_LARGE before loading 50 MB, peak RSS within +256 MB', async () => {
    const query = `query($id: ID!) { ${Array.from({ length: 8 }, (_, i) => `e${i}: exportConversation(id: $id)`).join(' ')} }`;
    let answer!: { status: number; text: string };
    const growth = await growthDuring('exportConversation × 8', async () => {
      answer = await gqlRaw(query, { id: conversationId });
    });
    expect(answer.text.length).toBeLessThan(10_000);
    expect(JSON.parse(answer.text).errors[0].extensions).toEqual({ code: 'RESPONSE_TOO_LARGE', maxBytes: MAX_RESPONSE_BYTES });
    expect(growth).toBeLessThan(MAX_GROWTH_MB);
  });
});
