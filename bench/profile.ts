/**
 * `npm run bench:profile -- [--variant=miss|hit|conversation] [--concurrency=10] [--seconds=10]`:
 * seeds the bench workload (lib/setup.ts), runs ours under `node --cpu-prof`,
 * (conversation: the conversation view of `npm run bench`, its second page of 5, cache bypassed)
 * loads it with autocannon (its own process) and prints the top self-time
 * frames of the server. The profile itself is kept under bench/results/profiles/.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { formatFrames, profilesIn, readProfile, topFrames } from './lib/cpuprofile';
import { LoadGenerator } from './lib/load';
import { parseOptions } from './lib/options';
import { freePort, ServerProcess } from './lib/procs';
import { CONVERSATION_VIEW, HISTORY } from './lib/queries';
import { conversationId, WORKLOAD } from './lib/seed';
import { Cleanup, log, oursEnv, prepare, ROOT } from './lib/setup';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const pick = (name: string, fallback: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
  const variant = pick('variant', 'miss');
  const connections = Number(pick('concurrency', '10'));
  const seconds = Number(pick('seconds', '10'));
  const options = parseOptions(args.includes('--no-build') ? ['--no-build'] : [], process.env);
  options.users = 200;
  const cleanup = new Cleanup();
  try {
    const env = await prepare(options, cleanup);
    await env.ours.stop();
    const dir = join(ROOT, 'bench', 'results', 'profiles', `${variant}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    mkdirSync(dir, { recursive: true });
    const port = await freePort();
    const server = await ServerProcess.start({
      name: 'ours-profiled',
      args: [
        process.execPath,
        ...(args.includes('--trace-gc') ? ['--trace-gc'] : []),
        '--cpu-prof',
        `--cpu-prof-dir=${dir}`,
        'dist/src/main.js',
      ],
      cwd: ROOT,
      port,
      readyPath: '/health',
      env: oursEnv(
        {
          port,
          dbUrl: env.db.url,
          redisUrl: env.redisUrl,
          cachePrefix: env.cachePrefix,
          jwtSecret: env.jwtSecret,
          encryptionKey: env.encryptionKey,
        },
        args.includes('--trace-gc') ? { LOG_LEVEL: 'warn' } : {},
      ),
    });
    const body = JSON.stringify({ query: HISTORY, operationName: 'History' });
    const headersOf = (token: string) => ({
      'content-type': 'application/json',
      authorization: `Bearer ${token}`,
      ...(variant !== 'hit' ? { 'cache-control': 'no-cache' } : {}),
    });
    const conversationView = async (u: (typeof env.users)[number]) => {
      // The second page of 5, after the first page's end cursor (as `npm run bench` asks for it).
      const view = (variables: object) => JSON.stringify({ query: CONVERSATION_VIEW, variables, operationName: 'ConversationView' });
      const id = conversationId(u.n, 1 + (u.n % WORKLOAD.conversations));
      const first = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: headersOf(u.token),
        body: view({ id, n: 5, after: null }),
      });
      const after = ((await first.json()) as any).data.conversation.messages.pageInfo.endCursor;
      return { method: 'POST' as const, path: '/graphql', headers: headersOf(u.token), body: view({ id, n: 5, after }) };
    };
    const requests =
      variant === 'conversation'
        ? await Promise.all(env.users.map(conversationView))
        : env.users.map((u) => ({ method: 'POST' as const, path: '/graphql', headers: headersOf(u.token), body }));
    if (args.includes('--keep'))
      log(
        `DATABASE_URL=${env.db.url} CACHE_PREFIX=${env.cachePrefix} JWT_SECRET=${env.jwtSecret} ENCRYPTION_KEY=${env.encryptionKey} TOKEN=${env.users[0]!.token}`,
      );
    const load = LoadGenerator.start();
    const { result } = await load.run(
      { url: server.url, connections, warmupSeconds: 3, seconds, timeoutSeconds: 10, verify: true, requests },
      {},
    );
    await load.stop();
    const gcLines = server
      .tail()
      .split('\n')
      .filter((l) => /Mark-Compact|Scavenge|Mark-sweep/.test(l));
    await server.stop();
    if (args.includes('--trace-gc')) {
      const pauses = gcLines.map((l) => ({
        kind: /Scavenge/.test(l) ? 'scavenge' : 'mark-compact',
        ms: Number(/, ([\d.]+) \/ [\d.]+ ms/.exec(l)?.[1] ?? NaN),
        line: l,
      }));
      for (const kind of ['scavenge', 'mark-compact']) {
        const ms = pauses
          .filter((p) => p.kind === kind && !Number.isNaN(p.ms))
          .map((p) => p.ms)
          .sort((a, b) => a - b);
        log(
          `GC ${kind}: ${ms.length} in the last 64 KB of output; max ${ms[ms.length - 1] ?? 0} ms, median ${ms[Math.floor(ms.length / 2)] ?? 0} ms`,
        );
      }
      for (const p of pauses.filter((p) => p.kind === 'mark-compact').slice(-5)) log(p.line.trim().slice(0, 220));
    }
    log(`${variant} c=${connections}: ${result.rps.toFixed(0)} req/s, p50 ${result.p50} ms, p99 ${result.p99} ms`);
    const file = profilesIn(dir)[0];
    if (!file) throw new Error(`no .cpuprofile in ${dir}`);
    console.log(`top self-time frames (${variant}, c=${connections}; ${file}):`);
    console.log(formatFrames(topFrames(readProfile(file), Number(pick('top', '25')))));
  } finally {
    if (args.includes('--keep')) log('--keep: the database and Redis keys stay');
    else await cleanup.run();
  }
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
