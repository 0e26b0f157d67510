/**
 * At most `limit` bursty operations at once, the rest waiting in order without
 * holding anything. A burst of comparison starts (each a few transactions) would
 * otherwise all queue for the pool at once: under load the pool's own acquire
 * timeout (`DB_POOL_ACQUIRE_TIMEOUT_MS`, there to fail fast when PostgreSQL is
 * stuck) then refuses starts that were merely queued behind each other, and
 * every other request waits behind them. Behind the gate they queue here
 * instead, bounded by `maxWaitMs` (then SERVICE_UNAVAILABLE with a retry
 * delay), and at most `limit` connections are theirs at a time.
 */
import { AppError } from '../errors';

export class BurstGate {
  private active = 0;
  private readonly waiting: Array<{ admit: () => void; timer: NodeJS.Timeout }> = [];

  constructor(
    private readonly limit: number,
    private readonly maxWaitMs: number,
  ) {
    if (!(limit >= 1)) throw new RangeError('BurstGate limit must be at least 1');
  }

  /** Runs `task` once fewer than `limit` others run; rejects with SERVICE_UNAVAILABLE after `maxWaitMs` in the queue. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await this.enter();
    else this.active++;
    try {
      return await task();
    } finally {
      this.leave();
    }
  }

  /** Operations running and waiting (for metrics and tests). */
  get load(): { active: number; waiting: number } {
    return { active: this.active, waiting: this.waiting.length };
  }

  private enter(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const entry = {
        admit: () => {
          clearTimeout(entry.timer);
          resolve();
        },
        timer: setTimeout(() => {
          this.waiting.splice(this.waiting.indexOf(entry), 1);
          const retryAfterSeconds = Math.max(1, Math.ceil(this.maxWaitMs / 1000));
          reject(
            new AppError('SERVICE_UNAVAILABLE', `The server is busy starting other comparisons: retry in ${retryAfterSeconds} s`, {
              retryAfterSeconds,
            }),
          );
        }, this.maxWaitMs),
      };
      this.waiting.push(entry);
    });
  }

  private leave(): void {
    const next = this.waiting.shift();
    // The slot passes straight to the next in line (`active` unchanged), so no newcomer can overtake it.
    if (next) next.admit();
    else this.active--;
  }
}
