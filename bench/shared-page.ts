/**
 * `npm run bench:shared -- [--rounds=3] [--seconds=5] [--profile] [--keep | --env=<file>] [--no-build]`:
 * the hot shared page (`ours-shared`) beside its limit (`bare-redis-shared`), measured in alternating
 * rounds (ours, bare, ours, bare…) so both see the same machine load, with the server CPU per request
 * of each round. `--profile` runs ours under `node --cpu-prof` and prints its top self-time frames and
 * origins over the measured windows only. `--keep` leaves the seeded database and Redis keys and writes
 * their settings to a file that `--env=<file>` reuses (no 80 s seed per iteration).
 * The shape of the requests is `run.ts`'s (one link per cycled user, read anonymously, hot).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@redis/client';
import { formatFrames, profileClockUs, profilesIn, readProfile, selfByOrigin, topFrames } from './lib/cpuprofile';
import { LoadGenerator, type LoadRequest } from './lib/load';
import { parseOptions } from './lib/options';
import { freePort, ServerProcess } from './lib/procs';
import { comparisonId, WORKLOAD } from './lib/seed';
import { baseEnv, Cleanup, log, mapLimit, prepare, ROOT, signToken, startOurs } from './lib/setup';

const SHARED_PAGE = `query SharedPage($token: String!) { shared(token: $token) { title sharedAt
  messages { role content model createdAt }
  comparisons { prompt blind revealed createdAt responses { label model content status kind } } } }`;

interface Kept {
  dbUrl: string;
  redisUrl: string;
  cachePrefix: string;
  jwtSecret: string;
  encryptionKey: string;
  users: Array<{ n: number; id: string }>;
}

async function post(url: string, request: LoadRequest): Promise<Buffer> {
  const res = await fetch(`${url}${request.path}`, { method: 'POST', headers: request.headers, body: request.body });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${body.toString('utf8').slice(0, 300)}`);
  return body;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const pick = (name: string, fallback: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
  const rounds = Number(pick('rounds', '3'));
  const seconds = Number(pick('seconds', '5'));
  const connections = Number(pick('concurrency', '10'));
  const envFile = pick('env', '');
  const options = parseOptions(args.includes('--no-build') || envFile ? ['--no-build'] : [], process.env);
  const cleanup = new Cleanup();
  try {
    let kept: Kept;
    if (envFile && existsSync(envFile)) {
      kept = JSON.parse(readFileSync(envFile, 'utf8')) as Kept;
      if (!args.includes('--no-build')) {
        log('npm run build');
        const { spawnSync } = await import('node:child_process');
        const built = spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
        if (built.status !== 0) throw new Error('npm run build failed');
      }
    } else {
      const env = await prepare(options, args.includes('--keep') ? new Cleanup() : cleanup);
      await env.ours.stop();
      kept = {
        dbUrl: env.db.url,
        redisUrl: env.redisUrl,
        cachePrefix: env.cachePrefix,
        jwtSecret: env.jwtSecret,
        encryptionKey: env.encryptionKey,
        users: env.users.map(({ n, id }) => ({ n, id })),
      };
      if (args.includes('--keep')) {
        const file = envFile || join(ROOT, 'bench', 'results', 'shared-page-env.json');
        writeFileSync(file, JSON.stringify(kept, null, 2));
        log(`--keep: the database and Redis keys stay; reuse them with --env=${file}`);
      }
    }
    const secrets = { ...kept };
    const profileDir = join(ROOT, 'bench', 'results', 'profiles', `shared-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    if (args.includes('--profile')) mkdirSync(profileDir, { recursive: true });
    const ours = await startOurs(
      'ours-shared',
      secrets,
      { RATE_LIMIT_SHARED_PER_IP: '1000000000' },
      args.includes('--profile') ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : undefined,
    );
    cleanup.add('stop ours-shared', () => ours.stop());
    const requests = await mapLimit(kept.users, 8, async (u): Promise<LoadRequest> => {
      const token = await signToken(kept.jwtSecret, u.id);
      const created = JSON.parse(
        (
          await post(ours.url, {
            method: 'POST',
            path: '/graphql',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
            body: JSON.stringify({
              query: 'mutation($input: ShareLinkInput!) { createShareLink(input: $input) { token } }',
              variables: { input: { comparisonId: comparisonId(u.n, 1 + (u.n % WORKLOAD.comparisons)) } },
            }),
          })
        ).toString('utf8'),
      );
      const shareToken = created.data?.createShareLink?.token;
      if (typeof shareToken !== 'string') throw new Error(`createShareLink failed: ${JSON.stringify(created).slice(0, 300)}`);
      const request: LoadRequest = {
        method: 'POST',
        path: '/graphql',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: SHARED_PAGE, variables: { token: shareToken }, operationName: 'SharedPage' }),
      };
      await post(ours.url, request);
      return request;
    });
    const keyPrefix = `${kept.cachePrefix}:bare-shared:${randomBytes(3).toString('hex')}:`;
    const redis = createClient({ url: kept.redisUrl });
    redis.on('error', () => undefined);
    await redis.connect();
    for (const request of requests) {
      const token = JSON.parse(request.body as string).variables.token as string;
      await redis.set(keyPrefix + token, await post(ours.url, request), { EX: 3600 });
    }
    await redis.close();
    const port = await freePort();
    const bare = await ServerProcess.start({
      name: 'bare-redis-shared',
      args: [process.execPath, 'bare-redis.js'],
      cwd: join(ROOT, 'bench', 'limits'),
      port,
      readyPath: '/__bench/ready',
      env: baseEnv({
        NODE_ENV: 'production',
        PORT: String(port),
        REDIS_URL: kept.redisUrl,
        BENCH_KEY_PREFIX: keyPrefix,
        BENCH_KEY_FROM: 'token',
      }),
    });
    cleanup.add('stop bare-redis-shared', () => bare.stop());
    for (const i of [0, requests.length - 1]) {
      if (!(await post(ours.url, requests[i]!)).equals(await post(bare.url, requests[i]!))) throw new Error('bare and ours differ');
    }

    const load = LoadGenerator.start();
    cleanup.add('stop the load generator', () => load.stop());
    const windows: Array<[number, number]> = [];
    const rows: string[] = [];
    const totals = { ours: { ms: 0, n: 0 }, bare: { ms: 0, n: 0 } };
    for (let round = 1; round <= rounds; round++) {
      for (const [name, server] of [
        ['ours', ours],
        ['bare', bare],
      ] as const) {
        let cpu0 = 0;
        let t0 = 0;
        let cpu1 = 0;
        const { result } = await load.run(
          { url: server.url, connections, warmupSeconds: 1, seconds, timeoutSeconds: 10, verify: true, requests },
          {
            beforeMeasure: async () => {
              cpu0 = server.cpuMs();
              t0 = profileClockUs();
            },
            afterMeasure: async () => {
              cpu1 = server.cpuMs();
              if (name === 'ours') windows.push([t0, profileClockUs()]);
            },
          },
        );
        const errors = result.errors.socket + result.errors.timeouts + result.errors.non2xx + result.errors.graphql;
        const perReq = (cpu1 - cpu0) / Math.max(1, result.requests);
        totals[name].ms += cpu1 - cpu0;
        totals[name].n += result.requests;
        rows.push(
          `round ${round} ${name.padEnd(4)} ${result.rps.toFixed(0).padStart(6)} req/s  p50 ${result.p50.toFixed(2)} ms  ` +
            `CPU ${perReq.toFixed(3)} ms/req  errors ${errors}  load ${loadavg()[0]!.toFixed(1)}`,
        );
        log(rows[rows.length - 1]!);
      }
    }
    await load.stop();
    const oursMs = totals.ours.ms / Math.max(1, totals.ours.n);
    const bareMs = totals.bare.ms / Math.max(1, totals.bare.n);
    console.log(rows.join('\n'));
    console.log(
      `CPU per request over all rounds: ours ${oursMs.toFixed(3)} ms, bare ${bareMs.toFixed(3)} ms, ` +
        `bare/ours ${(bareMs / oursMs).toFixed(2)} (load ${loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')})`,
    );
    if (args.includes('--profile')) {
      await ours.stop();
      const file = profilesIn(profileDir)[0];
      if (!file) throw new Error(`no .cpuprofile in ${profileDir}`);
      const profile = readProfile(file);
      console.log(`top self-time frames (ours-shared, c=${connections}, measured windows only; ${file}):`);
      console.log(formatFrames(topFrames(profile, Number(pick('top', '30')), windows)));
      console.log('by origin:');
      console.log(formatFrames(selfByOrigin(profile, 20, windows)));
    }
  } finally {
    await cleanup.run();
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
