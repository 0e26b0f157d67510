/**
 * The one timeout race of the code base: cache and rate-limit calls (whose
 * circuit breaker counts these timeouts, see `cache/resilience.ts`), pub/sub,
 * the database ping of `/health`, provider model lists.
 */

/** Rejection reason of {@link withTimeout}. */
export class TimeoutError extends Error {
  override name = 'TimeoutError';
}

/**
 * How many extra windows a call gets when our own event loop, not the store,
 * was the slow one.
 */
const MAX_LAG_EXTENSIONS = 3;

/**
 * Resolves/rejects like `promise`, or rejects with `TimeoutError` when
 * the callee did not answer within `ms` of time this process was free to
 * read its answer. A busy event loop is not a store fault:
 * - when the timer fires, the verdict waits one turn of the loop
 *   (`setImmediate` runs after the poll phase), so a reply that already sits
 *   in the socket is read first;
 * - when the timer itself fired late (the loop was blocked for more than half
 *   the window), the call gets another window, up to {@link MAX_LAG_EXTENSIONS}.
 * So a saturated server keeps serving hits and its breaker stays closed,
 * while a store that really does not answer still times out.
 * The timer is cleared either way; a late rejection of `promise` is swallowed.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    let extensions = 0;
    let due = performance.now() + ms;
    let timer: NodeJS.Timeout;
    const onTimer = () => {
      const late = performance.now() - due;
      setImmediate(() => {
        if (settled) return;
        if (late > ms / 2 && extensions < MAX_LAG_EXTENSIONS) {
          extensions++;
          due = performance.now() + ms;
          timer = setTimeout(onTimer, ms);
          return;
        }
        settled = true;
        reject(new TimeoutError(`${what} timed out after ${ms}ms`));
      });
    };
    timer = setTimeout(onTimer, ms);
    promise.then(
      (value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** A promise resolved after `ms` (unref'd: never keeps the process alive). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
