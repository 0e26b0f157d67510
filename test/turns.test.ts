import { CalmGate, TurnGate } from '../src/turns';

/** A chunk of synchronous work, like a start's code before its first await. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

describe('TurnGate', () => {
  it('runs waiting steps one after another while the turn budget lasts, the rest in later turns, in order', async () => {
    const gate = new TurnGate(3);
    let turn = 0;
    let counting = true;
    const tick = () => {
      turn++;
      if (counting) setImmediate(tick);
    };
    setImmediate(tick);
    const seen: Array<{ step: number; turn: number }> = [];
    const steps = [0, 1, 2, 3, 4, 5].map((step) =>
      gate.take().then(() => {
        seen.push({ step, turn });
        busy(2);
      }),
    );
    try {
      expect(gate.waiting).toBe(6);
      await Promise.all(steps);
    } finally {
      // The counter reschedules itself until stopped: a failed expectation must not leave Jest spinning.
      counting = false;
    }
    expect(seen.map((s) => s.step)).toEqual([0, 1, 2, 3, 4, 5]);
    const perTurn = new Map<number, number>();
    for (const s of seen) perTurn.set(s.turn, (perTurn.get(s.turn) ?? 0) + 1);
    // 2 ms steps in a 3 ms budget: at most two a turn (the second starts at 2 ms), so at least three turns.
    expect(Math.max(...perTurn.values())).toBeLessThanOrEqual(2);
    expect(perTurn.size).toBeGreaterThanOrEqual(3);
    expect(seen[0]!.turn).toBe(0);
    expect(gate.waiting).toBe(0);
  });

  it('lets I/O that arrived meanwhile run between the steps of a burst', async () => {
    const gate = new TurnGate(3);
    const order: string[] = [];
    // Due while the first steps run: without the gate it would wait for the whole burst.
    const io = new Promise<void>((resolve) =>
      setTimeout(() => {
        order.push('io');
        resolve();
      }, 1),
    );
    const burst = [0, 1, 2, 3, 4].map((step) =>
      gate.take().then(() => {
        order.push(`step ${step}`);
        busy(2);
      }),
    );
    await Promise.all([io, ...burst]);
    expect(order.indexOf('io')).toBeLessThan(order.indexOf('step 4'));
  });

  it('lets a lone step go in the turn it asked in', async () => {
    const gate = new TurnGate(3);
    await Promise.all([gate.take(), gate.take()]);
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setImmediate(resolve));
    const order: string[] = [];
    setImmediate(() => order.push('next turn'));
    await gate.take();
    order.push('step');
    expect(order).toEqual(['step']);
  });
});

describe('CalmGate', () => {
  /** Keeps the loop behind: every turn runs `ms` of synchronous work until stopped. */
  function lagLoop(ms: number): { turns: () => number; stop: () => void } {
    let running = true;
    let turns = 0;
    const turn = () => {
      if (!running) return;
      turns++;
      busy(ms);
      setImmediate(turn);
    };
    setImmediate(turn);
    return { turns: () => turns, stop: () => (running = false) };
  }

  it('lets waiting steps go one at a time, in order, while the loop keeps up', async () => {
    const gate = new CalmGate({ maxLagMs: 5, maxWaitMs: 1e9 });
    const seen: number[] = [];
    await Promise.all([0, 1, 2, 3, 4].map((step) => gate.take().then(() => seen.push(step))));
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    expect(gate.waiting).toBe(0);
  });

  it('holds steps while the loop is behind and lets them go once it keeps up again', async () => {
    const gate = new CalmGate({ maxLagMs: 5, maxWaitMs: 1e9 });
    const lag = lagLoop(20);
    let released = false;
    const step = gate.take().then(() => {
      released = true;
    });
    try {
      // Twenty turns of 20 ms each: every probe in between fired late, so nothing went.
      while (lag.turns() < 20) await new Promise<void>((resolve) => setImmediate(resolve));
      expect(released).toBe(false);
    } finally {
      // Stopped whatever happened: a failed expectation must not leave Jest spinning.
      lag.stop();
    }
    await step;
    expect(released).toBe(true);
  });

  it('still lets one step go every maxWaitMs when the loop stays behind', async () => {
    const gate = new CalmGate({ maxLagMs: 5, maxWaitMs: 30 });
    const lag = lagLoop(20);
    try {
      const seen: number[] = [];
      await Promise.all([0, 1, 2].map((step) => gate.take().then(() => seen.push(step))));
      expect(seen).toEqual([0, 1, 2]);
    } finally {
      lag.stop();
    }
  });
});
