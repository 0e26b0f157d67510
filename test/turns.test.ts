import { TurnGate } from '../src/turns';

/** Counts turns of the event loop: one tick per check phase. */
function turnCounter(): { now: () => number; stop: () => void } {
  let turns = 0;
  let stopped = false;
  const tick = () => {
    turns++;
    if (!stopped) setImmediate(tick);
  };
  setImmediate(tick);
  return { now: () => turns, stop: () => (stopped = true) };
}

describe('TurnGate', () => {
  it('lets the first step of a turn go at once and each later one in a turn of its own, in order', async () => {
    const gate = new TurnGate();
    const turns = turnCounter();
    const seen: Array<{ step: number; turn: number }> = [];
    const steps = [0, 1, 2, 3].map((step) => gate.take().then(() => seen.push({ step, turn: turns.now() })));
    try {
      expect(gate.waiting).toBe(3);
      await Promise.all(steps);
    } finally {
      // The counter reschedules itself until stopped: a failed expectation must not leave Jest spinning.
      turns.stop();
    }
    expect(seen.map((s) => s.step)).toEqual([0, 1, 2, 3]);
    // Step 0 ran in the turn it asked in; no two steps shared a turn.
    expect(seen[0]!.turn).toBe(0);
    expect(new Set(seen.map((s) => s.turn)).size).toBe(4);
    expect(gate.waiting).toBe(0);
  });

  it('lets I/O that arrived meanwhile run between the steps of a burst', async () => {
    const gate = new TurnGate();
    const order: string[] = [];
    // Each step is a chunk of synchronous work, like a start's code before its first await.
    const busy = (ms: number) => {
      const end = performance.now() + ms;
      while (performance.now() < end);
    };
    // Due while the first step runs: without turns it would wait for the whole burst.
    const io = new Promise<void>((resolve) =>
      setTimeout(() => {
        order.push('io');
        resolve();
      }, 1),
    );
    const burst = [0, 1, 2].map((step) =>
      gate.take().then(() => {
        order.push(`step ${step}`);
        busy(3);
      }),
    );
    await Promise.all([io, ...burst]);
    expect(order.indexOf('io')).toBeLessThan(order.indexOf('step 2'));
  });

  it('is free again once its queue is empty: a later lone step goes at once', async () => {
    const gate = new TurnGate();
    await Promise.all([gate.take(), gate.take()]);
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setImmediate(resolve));
    let went = false;
    void gate.take().then(() => (went = true));
    await Promise.resolve();
    expect(went).toBe(true);
  });
});
