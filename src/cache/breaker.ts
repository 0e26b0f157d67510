/**
 * Circuit breaker with a background probe.
 *
 * closed ──failure──▶ open (for `cooldownMs`) ──cooldown elapsed, next call──▶
 * one background probe ──ok──▶ closed / ──fails──▶ open again.
 *
 * While open, {@link CircuitBreaker.allow} returns false at once, so callers pay
 * no connection or command timeouts. The probe is scheduled by an (unref'd)
 * timer when the cooldown ends, so recovery does not depend on traffic and
 * never runs on a caller's request path.
 */
export interface BreakerEvents {
  onOpen(error: unknown): void;
  onClose(): void;
}

export class CircuitBreaker {
  private openUntil = 0;
  private opened = false;
  private probing = false;
  private timer: NodeJS.Timeout | undefined;
  private disposed = false;

  constructor(
    private readonly cooldownMs: number,
    /** Resolves when the dependency is usable again (e.g. PING + journal replay). */
    private readonly probe: () => Promise<void>,
    private readonly events: BreakerEvents,
  ) {}

  get isOpen(): boolean {
    return this.opened;
  }

  /** True if the call may go to the store; false means "treat as a miss". */
  allow(): boolean {
    if (!this.opened) return true;
    if (Date.now() >= this.openUntil) this.startProbe();
    return false;
  }

  /** Record a failure: opens (or keeps open) the breaker for a full cooldown. */
  trip(error: unknown): void {
    if (this.disposed) return;
    this.openUntil = Date.now() + this.cooldownMs;
    this.schedule();
    if (this.opened) return;
    this.opened = true;
    this.events.onOpen(error);
  }

  /** Stops the probe timer for good (on close). */
  dispose(): void {
    this.disposed = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.startProbe(), this.cooldownMs);
    this.timer.unref();
  }

  /** Skip the rest of the cooldown (the connection reports it is back) and probe now. */
  probeNow(): void {
    if (this.opened) this.startProbe();
  }

  private startProbe(): void {
    if (this.probing || this.disposed || !this.opened) return;
    this.probing = true;
    this.probe().then(
      () => {
        this.probing = false;
        if (!this.opened) return;
        this.opened = false;
        this.events.onClose();
      },
      (error: unknown) => {
        this.probing = false;
        this.trip(error);
      },
    );
  }
}
