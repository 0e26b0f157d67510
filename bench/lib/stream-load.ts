/**
 * Parent side of the streaming load generator (`stream-load-child.ts`, its
 * own process, so its CPU never mixes with a server's): one call per level.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';

export interface StreamLoadSpec {
  /** `ours`: startComparison on A, then comparisonEvents on A (and B); `relay`: POST /relay on A. */
  mode: 'ours' | 'relay';
  urlA: string;
  /** A second instance (same PostgreSQL and Redis): every `bEvery`-th comparison is also watched there. */
  urlB?: string;
  bEvery: number;
  /** The B subscriber opens this long after its comparison's start was sent (so it catches up by replay). */
  bDelayMs: number;
  comparisons: Array<{ k: number; token: string; prompt: string }>;
  /** Model ids as startComparison takes them (`openai:bench-stream-1`, …); the relay gets the names after `openai:`. */
  models: string[];
  deltas: number;
  startTimeoutMs: number;
  /** A subscriber still open this long after it was opened is cut and counted as timed out. */
  streamTimeoutMs: number;
}

export interface Percentiles {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export interface SideResult {
  subscribers: number;
  /** Ended with `event: complete`. */
  completed: number;
  timedOut: number;
  /** Non-200 answers, socket errors, GraphQL errors inside the stream. */
  errors: number;
  firstError?: string;
  /** Errors by kind (code or first words of the message). */
  errorKinds: Record<string, number>;
  /** Answers (responses) followed, and how many of them this subscriber saw settle. */
  answers: number;
  settled: number;
  /** Settled COMPLETED with exactly the tokens 0..deltas-1 in order (the settled text is right). */
  settledTextOk: number;
  /**
   * Token accounting over replay + delta events (never the settled text): every
   * token the provider wrote for a followed answer must arrive exactly once, in
   * order. `lost`: written by the provider, never received (set by `reconcile`).
   */
  lost: number;
  /** Tokens of followed answers the provider never wrote (the answer failed before or during the call): not losses, see `settled`. */
  unwritten: number;
  duplicated: number;
  outOfOrder: number;
  /** Tokens of another comparison or model, or with a sequence number out of range. */
  misrouted: number;
  /** Answers with at least one lost token. */
  answersWithLoss: number;
  /** Answers the provider wrote tokens for, of which this subscriber received none. */
  answersEmpty: number;
  replayTokens: number;
  deltaTokens: number;
  /** Events carrying a delta, and tokens per such event (coalescing). */
  deltaEvents: number;
  /** Read time − provider write time, for tokens read as deltas that were written after the subscriber's headers arrived. */
  latencyMs: Percentiles;
  /**
   * Read time − provider write time for every token written after the
   * subscription request was sent, however it arrived (as a delta or in the
   * replay): what a slow subscription open costs, which `latencyMs` leaves out.
   */
  latencyInclOpenMs: Percentiles;
  /** Tokens written after the subscription request was sent that still arrived in the replay. */
  replayedAfterRequest: number;
  /** Request sent → headers / first event. */
  openMs: Percentiles;
  firstEventMs: Percentiles;
  /** Wall-clock (ms, shared clock) of the first and last token read as a delta. */
  firstDeltaAt?: number;
  lastDeltaAt?: number;
}

export interface StartsResult {
  sent: number;
  ok: number;
  /** Failed starts by error code (HTTP status when there is none). */
  refused: Record<string, number>;
  firstError?: string;
  latencyMs: Percentiles;
  /** First start sent → last start answered. */
  spanMs: number;
}

/** What one subscriber missed of one answer (comparison k, model m): the sequence numbers it never received. */
export interface AnswerMisses {
  k: number;
  m: number;
  side: 'a' | 'b';
  missing: number[];
}

export interface StreamLoadResult {
  /** Per followed answer; `reconcile` turns them into `lost` with what the provider wrote, then drops them. */
  misses?: AnswerMisses[];
  starts?: StartsResult;
  a: SideResult;
  b?: SideResult;
  /** For comparisons whose answers A's subscriber did not see settle: their status in the database after the level. */
  unsettledOnA?: { comparisons: number; dbStatuses: Record<string, number> };
  wallMs: number;
}

/** Percentiles of an empty sample are NaN, which IPC (JSON) turns into null: back to NaN, so arithmetic on them stays NaN. */
function withNaN(result: StreamLoadResult): StreamLoadResult {
  const fix = (p: Percentiles) => {
    for (const key of Object.keys(p) as Array<keyof Percentiles>) if (p[key] === null) p[key] = NaN;
  };
  for (const side of [result.a, result.b]) {
    if (!side) continue;
    for (const p of [side.latencyMs, side.latencyInclOpenMs, side.openMs, side.firstEventMs]) fix(p);
  }
  if (result.starts) fix(result.starts.latencyMs);
  return result;
}

type ChildMessage = { type: 'result'; result: StreamLoadResult } | { type: 'error'; message: string };

export class StreamLoad {
  private constructor(private readonly child: ChildProcess) {}

  static start(): StreamLoad {
    const child = fork(join(__dirname, 'stream-load-child.ts'), [], {
      execArgv: ['--require', 'ts-node/register'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new StreamLoad(child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  run(spec: StreamLoadSpec): Promise<StreamLoadResult> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => {
        cleanup();
        reject(new Error(`the stream load generator exited (${code})`));
      };
      const onMessage = (message: ChildMessage) => {
        cleanup();
        if (message.type === 'result') resolve(withNaN(message.result));
        else reject(new Error(`stream load generator: ${message.message}`));
      };
      const cleanup = () => {
        this.child.off('message', onMessage);
        this.child.off('exit', onExit);
      };
      this.child.on('message', onMessage);
      this.child.once('exit', onExit);
      this.child.send({ type: 'run', spec });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || !this.child.connected) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.disconnect();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * Loss is measured against what the provider wrote (`written`: deltas per
 * "k.m"): a token never written is no lost delta but a failed answer.
 * Fills `lost`, `unwritten`, `answersWithLoss` and `answersEmpty`, and drops `misses`.
 */
export function reconcile(result: StreamLoadResult, written: Map<string, number>, deltas: number): StreamLoadResult {
  for (const side of [result.a, result.b]) {
    if (!side) continue;
    side.lost = side.unwritten = side.answersWithLoss = side.answersEmpty = 0;
  }
  for (const miss of result.misses ?? []) {
    const side = miss.side === 'a' ? result.a : result.b;
    if (!side) continue;
    const n = Math.min(deltas, written.get(`${miss.k}.${miss.m}`) ?? 0);
    side.unwritten += deltas - n;
    const lost = miss.missing.filter((i) => i < n).length;
    side.lost += lost;
    if (lost) side.answersWithLoss++;
    if (n > 0 && lost === n) side.answersEmpty++;
  }
  delete result.misses;
  return result;
}
