import { bradleyTerry, invertMatrix, votesToBattles, type PairBattle, type Rating } from './helpers/bradley-terry';

/** Rating points per natural-log unit of strength: 400 / ln 10 ≈ 173.7178. */
const POINTS_PER_NAT = 400 / Math.LN10;

function repeat(battle: PairBattle, times: number): PairBattle[] {
  return Array.from({ length: times }, () => ({ ...battle }));
}

function byModel(ratings: Rating[]): Record<string, Rating> {
  return Object.fromEntries(ratings.map((r) => [r.model, r]));
}

function halfWidth(r: Rating): number {
  return (r.ratingHigh - r.ratingLow) / 2;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

describe('votesToBattles', () => {
  it('WINNER with 3 models: the winner beats each of the 2 others', () => {
    const battles = votesToBattles([{ models: ['a', 'b', 'c'], outcome: 'WINNER', winner: 'b' }]);
    expect(battles).toEqual([
      { a: 'b', b: 'a', scoreA: 1 },
      { a: 'b', b: 'c', scoreA: 1 },
    ]);
  });

  it('TIE and ALL_BAD with 3 models: a tie for each of the 3 pairs', () => {
    const expected = [
      { a: 'a', b: 'b', scoreA: 0.5 },
      { a: 'a', b: 'c', scoreA: 0.5 },
      { a: 'b', b: 'c', scoreA: 0.5 },
    ];
    expect(votesToBattles([{ models: ['a', 'b', 'c'], outcome: 'TIE' }])).toEqual(expected);
    expect(votesToBattles([{ models: ['a', 'b', 'c'], outcome: 'ALL_BAD', winner: null }])).toEqual(expected);
  });

  it('concatenates votes in order; a one-model vote yields nothing', () => {
    const battles = votesToBattles([
      { models: ['x', 'y'], outcome: 'WINNER', winner: 'y' },
      { models: ['x'], outcome: 'TIE' },
      { models: ['x', 'y'], outcome: 'TIE' },
    ]);
    expect(battles).toEqual([
      { a: 'y', b: 'x', scoreA: 1 },
      { a: 'x', b: 'y', scoreA: 0.5 },
    ]);
  });

  it('rejects a WINNER vote without a valid winner, and duplicate models', () => {
    expect(() => votesToBattles([{ models: ['a', 'b'], outcome: 'WINNER' }])).toThrow(RangeError);
    expect(() => votesToBattles([{ models: ['a', 'b'], outcome: 'WINNER', winner: 'z' }])).toThrow(RangeError);
    expect(() => votesToBattles([{ models: ['a', 'a'], outcome: 'TIE' }])).toThrow(RangeError);
  });
});

describe('bradleyTerry', () => {
  /**
   * Hand computation, A beats B 3 times, B beats A once, pure MLE (prior 0):
   *   MLE: p_A/p_B = 3/1, so d = θ_A − θ_B = ln 3 and, centred, θ_A = −θ_B = ln(3)/2.
   *   rating_A = 1000 + 400·log10(√3) = 1000 + 200·log10(3) = 1095.4243, rating_B = 904.5757,
   *   difference 400·log10(3) = 190.8485.
   *   Fisher information of d over n = 4 games at p = 3/4: n·p·(1−p) = 0.75,
   *   so var(d) = 4/3 and se(d) = 1/√0.75 = 1.1547.
   *   Each centred log-strength is ±d/2, so se(θ_A − θ̄) = se(d)/2 = √(1/3) = 0.57735.
   *   95% half-width in rating: 1.96 · 0.57735 · 400/ln 10 = 196.580.
   */
  const threeToOne: PairBattle[] = [...repeat({ a: 'A', b: 'B', scoreA: 1 }, 3), { a: 'A', b: 'B', scoreA: 0 }];

  it('two models, 3–1, pure MLE: ratings 1095.42 / 904.58 (hand computed)', () => {
    const [first, second] = bradleyTerry(threeToOne, { prior: 0 });
    expect(first.model).toBe('A');
    expect(second.model).toBe('B');
    expect(first.rating).toBeCloseTo(1095.4243, 3);
    expect(second.rating).toBeCloseTo(904.5757, 3);
    expect(first.rating - second.rating).toBeCloseTo(400 * Math.log10(3), 6);
  });

  it('two models, 3–1, pure MLE: 95% interval from the Fisher information (hand computed)', () => {
    const { A, B } = byModel(bradleyTerry(threeToOne, { prior: 0 }));
    const seDifference = 1 / Math.sqrt(4 * 0.75 * 0.25);
    expect(seDifference).toBeCloseTo(1.1547, 4);
    const expectedHalfWidth = 1.96 * (seDifference / 2) * POINTS_PER_NAT;
    expect(expectedHalfWidth).toBeCloseTo(196.58, 3);
    expect(halfWidth(A)).toBeCloseTo(expectedHalfWidth, 6);
    expect(halfWidth(B)).toBeCloseTo(expectedHalfWidth, 6);
    expect(A.ratingLow).toBeCloseTo(1095.4243 - 196.5802, 3);
    expect(A.ratingHigh).toBeCloseTo(1095.4243 + 196.5802, 3);
  });

  it('counts battles, wins, losses, ties and winRate = (wins + ties/2) / battles', () => {
    const { A, B } = byModel(bradleyTerry(threeToOne, { prior: 0 }));
    expect(A).toMatchObject({ battles: 4, wins: 3, losses: 1, ties: 0, winRate: 0.75 });
    expect(B).toMatchObject({ battles: 4, wins: 1, losses: 3, ties: 0, winRate: 0.25 });
  });

  /**
   * Hand computation, chain A >(3–1) B >(3–1) C, no A–C games, prior 0:
   *   the graph is a tree, so each pair is fitted alone: θ = (ln 3, 0, −ln 3), mean 0,
   *   ratings 1000 + 190.8485, 1000, 1000 − 190.8485.
   *   d1 = θ_A − θ_B and d2 = θ_B − θ_C are independent with var 4/3 each.
   *   θ_A − θ̄ = (2·d1 + d2)/3 → var = (4 + 1)/9 · 4/3 = 20/27 → half-width 1.96·√(20/27)·173.718 = 293.044
   *   θ_B − θ̄ = (d2 − d1)/3   → var = (1 + 1)/9 · 4/3 = 8/27  → half-width 185.338
   */
  it('three-model chain, pure MLE: ratings and sum-to-zero intervals (hand computed)', () => {
    const chain = [...threeToOne, ...threeToOne.map((b) => ({ ...b, a: 'B', b: 'C' }))];
    const { A, B, C } = byModel(bradleyTerry(chain, { prior: 0 }));
    expect(A.rating).toBeCloseTo(1190.8485, 3);
    expect(B.rating).toBeCloseTo(1000, 6);
    expect(C.rating).toBeCloseTo(809.1515, 3);
    expect(halfWidth(A)).toBeCloseTo(1.96 * Math.sqrt(20 / 27) * POINTS_PER_NAT, 6);
    expect(halfWidth(A)).toBeCloseTo(293.044, 3);
    expect(halfWidth(B)).toBeCloseTo(185.338, 3);
    expect(halfWidth(C)).toBeCloseTo(halfWidth(A), 6);
  });

  /**
   * Cycle A > B > C > A, one game each: all strengths equal (1000).
   * Information = 0.25·(3I − J); on the sum-to-zero subspace its pseudo-inverse is (4/3)·P,
   * P = I − J/3, so var(θ_i − θ̄) = (4/3)(2/3) = 8/9 → half-width 1.96·√(8/9)·173.718 = 321.01.
   */
  it('three-model cycle is symmetric: all at 1000 with equal intervals (hand computed)', () => {
    const cycle: PairBattle[] = [
      { a: 'A', b: 'B', scoreA: 1 },
      { a: 'B', b: 'C', scoreA: 1 },
      { a: 'C', b: 'A', scoreA: 1 },
    ];
    const pure = bradleyTerry(cycle, { prior: 0 });
    expect(pure.map((r) => r.model)).toEqual(['A', 'B', 'C']);
    for (const r of pure) {
      expect(r.rating).toBeCloseTo(1000, 9);
      expect(halfWidth(r)).toBeCloseTo(1.96 * Math.sqrt(8 / 9) * POINTS_PER_NAT, 6);
      expect(halfWidth(r)).toBeCloseTo(321.01, 2);
    }
    for (const r of bradleyTerry(cycle)) expect(r.rating).toBeCloseTo(1000, 9);
  });

  it('ties count as half a win: 2 wins + 2 ties equals a 3–1 record', () => {
    const mixed: PairBattle[] = [...repeat({ a: 'A', b: 'B', scoreA: 1 }, 2), ...repeat({ a: 'B', b: 'A', scoreA: 0.5 }, 2)];
    const { A, B } = byModel(bradleyTerry(mixed, { prior: 0 }));
    const reference = byModel(bradleyTerry(threeToOne, { prior: 0 }));
    expect(A.rating).toBeCloseTo(reference.A.rating, 6);
    expect(halfWidth(A)).toBeCloseTo(halfWidth(reference.A), 6);
    expect(A).toMatchObject({ battles: 4, wins: 2, losses: 0, ties: 2, winRate: 0.75 });
    expect(B).toMatchObject({ battles: 4, wins: 0, losses: 2, ties: 2, winRate: 0.25 });
  });

  it('only ties: both models at 1000', () => {
    const ratings = bradleyTerry(repeat({ a: 'A', b: 'B', scoreA: 0.5 }, 4));
    for (const r of ratings) {
      expect(r.rating).toBeCloseTo(1000, 9);
      expect(r).toMatchObject({ ties: 4, winRate: 0.5 });
    }
  });

  it('a model with only wins stays finite with the default prior; prior 0 refuses', () => {
    const sweep = repeat({ a: 'A', b: 'B', scoreA: 1 }, 5);
    const { A, B } = byModel(bradleyTerry(sweep));
    for (const r of [A, B]) {
      for (const x of [r.rating, r.ratingLow, r.ratingHigh]) expect(Number.isFinite(x)).toBe(true);
    }
    expect(A.rating).toBeGreaterThan(B.rating);
    expect(A.ratingLow).toBeLessThan(A.rating);
    expect(() => bradleyTerry(sweep, { prior: 0 })).toThrow(/strongly connected/);
  });

  /**
   * With the default prior (one virtual tie per model vs a fixed average opponent θ = 0),
   * 3–1 is symmetric, θ_A = −θ_B = t, and the fit must satisfy A's score equation
   *   3 + 0.5 = 4·σ(2t) + 1·σ(t).
   */
  it('default prior shrinks toward 1000 and solves the penalised score equation', () => {
    const { A, B } = byModel(bradleyTerry(threeToOne));
    const t = (A.rating - 1000) / POINTS_PER_NAT;
    expect(4 * sigmoid(2 * t) + sigmoid(t)).toBeCloseTo(3.5, 8);
    expect(A.rating + B.rating).toBeCloseTo(2000, 6);
    expect(A.rating - B.rating).toBeGreaterThan(0);
    expect(A.rating - B.rating).toBeLessThan(400 * Math.log10(3));
  });

  it('honours scale and base', () => {
    const { A, B } = byModel(bradleyTerry(threeToOne, { prior: 0, scale: 100, base: 0 }));
    expect(A.rating).toBeCloseTo(50 * Math.log10(3), 6);
    expect(B.rating).toBeCloseTo(-50 * Math.log10(3), 6);
  });

  it('is deterministic and independent of battle order; sorted by rating desc', () => {
    const battles: PairBattle[] = [
      ...repeat({ a: 'gpt', b: 'claude', scoreA: 1 }, 3),
      ...repeat({ a: 'claude', b: 'gemini', scoreA: 1 }, 4),
      { a: 'gemini', b: 'gpt', scoreA: 0.5 },
      { a: 'mistral', b: 'gpt', scoreA: 0 },
      { a: 'mistral', b: 'gemini', scoreA: 1 },
    ];
    const forward = bradleyTerry(battles);
    const backward = bradleyTerry([...battles].reverse());
    expect(backward).toEqual(forward);
    const ratings = forward.map((r) => r.rating);
    expect(ratings).toEqual([...ratings].sort((x, y) => y - x));
    expect(ratings.reduce((s, x) => s + x, 0) / ratings.length).toBeCloseTo(1000, 6);
  });

  it('returns [] for no battles and rejects malformed battles or options', () => {
    expect(bradleyTerry([])).toEqual([]);
    expect(() => bradleyTerry([{ a: 'A', b: 'A', scoreA: 1 }])).toThrow(RangeError);
    expect(() => bradleyTerry([{ a: 'A', b: 'B', scoreA: 0.3 }])).toThrow(RangeError);
    expect(() => bradleyTerry(threeToOne, { prior: -1 })).toThrow(RangeError);
    expect(() => bradleyTerry(threeToOne, { scale: 0 })).toThrow(RangeError);
    expect(() => bradleyTerry(threeToOne, { iterations: 0 })).toThrow(RangeError);
  });
});

describe('invertMatrix', () => {
  it('inverts a small matrix and rejects a singular one', () => {
    const inv = invertMatrix([
      [0, 2],
      [1, 1],
    ]);
    expect(inv[0][0]).toBeCloseTo(-0.5, 12);
    expect(inv[0][1]).toBeCloseTo(1, 12);
    expect(inv[1][0]).toBeCloseTo(0.5, 12);
    expect(inv[1][1]).toBeCloseTo(0, 12);
    expect(() =>
      invertMatrix([
        [1, 1],
        [1, 1],
      ]),
    ).toThrow(/singular/);
  });
});
