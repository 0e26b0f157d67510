/**
 * The shared part of the process-life tests (process-life, process-crash,
 * process-embedded: split so they run side by side), on the server as a
 * separate process started the way `npm start` starts it (`node dist/src/main.js`;
 * jest's global setup builds dist/ once): a fake provider, the servers a file
 * started (killed after it if still running), and the checks every stop makes.
 *
 * Nothing here sleeps: every wait is on an event (a log line, a process exit,
 * a request reaching the fake provider, an SSE event). Each server process
 * must log neither "uncaught exception" nor "unhandled rejection"
 * (`main.ts` logs both and exits 1), checked after every stop.
 */
import { randomBytes } from 'node:crypto';
import { withClient } from './factories';
import { FakeLlmServer } from './fake-llm';
import { gqlAt, type ServerProcess, startServer } from './server-process';

export const JWT_SECRET = 'process-life-secret-that-is-long-enough-0123456789';
export const ENCRYPTION_KEY = Buffer.alloc(32, 9).toString('base64');
const REGISTER = `mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token user { id } } }`;
const SAVE_KEY = `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`;
const START = `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id responses { id model status } } }`;
export const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status content error } }`;

export interface ProcessLife {
  /** The fake provider (started before the file's tests). */
  readonly fake: FakeLlmServer;
  /** Every server process the file started: killed after the file if still running. */
  readonly servers: ServerProcess[];
  baseEnv(extra?: Record<string, string | undefined>): Record<string, string | undefined>;
  start(env: Record<string, string | undefined>, via?: 'node' | 'npm'): Promise<ServerProcess>;
  /** Stops with SIGTERM and checks the process ended the way a clean stop ends. */
  stopCleanly(server: ServerProcess): Promise<void>;
  expectNoProcessErrors(server: ServerProcess): void;
  signUpWithKeys(url: string): Promise<{ token: string; userId: string }>;
  /** Starts a comparison and waits until every model call reached the fake provider. */
  startComparison(url: string, token: string, models: string[]): Promise<{ id: string; responses: Array<{ id: string; model: string }> }>;
  responseRows(
    dbUrl: string,
    comparisonId: string,
  ): Promise<Array<{ model: string; status: string; error: string | null; content: string }>>;
}

/** Registers the file's beforeAll / afterAll and returns its harness. */
export function processLife(): ProcessLife {
  let fake: FakeLlmServer | undefined;
  const servers: ServerProcess[] = [];

  beforeAll(async () => {
    fake = await FakeLlmServer.start();
  });
  afterAll(async () => {
    for (const server of servers) if (server.child.exitCode === null && server.child.signalCode === null) await server.stop('SIGKILL');
    await fake?.close();
  });

  const life: ProcessLife = {
    get fake() {
      if (!fake) throw new Error('the fake provider starts in beforeAll');
      return fake;
    },
    servers,
    baseEnv(extra = {}) {
      return {
        NODE_ENV: 'production',
        JWT_SECRET,
        ENCRYPTION_KEY,
        ARGON2_MEMORY_KIB: '1024',
        ARGON2_TIME_COST: '1',
        LOG_LEVEL: 'info',
        OPENAI_BASE_URL: life.fake.baseUrls.openai,
        ANTHROPIC_BASE_URL: life.fake.baseUrls.anthropic,
        LLM_TIMEOUT_MS: '60000',
        ...extra,
      };
    },
    async start(env, via = 'node') {
      const server = await startServer({ env: life.baseEnv(env), via });
      servers.push(server);
      return server;
    },
    async stopCleanly(server) {
      const exit = await server.stop('SIGTERM');
      expect(exit).toEqual({ code: 0, signal: null });
      expect(server.logs.find((l) => l.msg === 'stopped')).toMatchObject({ exitCode: 0 });
      life.expectNoProcessErrors(server);
    },
    expectNoProcessErrors(server) {
      expect(server.logs.filter((l) => l.msg === 'uncaught exception' || l.msg === 'unhandled rejection')).toEqual([]);
      expect(server.stderr()).not.toMatch(/unhandled|uncaught/i);
    },
    async signUpWithKeys(url) {
      const reg = await gqlAt(url, REGISTER, { e: `life-${randomBytes(4).toString('hex')}@example.com`, p: 'correct horse battery' });
      const { token } = reg.data.register;
      for (const provider of ['OPENAI', 'ANTHROPIC']) {
        const saved = await gqlAt(url, SAVE_KEY, { input: { provider, apiKey: `sk-${provider.toLowerCase()}-life` } }, token);
        expect(saved.errors).toBeUndefined();
      }
      return { token, userId: reg.data.register.user.id };
    },
    async startComparison(url, token, models) {
      const before = life.fake.count(undefined, 'chat');
      const res = await gqlAt(url, START, { input: { prompt: 'are you still there?', models } }, token);
      expect(res.errors).toBeUndefined();
      await life.fake.waitForRequests(before + models.length, undefined, 'chat'); // every model call is in flight
      return res.data.startComparison;
    },
    async responseRows(dbUrl, comparisonId) {
      const sql = 'select model, status, error, content from comparison_responses where comparison_id = $1 order by position';
      return withClient(dbUrl, async (c) => (await c.query(sql, [comparisonId])).rows);
    },
  };
  return life;
}
