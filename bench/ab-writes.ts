/**
 * `npx ts-node --transpile-only bench/ab-writes.ts --before=/path/to/other/worktree [--write=create-conversation|
 * send-message] [--rounds=4] [--seconds=3] [--concurrency=10]`: the server CPU per write of two builds of ours,
 * interleaved on one seeded database (sendMessage: to the test suite's fake provider in this process, one delta at
 * once, with each user's saved key, as `npm run bench` does).
 * The other worktree's build (its dist/src/main.js, `npm run build` there first) is A, this one's is B; each round
 * loads A then B for the same seconds at the same concurrency, and reads each server's CPU (/proc/<pid>/stat) over its
 * window (A first in odd rounds, B first in even ones). On a shared machine req/s follows the neighbours' load; CPU per request, taken in turns, is what compares.
 */
import { join } from 'node:path';
import { LoadGenerator, type LoadRequest, totalErrors } from './lib/load';
import { parseOptions } from './lib/options';
import { freePort, ServerProcess } from './lib/procs';
import { conversationId, WORKLOAD } from './lib/seed';
import { Cleanup, graphql, log, mapLimit, oursEnv, prepare, startOurs, waitQuiet } from './lib/setup';
import { FakeLlmServer } from '../test/helpers/fake-llm';

const CREATE = 'mutation CreateConversation($title: String) { createConversation(title: $title) { id title createdAt } }';
const SEND = 'mutation SendMessage($input: SendMessageInput!) { sendMessage(input: $input) { id role content model } }';
const FAKE_MODEL = 'openai:gpt-4o';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const pick = (name: string, fallback?: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
  const other = pick('before');
  if (!other) throw new Error('--before=<worktree whose dist is A> is required');
  const rounds = Number(pick('rounds', '4'));
  const seconds = Number(pick('seconds', '3'));
  const connections = Number(pick('concurrency', '10'));
  const write = pick('write', 'create-conversation');
  if (write !== 'create-conversation' && write !== 'send-message') throw new Error(`--write=${write}: create-conversation or send-message`);
  const options = parseOptions(['--ci'], process.env);
  options.users = 60;
  const cleanup = new Cleanup();
  try {
    const env = await prepare(options, cleanup);
    const fake = await FakeLlmServer.start();
    cleanup.add('stop the fake provider', () => fake.close());
    const answerAtOnce = () => {
      fake.reset();
      fake.setBehavior(FAKE_MODEL.split(':')[1]!, { chunks: 1 });
    };
    answerAtOnce();
    const forgetting = setInterval(answerAtOnce, 5_000);
    cleanup.add('stop resetting the fake provider', async () => clearInterval(forgetting));
    // Both builds call the fake provider, with no per-user model-call rate limit (as the bench's write rows).
    const providerEnv = { OPENAI_BASE_URL: fake.baseUrls.openai!, RATE_LIMIT_PROVIDER_CALLS: '0' };
    const secrets = {
      dbUrl: env.db.url,
      redisUrl: env.redisUrl,
      cachePrefix: env.cachePrefix,
      jwtSecret: env.jwtSecret,
      encryptionKey: env.encryptionKey,
    };
    const after = await startOurs('ours-after', secrets, providerEnv);
    cleanup.add('stop ours-after', () => after.stop());
    if (write === 'send-message') {
      // One key per user, in the shared database: both builds open it (same ENCRYPTION_KEY).
      await mapLimit(env.users, 8, (u) =>
        graphql(
          after.url,
          'mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }',
          {
            input: { provider: 'OPENAI', apiKey: `sk-ab-${u.n}` },
          },
          u.token,
        ),
      );
    }
    const port = await freePort();
    const before = await ServerProcess.start({
      name: 'ours-before',
      args: [process.execPath, join(other, 'dist', 'src', 'main.js')],
      cwd: other,
      port,
      readyPath: '/health',
      env: oursEnv({ port, ...secrets }, providerEnv),
    });
    cleanup.add('stop ours-before', () => before.stop());
    const servers = [
      { name: 'A (before)', server: before },
      { name: 'B (this worktree)', server: after },
    ];
    let sequence = 0;
    const request = (token: string, body: object): LoadRequest => ({
      method: 'POST' as const,
      path: '/graphql',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    // sendMessage: each user's conversations in turn, so consecutive turns go to different conversations.
    const requests = (): LoadRequest[] =>
      write === 'create-conversation'
        ? env.users.map((u) =>
            request(u.token, { query: CREATE, variables: { title: `AB ${++sequence}` }, operationName: 'CreateConversation' }),
          )
        : env.users.map((u) => {
            const input = {
              conversationId: conversationId(u.n, 1 + (++sequence % WORKLOAD.conversations)),
              content: `AB ${sequence}`,
              model: FAKE_MODEL,
            };
            return request(u.token, { query: SEND, variables: { input }, operationName: 'SendMessage' });
          });
    const load = LoadGenerator.start();
    cleanup.add('stop the load generator', () => load.stop());
    const totals = servers.map(() => ({ cpuMs: 0, answered: 0 }));
    for (let round = 1; round <= rounds; round++) {
      // A then B in odd rounds, B then A in even ones: neither always runs on the heels of the other's load.
      const order = round % 2 === 1 ? [0, 1] : [1, 0];
      for (const i of order) {
        const { name, server } = servers[i]!;
        await waitQuiet(servers.map((s) => s.server));
        const spec = { url: server.url, connections, warmupSeconds: 0.5, seconds, timeoutSeconds: 10, verify: true, requests: requests() };
        const cpuBefore = server.cpuMs();
        const { result } = await load.run(spec, {});
        const cpu = server.cpuMs() - cpuBefore;
        // The warm-up's answers are not in result.requests: its CPU is billed over the window's answers (same for both).
        totals[i]!.cpuMs += cpu;
        totals[i]!.answered += result.requests;
        log(
          `round ${round} ${name}: ${result.rps.toFixed(0)} req/s, ${(cpu / result.requests).toFixed(2)} ms CPU/request, errors ${totalErrors(result)}`,
        );
      }
    }
    const perRequest = totals.map((t) => t.cpuMs / t.answered);
    for (const [i, { name }] of servers.entries())
      log(`${write} ${name}: ${perRequest[i]!.toFixed(2)} ms CPU per request over ${rounds} rounds`);
    log(`B / A CPU per request: ${(perRequest[1]! / perRequest[0]!).toFixed(2)}`);
  } finally {
    await cleanup.run();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
