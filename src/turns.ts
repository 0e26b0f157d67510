/**
 * One bursty step per turn of the event loop. A burst of comparison starts,
 * subscription opens and provider calls arrives together, and each runs a
 * chunk of JavaScript before its first await; run back to back in one poll
 * phase they hold up the deltas of the streams already running, whose socket
 * reads wait for the next phase. Behind the gate the first step of a turn goes
 * at once and the others wait, each released in a later turn (a `setImmediate`
 * chain), so the I/O that arrived meanwhile, the running streams' deltas among
 * it, is handled between them. Nothing is held while waiting; the order is kept.
 */
export class TurnGate {
  private readonly queue: Array<() => void> = [];
  /** A step already went in this turn (cleared, or handed on, by the next check phase). */
  private taken = false;
  private readonly next = (): void => {
    const release = this.queue.shift();
    if (!release) {
      this.taken = false;
      return;
    }
    release();
    setImmediate(this.next);
  };

  /** Resolves when this step may run: at once when it is the turn's first, else in a later turn. */
  take(): Promise<void> {
    if (!this.taken) {
      this.taken = true;
      setImmediate(this.next);
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.queue.push(resolve));
  }

  /** Steps waiting for a turn (for tests). */
  get waiting(): number {
    return this.queue.length;
  }
}

/** The gate that lets every step through at once (`BURST_TURNS=off`). */
export const NO_TURNS: Pick<TurnGate, 'take'> = { take: () => Promise.resolve() };
