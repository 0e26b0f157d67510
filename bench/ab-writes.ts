/**
 * `npx ts-node --transpile-only bench/ab-writes.ts --before=/path/to/other/worktree [--rounds=4] [--seconds=3]
 * [--concurrency=10]`: the server CPU per createConversation of two builds of ours, interleaved on one seeded database.
 * The other worktree's build (its dist/src/main.js, `npm run build` there first) is A, this one's is B; each round
 * loads A then B for the same seconds at the same concurrency, and reads each server's CPU (/proc/<pid>/stat) over its
 * window (A first in odd rounds, B first in even ones). On a shared machine req/s follows the neighbours' load; CPU per request, taken in turns, is what compares.
 */
import { join } from 'node:path';
import { LoadGenerator, type LoadRequest, totalErrors } from './lib/load';
import { parseOptions } from './lib/options';
import { freePort, ServerProcess } from './lib/procs';
import { Cleanup, log, oursEnv, prepare, waitQuiet } from './lib/setup';

const CREATE = 'mutation CreateConversation($title: String) { createConversation(title: $title) { id title createdAt } }';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const pick = (name: string, fallback?: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
  const other = pick('before');
  if (!other) throw new Error('--before=<worktree whose dist is A> is required');
  const rounds = Number(pick('rounds', '4'));
  const seconds = Number(pick('seconds', '3'));
  const connections = Number(pick('concurrency', '10'));
  const options = parseOptions(['--ci'], process.env);
  options.users = 60;
  const cleanup = new Cleanup();
  try {
    const env = await prepare(options, cleanup);
    const port = await freePort();
    const before = await ServerProcess.start({
      name: 'ours-before',
      args: [process.execPath, join(other, 'dist', 'src', 'main.js')],
      cwd: other,
      port,
      readyPath: '/health',
      env: oursEnv({
        port,
        dbUrl: env.db.url,
        redisUrl: env.redisUrl,
        cachePrefix: env.cachePrefix,
        jwtSecret: env.jwtSecret,
        encryptionKey: env.encryptionKey,
      }),
    });
    cleanup.add('stop ours-before', () => before.stop());
    const servers = [
      { name: 'A (before)', server: before },
      { name: 'B (this worktree)', server: env.ours },
    ];
    let sequence = 0;
    const requests = (): LoadRequest[] =>
      env.users.map((u) => ({
        method: 'POST' as const,
        path: '/graphql',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` },
        body: JSON.stringify({ query: CREATE, variables: { title: `AB ${++sequence}` }, operationName: 'CreateConversation' }),
      }));
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
    for (const [i, { name }] of servers.entries()) log(`${name}: ${perRequest[i]!.toFixed(2)} ms CPU per request over ${rounds} rounds`);
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
