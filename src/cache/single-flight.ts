/**
 * In-process request coalescing: concurrent calls with the same key share one
 * execution of `fn`. The entry is removed as soon as it settles, so this is
 * deduplication, not caching. Errors are delivered to every waiter.
 */
import { outsideDeadline, raceDeadline } from '../db/request-deadline';

export interface SingleFlight {
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
  /** Keys currently in flight. */
  readonly size: number;
}

/** Creates an independent single-flight group (a Map of in-flight promises). */
export function singleFlight(): SingleFlight {
  const inFlight = new Map<string, Promise<unknown>>();
  return {
    run<T>(key: string, fn: () => Promise<T>): Promise<T> {
      const existing = inFlight.get(key);
      if (existing) return raceDeadline(existing as Promise<T>);
      // Shared by its waiters: run outside the first one's request deadline; each waiter bounds its own wait.
      const promise = outsideDeadline(async () => {
        try {
          return await fn();
        } finally {
          inFlight.delete(key);
        }
      });
      inFlight.set(key, promise);
      return raceDeadline(promise);
    },
    get size() {
      return inFlight.size;
    },
  };
}
