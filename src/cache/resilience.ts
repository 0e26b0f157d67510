import type { Logger } from '../observability/logger';
import { CircuitBreaker } from './breaker';
import { InvalidationJournal } from './journal';
import { isErrorReply } from './redis-client';
import { CacheSerializationError } from './stores/serialization';
import type { Store } from './stores/store';
import { TimeoutError, sleep, withTimeout } from '../timeout';

export interface FailOpenOptions {
  operationTimeoutMs: number;
  breakerCooldownMs: number;
  logger: Logger;
  /** Namespaces seen so far: flushed on recovery if the journal overflowed. */
  knownNamespaces: () => Iterable<string>;
  /** Default 10 000 pending invalidations. */
  journalMax?: number;
}

/**
 * Fail-open guard around a {@link Store}: per-operation timeout, circuit
 * breaker, invalidation journal. `run` never rejects for store failures; it
 * returns `fallback()` instead. Only `CacheSerializationError` (a caller bug)
 * propagates, without tripping the breaker.
 *
 * A Redis error *reply* (WRONGTYPE, "not an integer", OOM, ...) comes from a
 * healthy server: it is a miss for that call only — it neither trips the
 * breaker nor is journaled (replaying it could never succeed).
 */
/** How many timeouts a late call may take to answer before its silence counts as an outage. */
const LATE_ANSWER_GRACE = 4;

export class FailOpenStore {
  readonly breaker: CircuitBreaker;
  readonly journal: InvalidationJournal;
  private closed = false;
  private firstAttemptDone = false;
  private readonly log: Logger;

  constructor(
    readonly store: Store,
    private readonly opts: FailOpenOptions,
  ) {
    this.log = opts.logger.child({ component: 'cache' });
    this.journal = new InvalidationJournal(opts.journalMax ?? 10_000, opts.knownNamespaces);
    this.breaker = new CircuitBreaker(opts.breakerCooldownMs, () => this.probe(), {
      onOpen: (err) => this.log.warn({ err, cooldownMs: opts.breakerCooldownMs }, 'cache unavailable: failing open (breaker open)'),
      onClose: () => this.log.info('cache available again (breaker closed)'),
    });
    void store.firstAttempt.then(() => (this.firstAttemptDone = true));
  }

  /**
   * Runs `op` unless closed / breaker open; on error or timeout trips the
   * breaker. `onSkipped` runs whenever `op` did not (or may not have)
   * completed — used to journal invalidations.
   */
  async run<T>(
    what: string,
    op: (store: Store) => Promise<T>,
    fallback: () => T,
    onSkipped?: () => void,
    timeoutMs = this.opts.operationTimeoutMs,
  ): Promise<T> {
    if (this.closed) return fallback();
    if (!this.firstAttemptDone) await Promise.race([this.store.firstAttempt, sleep(timeoutMs)]);
    if (!this.breaker.allow()) {
      onSkipped?.();
      return fallback();
    }
    const attempt = op(this.store);
    try {
      return await this.timed(attempt, timeoutMs, what);
    } catch (error) {
      if (error instanceof CacheSerializationError) throw error;
      if (isErrorReply(error)) {
        this.log.error({ err: error, op: what }, 'cache command rejected by Redis: treated as a miss');
        return fallback();
      }
      this.log.debug({ err: error, op: what }, 'cache operation failed: treated as a miss');
      if (error instanceof TimeoutError) this.judgeLate(attempt, error, timeoutMs);
      else this.breaker.trip(error);
      onSkipped?.();
      return fallback();
    }
  }

  /**
   * A slow call is a miss for its caller at once, but only an outage if its
   * answer never comes: a call that waited behind our own backlog (a
   * saturated event loop, a socket full of large writes) is answered late by
   * a healthy Redis, and then the breaker stays closed. A hung Redis opens it
   * after {@link LATE_ANSWER_GRACE} timeouts; a closed or refused connection
   * opens it at once (`connectionLost`).
   */
  private judgeLate(attempt: Promise<unknown>, error: TimeoutError, timeoutMs: number): void {
    let answered = false;
    const verdict = setTimeout(() => {
      if (!answered && !this.closed) this.breaker.trip(error);
    }, timeoutMs * LATE_ANSWER_GRACE);
    verdict.unref();
    const settle = () => {
      answered = true;
      clearTimeout(verdict);
    };
    attempt.then(settle, (late: unknown) => (late instanceof TimeoutError ? undefined : settle()));
  }

  /** Wire to the connection's `error` event: open the breaker without waiting for an operation to fail. */
  connectionLost(error: unknown): void {
    if (!this.closed) this.breaker.trip(error);
  }

  /** Wire to the connection's `ready` event: probe now instead of after the cooldown. */
  connectionReady(): void {
    if (!this.closed) this.breaker.probeNow();
  }

  close(): void {
    this.closed = true;
    this.breaker.dispose();
  }

  /** Background probe: PING, then replay journaled invalidations; only then may the breaker close. */
  private async probe(): Promise<void> {
    if (this.closed) throw new Error('cache closed');
    const t = this.opts.operationTimeoutMs;
    await this.timed(this.store.ping(), t, 'probe ping');
    if (this.journal.size === 0) return;
    const pending = this.journal.size;
    await this.timed(
      this.journal.replay({
        delete: (k) => this.tolerateReply(this.store.delete(k)),
        incr: (k) => this.tolerateReply(this.store.incr(k)),
        flush: (nsPrefix) => this.tolerateReply(this.store.flushNamespace(nsPrefix)),
      }),
      Math.max(t * 20, 10_000),
      'journal replay',
    );
    this.log.info({ pending }, 'replayed invalidations journaled during the cache outage');
  }

  /** Replay: an error reply will never succeed, so it is logged and skipped instead of failing the probe. */
  private async tolerateReply(op: Promise<unknown>): Promise<void> {
    try {
      await op;
    } catch (error) {
      if (!isErrorReply(error)) throw error;
      this.log.error({ err: error }, 'journaled invalidation rejected by Redis: skipped');
    }
  }

  private timed<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
    return this.store.kind === 'memory' ? promise : withTimeout(promise, ms, what);
  }
}
