/**
 * The request-level deadline (`REQUEST_DEADLINE_MS`): however many statements
 * a `/graphql` request runs, each within `DB_STATEMENT_TIMEOUT_MS`, its
 * database work as a whole ends by the deadline.
 *
 * - `graphql/http.ts` runs each `/graphql` request inside `withDeadline`
 *   (event streams at `/graphql/stream` and background work have none);
 * - the database layer (`orm.ts`, `installRequestDeadlines`) asks
 *   `currentDeadline()` before each statement and before queueing for a
 *   pooled connection: past the deadline it refuses with
 *   `RequestDeadlineError`, and a statement that starts with less time left
 *   than the statement timeout runs with `statement_timeout` lowered to what
 *   is left (`SET LOCAL`), so PostgreSQL cancels it at the deadline;
 * - time spent waiting for a model provider (`llm/stream-completion.ts`) does
 *   not count: it has its own bound (`LLM_TIMEOUT_MS`), and a mutation that
 *   waits for models (runComparison, sendMessage, …) still gets the whole
 *   budget for its statements;
 * - once the request has answered, its deadline ends: work it started that
 *   outlives it (a comparison's model calls and final writes) is not cut.
 *
 * The deadline travels with the request's async context (its slot of `request-scope.ts`),
 * so services, loaders and compiled reads need not pass it along.
 */
import { ScopeSlot } from '../request-scope';

/** What a client sees (SERVICE_UNAVAILABLE, 503 with Retry-After when the whole request failed). */
export const DEADLINE_MESSAGE = 'The request ran past its deadline, retry later';

/** Refusal of a statement (or of a wait for a pooled connection) past the request's deadline. */
export class RequestDeadlineError extends Error {
  override name = 'RequestDeadlineError';
  /** An own property: MikroORM re-wraps driver errors by copying them (`DriverException`), so the class is lost but this is not. */
  readonly requestDeadline = true;
  constructor(readonly deadlineMs: number) {
    super(`request deadline of ${deadlineMs} ms passed`);
  }
}

/** True when `error` (or what it wraps: MikroORM's `previous`, `cause`, GraphQL's `originalError`) is a deadline refusal. */
export function isDeadlineError(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    if (current instanceof RequestDeadlineError || (current as { requestDeadline?: unknown }).requestDeadline === true) return true;
    const c = current as { previous?: unknown; cause?: unknown; originalError?: unknown };
    current = c.previous ?? c.cause ?? c.originalError;
  }
  return false;
}

export class RequestDeadline {
  private readonly startedAt = performance.now();
  /** Time not counted: provider calls in flight (see {@link RequestDeadline.excluding}). */
  private pausedMs = 0;
  private pausedSince: number | undefined;
  private inFlight = 0;
  private ended = false;

  constructor(readonly ms: number) {}

  /** Milliseconds left (Infinity once the request has answered). Frozen while a provider call is in flight. */
  remaining(): number {
    if (this.ended) return Infinity;
    const now = this.pausedSince ?? performance.now();
    return this.ms - (now - this.startedAt - this.pausedMs);
  }

  /** Throws {@link RequestDeadlineError} when no time is left. */
  check(): void {
    if (this.remaining() <= 0) throw new RequestDeadlineError(this.ms);
  }

  /** `work`'s time does not count against the deadline (overlapping calls are counted once). */
  async excluding<T>(work: () => Promise<T>): Promise<T> {
    if (this.inFlight++ === 0) this.pausedSince = performance.now();
    try {
      return await work();
    } finally {
      if (--this.inFlight === 0 && this.pausedSince !== undefined) {
        this.pausedMs += performance.now() - this.pausedSince;
        this.pausedSince = undefined;
      }
    }
  }

  /**
   * `work`, or {@link RequestDeadlineError} when the deadline passes first; a
   * value that arrives late is handed to `dispose` (a pooled connection goes back).
   */
  race<T>(work: Promise<T>, dispose: (late: T) => unknown): Promise<T> {
    if (this.remaining() === Infinity) return work;
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let lost = false;
      const arm = () => {
        const left = this.remaining();
        if (left <= 0) {
          lost = true;
          reject(new RequestDeadlineError(this.ms));
          return;
        }
        // Re-armed rather than trusted: a provider call may have paused the clock meanwhile.
        if (left !== Infinity) timer = setTimeout(arm, Math.ceil(left));
      };
      work.then(
        (value) => {
          clearTimeout(timer);
          if (lost) void Promise.resolve(dispose(value)).catch(() => undefined);
          else resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          if (!lost) reject(error);
        },
      );
      arm();
    });
  }

  /** The request has answered: what it left running is no longer bounded by it. */
  end(): void {
    this.ended = true;
  }
}

const storage = new ScopeSlot<RequestDeadline>('request deadline');

/** Runs `fn` under a deadline of `ms` (0: none), ended when `fn` settles. */
export async function withDeadline<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  if (!ms) return fn();
  const deadline = new RequestDeadline(ms);
  try {
    return await storage.run(deadline, fn);
  } finally {
    deadline.end();
  }
}

/** The deadline of the request this code runs for; undefined outside `/graphql` requests. */
export function currentDeadline(): RequestDeadline | undefined {
  return storage.get();
}

/**
 * Runs `fn` outside any request's deadline: work that outlives the request or
 * is shared by several (a comparison's model calls and final writes, a
 * leaderboard refit, a single-flight load). Each request waiting for it bounds
 * its own wait ({@link raceDeadline}, {@link excludedFromDeadline}).
 */
export function outsideDeadline<T>(fn: () => T): T {
  return storage.exit(fn);
}

/** `work`, or `RequestDeadlineError` when the current request's deadline passes first (no deadline: `work`). */
export function raceDeadline<T>(work: Promise<T>): Promise<T> {
  const deadline = storage.get();
  return deadline ? deadline.race(work, () => undefined) : work;
}

/** Runs `work` with its time left out of the current request's deadline (a provider call). */
export function excludedFromDeadline<T>(work: () => Promise<T>): Promise<T> {
  const deadline = storage.get();
  return deadline ? deadline.excluding(work) : work();
}
