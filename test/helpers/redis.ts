/**
 * Real Redis for tests (never mocked).
 *
 * - `redisUrlForTests()`: REDIS_URL or redis://127.0.0.1:6379.
 * - `describeRedis`: `describe` when that Redis answers PING, else `describe.skip`
 *   with a warning; with REQUIRE_REDIS=1 a missing Redis throws instead.
 * - `startRedisServer()`: a private `redis-server` child process on a free port,
 *   for tests that kill / pause / restart Redis without touching the shared one.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { Socket } from 'node:net';
import { freePort } from './ports';

export function redisUrlForTests(): string {
  return process.env.REDIS_URL || 'redis://127.0.0.1:6379';
}

/** Synchronous PING (a child node process), so the describe/skip choice happens at collection time. */
const PING_SCRIPT =
  `
const u = new URL(process.argv[1]);
const tls = u.protocol === 'rediss:';
const port = Number(u.port || 6379), host = u.hostname || '127.0.0.1';
const s = tls ? require('node:tls').connect({ port, host, servername: host }) : require('node:net').connect(port, host);
const cmd = (...a) => '*' + a.length + '\\r\\n' + a.map((x) => '$' + Buffer.byteLength(x) + '\\r\\n' + x + '\\r\\n').join('');
let out = '';
s.setTimeout(5000, () => process.exit(2));
s.on('error', () => process.exit(3));
s.on(tls ? 'secureConnect' : 'connect', () => {
  if (u.password) s.write(u.username ? cmd('AUTH', decodeURIComponent(u.username), decodeURIComponent(u.password)) ` +
  `: cmd('AUTH', decodeURIComponent(u.password)));
  s.write(cmd('PING'));
});
s.on('data', (d) => { out += d; if (out.includes('+PONG')) process.exit(0); if (out.startsWith('-')) process.exit(4); });
`;

/**
 * A refused connection answers at once; the bounds only matter on a machine so loaded that starting the child
 * and its PING took over 3 s (three Redis files of one run failed so with REQUIRE_REDIS=1, at load 29).
 */
function redisAnswers(url: string): boolean {
  const result = spawnSync(process.execPath, ['-e', PING_SCRIPT, url], { timeout: 10_000 });
  return result.status === 0;
}

function chooseDescribe(): jest.Describe {
  const url = redisUrlForTests();
  if (redisAnswers(url)) return describe;
  const why = `Redis does not answer PING at ${url.replace(/\/\/[^@/]*@/, '//***@')} (set REDIS_URL or start redis-server)`;
  if (process.env.REQUIRE_REDIS === '1') throw new Error(`REQUIRE_REDIS=1 but ${why}`);
  console.warn(`Skipping Redis tests: ${why}. Set REQUIRE_REDIS=1 to fail instead.`);
  return describe.skip as unknown as jest.Describe;
}

export const describeRedis: jest.Describe = chooseDescribe();

/** True if a `redis-server` binary is on PATH (needed by `startRedisServer`). */
export function redisServerAvailable(): boolean {
  return spawnSync('redis-server', ['--version']).status === 0;
}

/**
 * `describe` when a `redis-server` binary is on PATH (for `startRedisServer`
 * tests; independent of REDIS_URL), else skip with a warning — or throw with REQUIRE_REDIS=1.
 */
export const describeRedisServer: jest.Describe = (() => {
  if (redisServerAvailable()) return describe;
  const why = 'no redis-server binary on PATH (needed to start a private Redis)';
  if (process.env.REQUIRE_REDIS === '1') throw new Error(`REQUIRE_REDIS=1 but ${why}`);
  console.warn(`Skipping private-Redis tests: ${why}. Set REQUIRE_REDIS=1 to fail instead.`);
  return describe.skip as unknown as jest.Describe;
})();

/** A TCP port nothing listens on (at the time of the call). */
/** A free port for a server the test starts (and may restart on it): see ./ports. */
export { freePort };

async function pingOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.on('data', (d) => done(d.toString().includes('PONG')));
  });
}

export interface PrivateRedis {
  port: number;
  url: string;
  /** Pid of the current redis-server process. */
  readonly pid: number;
  /** SIGKILL this server only and wait for it to exit. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: a hung (not closed) Redis. */
  pause(): void;
  resume(): void;
  /** Start a fresh redis-server on the same port and wait until it answers. */
  restart(): Promise<void>;
  /** Kill if running (for afterEach / afterAll). */
  stop(): Promise<void>;
}

/** Starts a private, non-persistent redis-server on a free port and waits until it answers PING (bounded). */
export async function startRedisServer(): Promise<PrivateRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;

  const launch = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    const deadline = Date.now() + 10_000;
    while (!(await pingOnce(port))) {
      if (Date.now() > deadline) throw new Error(`private redis-server on port ${port} did not start`);
      if (child.exitCode !== null) throw new Error(`private redis-server exited with ${child.exitCode}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const kill = async () => {
    const current = child;
    if (!current || current.exitCode !== null || current.signalCode !== null) return;
    const exited = new Promise((r) => current.once('exit', r));
    process.kill(current.pid as number, 'SIGCONT');
    process.kill(current.pid as number, 'SIGKILL');
    await exited;
  };

  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return child?.pid as number;
    },
    kill,
    pause: () => void process.kill(child?.pid as number, 'SIGSTOP'),
    resume: () => void process.kill(child?.pid as number, 'SIGCONT'),
    restart: launch,
    stop: kill,
  };
}
