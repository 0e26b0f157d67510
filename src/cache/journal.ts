/**
 * Invalidations (delete / incr / namespace flush) that could not reach Redis.
 * They are replayed before the breaker closes, so an outage cannot turn a
 * lost invalidation into a stale hit after recovery. Bounded: on overflow the
 * journal degrades to "flush every namespace this process has used".
 */
export type JournalOp = 'delete' | 'incr';

export interface JournalReplayer {
  delete(fullKey: string): Promise<void>;
  incr(fullKey: string): Promise<void>;
  flush(ns: string): Promise<void>;
}

export class InvalidationJournal {
  private seq = 0;
  private readonly keys = new Map<string, { op: JournalOp; seq: number }>();
  private readonly flushes = new Map<string, number>();
  private overflowSeq = 0;

  constructor(
    private readonly maxEntries: number,
    /** Namespaces to flush when the journal overflowed. */
    private readonly knownNamespaces: () => Iterable<string>,
  ) {}

  get size(): number {
    return this.keys.size + this.flushes.size + (this.overflowSeq ? 1 : 0);
  }

  record(op: JournalOp, fullKey: string): void {
    if (this.overflowSeq) return void (this.overflowSeq = ++this.seq);
    // An incr must survive a later delete of the same key and vice versa: keep incr.
    const prev = this.keys.get(fullKey);
    this.keys.set(fullKey, { op: prev?.op === 'incr' ? 'incr' : op, seq: ++this.seq });
    if (this.keys.size > this.maxEntries) this.overflow();
  }

  recordFlush(ns: string): void {
    if (this.overflowSeq) return void (this.overflowSeq = ++this.seq);
    this.flushes.set(ns, ++this.seq);
  }

  /** Replays everything recorded so far; entries recorded meanwhile are kept. Throws if any op fails. */
  async replay(r: JournalReplayer): Promise<void> {
    const upTo = this.seq;
    if (this.overflowSeq) {
      for (const ns of this.knownNamespaces()) await r.flush(ns);
      if (this.overflowSeq <= upTo) this.overflowSeq = 0;
      this.dropUpTo(upTo);
      return;
    }
    for (const ns of [...this.flushes.keys()]) await r.flush(ns);
    await Promise.all([...this.keys].map(([key, e]) => (e.op === 'incr' ? r.incr(key) : r.delete(key))));
    this.dropUpTo(upTo);
  }

  private dropUpTo(seq: number): void {
    for (const [key, e] of this.keys) if (e.seq <= seq) this.keys.delete(key);
    for (const [ns, s] of this.flushes) if (s <= seq) this.flushes.delete(ns);
  }

  private overflow(): void {
    this.keys.clear();
    this.flushes.clear();
    this.overflowSeq = ++this.seq;
  }
}
