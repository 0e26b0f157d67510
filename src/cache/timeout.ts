/** Rejection reason of {@link withTimeout}. */
export class CacheTimeoutError extends Error {
  override name = 'CacheTimeoutError';
}

/**
 * Resolves/rejects like `promise`, or rejects with `CacheTimeoutError` after
 * `ms`. The timer is cleared either way; a late rejection of `promise` is swallowed.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what = 'cache operation'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CacheTimeoutError(`${what} timed out after ${ms}ms`)), ms);
  });
  promise.catch(() => undefined);
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A promise resolved after `ms` (unref'd: never keeps the process alive). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
