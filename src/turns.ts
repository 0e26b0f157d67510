/**
 * A bounded share of each event-loop turn for bursty steps. A burst of
 * comparison starts, subscription opens and provider calls arrives together,
 * and each runs a chunk of JavaScript before its first await; run back to back
 * they hold up the deltas of the streams already running, whose socket reads
 * wait for the next poll phase. Behind the gate a turn runs waiting steps one
 * after the other only until `budgetMs` of that turn has gone to them; the rest
 * wait for a later turn (a `setImmediate`), so the I/O that arrived meanwhile,
 * the running streams' deltas among it, is handled in between. Nothing is held
 * while waiting; the order is kept. (One step per turn, the first version, let
 * a turn that was long for other reasons pass one step only: 120 steps of a
 * 20-comparison burst took 1.7 s to open their subscriptions.)
 */
export class TurnGate {
  private readonly queue: Array<() => void> = [];
  /** When the current turn's first step went (undefined: no step went in this turn yet). */
  private turnStart: number | undefined;
  /** A release chain runs (a microtask is queued to let the next step go). */
  private releasing = false;
  private scheduled = false;

  constructor(private readonly budgetMs = 3) {}

  /**
   * Resolves when this step may run: in this turn while its budget lasts (after
   * the steps before it have run their synchronous chunks), else in a later turn.
   */
  take(): Promise<void> {
    const step = new Promise<void>((resolve) => this.queue.push(resolve));
    if (!this.releasing && !this.scheduled) {
      this.releasing = true;
      queueMicrotask(this.release);
    }
    return step;
  }

  /** Steps waiting for a turn (for tests). */
  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Lets the next waiting step go and, once its synchronous chunk has run (this
   * microtask is queued after the step's continuation), the next, while the
   * turn's budget lasts; then waits for a later turn.
   */
  private readonly release = (): void => {
    if (this.queue.length === 0) {
      this.releasing = false;
      return;
    }
    const now = performance.now();
    if (this.turnStart === undefined) {
      this.turnStart = now;
      this.schedule();
    } else if (now - this.turnStart >= this.budgetMs) {
      this.releasing = false;
      this.schedule();
      return;
    }
    this.queue.shift()!();
    queueMicrotask(this.release);
  };

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.turn);
  }

  /** A new turn: its budget starts with its first step. */
  private readonly turn = (): void => {
    this.scheduled = false;
    this.turnStart = undefined;
    if (this.queue.length > 0 && !this.releasing) {
      this.releasing = true;
      this.release();
    }
  };
}

export interface CalmGateOptions {
  /** A probe timer this much later than due means the loop is behind (its I/O, the running streams' deltas, waits). */
  maxLagMs?: number;
  /** Under lag that does not clear, one waiting step still goes this often (nothing waits forever). */
  maxWaitMs?: number;
}

/**
 * Steps (provider calls) started only while the event loop keeps up. A burst of
 * comparisons asks for its provider calls together; each call's start (the AI
 * SDK's request, its stream pipeline) and then its stream cost CPU, and once
 * the loop is behind, every running stream's deltas wait in line with it. Here a
 * waiting step goes when a 1 ms probe timer fires no more than `maxLagMs` late
 * (the loop handled its I/O in time), one per probe, in order; while the loop is
 * behind, steps wait, except one every `maxWaitMs`. So an overloaded instance
 * delays the first token of new answers instead of the text of the answers
 * already streaming. Nothing is held while waiting; idle, a step waits one probe
 * (about a millisecond).
 */
export class CalmGate {
  private readonly queue: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private due = 0;
  private lastRelease = 0;
  private readonly maxLagMs: number;
  private readonly maxWaitMs: number;

  constructor(options: CalmGateOptions = {}) {
    this.maxLagMs = options.maxLagMs ?? 2;
    this.maxWaitMs = options.maxWaitMs ?? 50;
  }

  /** Resolves when this step may start (see the class). */
  take(): Promise<void> {
    const step = new Promise<void>((resolve) => this.queue.push(resolve));
    if (this.queue.length === 1 && !this.timer) {
      // The wait of a step that finds the gate idle counts from now, not from the last release.
      this.lastRelease = performance.now();
      this.probe();
    }
    return step;
  }

  /** Steps waiting (for tests and metrics). */
  get waiting(): number {
    return this.queue.length;
  }

  private probe(): void {
    this.due = performance.now() + 1;
    this.timer = setTimeout(this.fire, 1);
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    const now = performance.now();
    if (now - this.due <= this.maxLagMs || now - this.lastRelease >= this.maxWaitMs) {
      this.lastRelease = now;
      this.queue.shift()?.();
    }
    if (this.queue.length > 0) this.probe();
  };
}
