/**
 * The eval results (`src/modules/eval/`): Wilson and Newcombe intervals
 * against published values, nearest-rank percentiles, per-model results (pass
 * rate, errors, cost per pass, reused cells), the arena rating of the judge
 * verdicts (rank intervals, ties, determinism), the diff against a baseline
 * (regressions, significance) and the JSON and CSV exports (RFC 4180
 * quoting, CSV injection). Pure functions: no database, no server.
 */
import { fitArena } from '../src/modules/leaderboard/arena-stats';
import { percentiles } from '../src/modules/leaderboard/resampling';
import { csvText } from '../src/modules/common/csv';
import { EVAL_CSV_COLUMNS, exportRunCsv, exportRunJson } from '../src/modules/eval/eval-export';
import { computeResults, diffRuns } from '../src/modules/eval/eval-results';
import type { CellRow, EvalRunData, EvalRunMeta, VerdictRow } from '../src/modules/eval/eval-results.types';
import { bootstrapDifference, nearestRank, newcombeDifference, wilson } from '../src/modules/eval/eval-stats';

function cell(over: Partial<CellRow> = {}): CellRow {
  return {
    itemId: 'i0',
    position: 0,
    model: 'a',
    repeat: 0,
    status: 'COMPLETED',
    passed: true,
    assertionResults: [],
    latencyMs: 100,
    ttftMs: 10,
    inputTokens: 10,
    outputTokens: 20,
    costUsd: 0.01,
    reused: false,
    error: null,
    content: 'answer',
    prompt: 'prompt',
    ...over,
  };
}

/** `n` completed cells of `model`, the first `passes` passing; item ids i0…. */
function cells(model: string, passes: number, n: number, over: Partial<CellRow> = {}): CellRow[] {
  return Array.from({ length: n }, (_, k) =>
    cell({ model, itemId: `i${k}`, position: k, passed: k < passes, prompt: `prompt ${k}`, ...over }),
  );
}

/** `n` verdicts of a vs b: `aWins` A, `bWins` B, the rest ties. */
function verdicts(a: string, b: string, aWins: number, bWins: number, n: number): VerdictRow[] {
  return Array.from({ length: n }, (_, k) => ({
    itemId: `i${k}`,
    repeat: 0,
    modelA: a,
    modelB: b,
    outcome: k < aWins ? 'A' : k < aWins + bWins ? 'B' : 'TIE',
  }));
}

/** A minimal RFC 4180 reader, to check the CSV round-trips. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  const endField = () => {
    row.push(field);
    field = '';
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') endField();
    else if (ch === '\r' && text[i + 1] === '\n') {
      endField();
      rows.push(row);
      row = [];
      i++;
    } else field += ch;
  }
  return rows;
}

describe('wilson', () => {
  it('matches the published 8/10 interval [0.490, 0.943]', () => {
    const [low, high] = wilson(8, 10);
    expect(low).toBeCloseTo(0.4902, 4);
    expect(high).toBeCloseTo(0.9433, 4);
  });

  it('answers [0, 1] for 0 of 0 (no information)', () => {
    expect(wilson(0, 0)).toEqual([0, 1]);
  });

  it('is exactly 1 above all-pass and 0 below none-pass, with the closed-form other bound n/(n + z²)', () => {
    const z2 = 1.959963984540054 ** 2;
    const [low, high] = wilson(10, 10);
    expect(high).toBe(1);
    expect(low).toBeCloseTo(10 / (10 + z2), 10);
    const [low0, high0] = wilson(0, 10);
    expect(low0).toBe(0);
    expect(high0).toBeCloseTo(z2 / (10 + z2), 10);
  });

  it('refuses more passes than trials', () => {
    expect(() => wilson(11, 10)).toThrow(RangeError);
  });
});

describe('newcombeDifference', () => {
  it('matches Newcombe (1998) method 10: 56/70 − 48/80 → [0.0524, 0.3339]', () => {
    const d = newcombeDifference(56, 70, 48, 80);
    expect(d.delta).toBeCloseTo(0.2, 10);
    expect(d.low).toBeCloseTo(0.0524, 4);
    expect(d.high).toBeCloseTo(0.3339, 4);
  });

  it('answers [−1, 1] when a side has no trials', () => {
    expect(newcombeDifference(0, 0, 5, 10)).toEqual({ delta: -0.5, low: -1, high: 1 });
  });
});

describe('nearestRank', () => {
  it('answers observed values: the textbook example 15, 20, 35, 40, 50', () => {
    const v = [50, 15, 40, 20, 35];
    expect(nearestRank(v, 25)).toBe(20);
    expect(nearestRank(v, 30)).toBe(20);
    expect(nearestRank(v, 40)).toBe(20);
    expect(nearestRank(v, 50)).toBe(35);
    expect(nearestRank(v, 100)).toBe(50);
    expect(nearestRank(v, 0)).toBe(15);
  });

  it('p50 and p95 of 1…20 are 10 and 19; null without values', () => {
    const v = Array.from({ length: 20 }, (_, i) => i + 1);
    expect(nearestRank(v, 50)).toBe(10);
    expect(nearestRank(v, 95)).toBe(19);
    expect(nearestRank([], 50)).toBeNull();
  });
});

describe('computeResults: per model', () => {
  const run = [
    ...cells('a', 8, 10, { latencyMs: null }).map((c, k) => ({ ...c, latencyMs: (k + 1) * 100, ttftMs: (k + 1) * 10 })),
    cell({ model: 'a', itemId: 'x1', position: 10, status: 'FAILED', passed: null, error: 'boom', costUsd: 0.005, latencyMs: 99999 }),
    cell({ model: 'a', itemId: 'x2', position: 11, status: 'CANCELLED', passed: null, costUsd: null }),
    ...cells('b', 0, 4, { costUsd: 0.02 }),
    cell({ model: 'b', itemId: 'x3', position: 12, reused: true, costUsd: 0.5, passed: true }),
  ];
  const { perModel, rating } = computeResults(['b', 'a', 'c'], run, []);
  const [b, a, c] = perModel;

  it('keeps the run order and answers every model, with or without cells', () => {
    expect(perModel.map((r) => r.model)).toEqual(['b', 'a', 'c']);
    expect(rating).toBeNull();
  });

  it('counts cells, errors and the pass rate over completed, scored cells only', () => {
    expect(a).toMatchObject({ cells: 12, completed: 10, errors: 1, scored: 10, passes: 8, passRate: 0.8 });
    expect(a.passRateLow).toBeCloseTo(0.4902, 4);
    expect(a.passRateHigh).toBeCloseTo(0.9433, 4);
  });

  it('takes nearest-rank latency and TTFT percentiles over completed cells (the FAILED one left out)', () => {
    expect(a.latencyP50Ms).toBe(500);
    expect(a.latencyP95Ms).toBe(1000);
    expect(a.ttftP50Ms).toBe(50);
  });

  it('sums the spend (FAILED cells included) and divides by the passes', () => {
    expect(a.costUsd).toBeCloseTo(10 * 0.01 + 0.005, 12);
    expect(a.costPerPassUsd).toBeCloseTo((10 * 0.01 + 0.005) / 8, 12);
    expect(a.inputTokens).toBe(100);
    expect(a.outputTokens).toBe(200);
  });

  it('counts a reused cell as free, and its answer as a pass', () => {
    expect(b).toMatchObject({ cells: 5, passes: 1, reusedCells: 1 });
    expect(b.costUsd).toBeCloseTo(4 * 0.02, 12);
    expect(b.costPerPassUsd).toBeCloseTo(0.08, 12);
  });

  it('answers a null cost per pass with no pass, and the [0, 1] interval with no cell', () => {
    const none = computeResults(['z'], cells('z', 0, 3), []).perModel[0];
    expect(none.costPerPassUsd).toBeNull();
    expect(none.passRate).toBe(0);
    expect(c).toMatchObject({ cells: 0, passRate: 0, passRateLow: 0, passRateHigh: 1, latencyP50Ms: null, costPerPassUsd: null });
    expect(c.rating).toBeNull();
  });

  it('counts each assertion kind over completed cells, kinds sorted', () => {
    const withAssertions = [
      cell({
        assertionResults: [
          { kind: 'REGEX', passed: true, reason: null },
          { kind: 'CONTAINS', passed: false, reason: 'no "x"' },
        ],
      }),
      cell({ itemId: 'i1', assertionResults: [{ kind: 'CONTAINS', passed: true, reason: null }] }),
      cell({ itemId: 'i2', status: 'FAILED', passed: null, assertionResults: [{ kind: 'CONTAINS', passed: false, reason: null }] }),
    ];
    expect(computeResults(['a'], withAssertions, []).perModel[0].assertions).toEqual([
      { kind: 'CONTAINS', passed: 1, total: 2 },
      { kind: 'REGEX', passed: 1, total: 1 },
    ]);
  });
});

describe('computeResults: the judge rating', () => {
  const models = ['weak1', 'strong', 'weak2'];
  const judged = [
    ...verdicts('strong', 'weak1', 45, 5, 50),
    ...verdicts('weak2', 'strong', 5, 45, 50),
    ...verdicts('weak1', 'weak2', 12, 13, 50),
  ];

  it('ranks a clearly better model 1 with a rank interval of [1, 1]; the two others share rank 2, interval [2, 3]', () => {
    const { perModel, rating } = computeResults(models, [], judged, { bootstrapSamples: 300 });
    const by = Object.fromEntries(perModel.map((r) => [r.model, r]));
    expect(by.strong).toMatchObject({ rank: 1, rankLow: 1, rankHigh: 1, battles: 100, wins: 90, losses: 10 });
    for (const weak of [by.weak1, by.weak2]) expect(weak).toMatchObject({ rank: 2, rankLow: 2, rankHigh: 3 });
    expect(by.strong.rating!).toBeGreaterThan(by.weak1.rating! + 200);
    expect(by.strong.ratingLow!).toBeLessThan(by.strong.rating!);
    expect(by.strong.ratingHigh!).toBeGreaterThan(by.strong.rating!);
    expect(rating).toMatchObject({ battles: 150, bootstrapSamples: 300, seed: 1 });
    // The ratings are centred: their mean is the base, 1000.
    expect((by.strong.rating! + by.weak1.rating! + by.weak2.rating!) / 3).toBeCloseTo(1000, 6);
  });

  it('counts a tie as half a win: all ties rate everyone 1000, one shared rank', () => {
    const { perModel } = computeResults(['a', 'b'], [], verdicts('a', 'b', 0, 0, 20), { bootstrapSamples: 100 });
    for (const r of perModel) expect(r).toMatchObject({ rank: 1, rankLow: 1, rankHigh: 2, ties: 20 });
    for (const r of perModel) expect(r.rating!).toBeCloseTo(1000, 6);
    // 10 wins each way rate the same as 20 ties.
    const split = computeResults(['a', 'b'], [], verdicts('a', 'b', 10, 10, 20), { bootstrapSamples: 0 }).perModel;
    expect(split[0].rating!).toBeCloseTo(1000, 6);
  });

  it('uses the arena fit as is: the same ratings as fitArena on the aggregated verdicts', () => {
    const fit = fitArena(
      {
        features: [],
        rows: [
          { a: 'strong', b: 'weak1', outcome: 'A', count: 45 },
          { a: 'strong', b: 'weak1', outcome: 'B', count: 5 },
          { a: 'weak2', b: 'strong', outcome: 'A', count: 5 },
          { a: 'weak2', b: 'strong', outcome: 'B', count: 45 },
          { a: 'weak1', b: 'weak2', outcome: 'A', count: 12 },
          { a: 'weak1', b: 'weak2', outcome: 'B', count: 13 },
          { a: 'weak1', b: 'weak2', outcome: 'TIE', count: 25 },
        ],
      },
      { bootstrapSamples: 200 },
    );
    const ours = computeResults(models, [], judged, { bootstrapSamples: 200 }).perModel;
    for (const r of fit.ratings) {
      const mine = ours.find((o) => o.model === r.model)!;
      expect(mine.rating).toBeCloseTo(r.rating, 9);
      expect(mine.ratingLow).toBeCloseTo(r.bootstrapLow, 9);
      expect(mine.ratingHigh).toBeCloseTo(r.bootstrapHigh, 9);
    }
  });

  it('is deterministic for a seed, and the seed matters', () => {
    const one = computeResults(models, [], judged, { bootstrapSamples: 200, seed: 7 });
    const again = computeResults(models, [], judged, { bootstrapSamples: 200, seed: 7 });
    const other = computeResults(models, [], judged, { bootstrapSamples: 200, seed: 8 });
    expect(again).toEqual(one);
    expect(other.perModel[1].ratingLow).not.toBe(one.perModel[1].ratingLow);
  });

  it('keeps the bootstrap draws, whose percentiles are the interval', () => {
    const { perModel, rating } = computeResults(models, [], judged, { bootstrapSamples: 200 });
    expect(rating!.samples.strong).toHaveLength(200);
    const [low, high] = percentiles(Float64Array.from(rating!.samples.strong));
    expect(perModel[1].ratingLow).toBeCloseTo(low, 9);
    expect(perModel[1].ratingHigh).toBeCloseTo(high, 9);
  });

  it('rates nobody without verdicts, with only null outcomes, or with verdicts naming models outside the run', () => {
    expect(computeResults(models, [], []).rating).toBeNull();
    const nulls = verdicts('strong', 'weak1', 0, 0, 5).map((v) => ({ ...v, outcome: null }));
    expect(computeResults(models, [], nulls).perModel.every((r) => r.rating === null)).toBe(true);
    expect(computeResults(['strong'], [], judged).rating).toBeNull();
  });

  it('leaves a model with no verdict unrated while the others are rated', () => {
    const { perModel } = computeResults(['a', 'b', 'c'], [], verdicts('a', 'b', 5, 5, 10), { bootstrapSamples: 50 });
    expect(perModel.map((r) => r.rating === null)).toEqual([false, false, true]);
    expect(perModel[2]).toMatchObject({ rank: null, rankLow: null, rankHigh: null, battles: 0 });
  });
});

describe('diffRuns', () => {
  function runOf(models: string[], runCells: CellRow[], judged: VerdictRow[] = []): EvalRunData {
    return { models, cells: runCells, results: computeResults(models, runCells, judged, { bootstrapSamples: 300 }) };
  }

  it('lists pass → fail and fail → pass per item and repeat, for models in both runs only', () => {
    const baseline = runOf(['a', 'gone'], [...cells('a', 3, 4), ...cells('gone', 4, 4)]);
    // a: i0 fails now (regression), i3 passes now (improvement); i1 the prompt was edited; `new` only here.
    const current = runOf(
      ['new', 'a'],
      [
        cell({ model: 'a', itemId: 'i0', position: 0, passed: false, prompt: 'prompt 0' }),
        cell({ model: 'a', itemId: 'i1', position: 1, passed: false, prompt: 'edited' }),
        cell({ model: 'a', itemId: 'i2', position: 2, passed: true, prompt: 'prompt 2' }),
        cell({ model: 'a', itemId: 'i3', position: 3, passed: true, prompt: 'prompt 3' }),
        cell({ model: 'a', itemId: 'i3', position: 3, repeat: 1, passed: false, prompt: 'prompt 3' }),
        ...cells('new', 0, 4),
      ],
    );
    const d = diffRuns(current, baseline);
    expect(d.regressions).toBe(1);
    expect(d.improvements).toBe(1);
    expect(d.regressed).toEqual([{ model: 'a', itemId: 'i0', position: 0, repeat: 0 }]);
    expect(d.improved).toEqual([{ model: 'a', itemId: 'i3', position: 3, repeat: 0 }]);
    expect(d.promptChanged).toBe(1);
    expect(d.perModel.map((m) => m.model)).toEqual(['a']);
    expect(d.perModel[0]).toMatchObject({ matched: 3, regressions: 1, improvements: 1, ratingDelta: null, ratingSignificant: null });
  });

  it('does not count a FAILED cell as a regression', () => {
    const baseline = runOf(['a'], cells('a', 4, 4));
    const current = runOf(
      ['a'],
      cells('a', 4, 4).map((c, k) => (k === 0 ? { ...c, status: 'FAILED' as const, passed: null } : c)),
    );
    expect(diffRuns(current, baseline).regressions).toBe(0);
  });

  it('calls a big pass-rate change significant and a tiny one not', () => {
    const big = diffRuns(runOf(['a'], cells('a', 80, 100)), runOf(['a'], cells('a', 20, 100))).perModel[0];
    expect(big.passRateDelta).toBeCloseTo(0.6, 10);
    expect(big.passRateSignificant).toBe(true);
    expect(big.passRateDeltaLow).toBeGreaterThan(0);
    const tiny = diffRuns(runOf(['a'], cells('a', 52, 100)), runOf(['a'], cells('a', 50, 100))).perModel[0];
    expect(tiny.passRateDelta).toBeCloseTo(0.02, 10);
    expect(tiny.passRateSignificant).toBe(false);
    const drop = diffRuns(runOf(['a'], cells('a', 20, 100)), runOf(['a'], cells('a', 80, 100))).perModel[0];
    expect(drop.passRateSignificant).toBe(true);
    expect(drop.passRateDeltaHigh).toBeLessThan(0);
  });

  it('is not significant when a run has nothing scored', () => {
    const d = diffRuns(runOf(['a'], cells('a', 10, 10)), runOf(['a'], [])).perModel[0];
    expect(d.passRateSignificant).toBe(false);
  });

  it('calls a big rating change significant and no change not', () => {
    const models = ['a', 'b', 'c'];
    const even = [...verdicts('a', 'b', 20, 20, 50), ...verdicts('a', 'c', 20, 20, 50), ...verdicts('b', 'c', 20, 20, 50)];
    const aWins = [...verdicts('a', 'b', 45, 3, 50), ...verdicts('a', 'c', 45, 3, 50), ...verdicts('b', 'c', 20, 20, 50)];
    const baseline = runOf(models, [], even);
    const moved = diffRuns(runOf(models, [], aWins), baseline).perModel.find((m) => m.model === 'a')!;
    expect(moved.ratingDelta!).toBeGreaterThan(200);
    expect(moved.ratingSignificant).toBe(true);
    expect(moved.ratingDeltaLow!).toBeGreaterThan(0);
    const same = diffRuns(runOf(models, [], even), baseline).perModel.find((m) => m.model === 'a')!;
    expect(same.ratingDelta).toBeCloseTo(0, 9);
    expect(same.ratingSignificant).toBe(false);
  });

  it('falls back to the normal approximation without bootstrap draws', () => {
    const models = ['a', 'b'];
    const r = (judged: VerdictRow[]): EvalRunData => ({
      models,
      cells: [],
      results: computeResults(models, [], judged, { bootstrapSamples: 0 }),
    });
    const d = diffRuns(r(verdicts('a', 'b', 45, 5, 50)), r(verdicts('a', 'b', 5, 45, 50))).perModel[0];
    expect(d.ratingSignificant).toBe(true);
    const n = diffRuns(r(verdicts('a', 'b', 26, 24, 50)), r(verdicts('a', 'b', 24, 26, 50))).perModel[0];
    expect(n.ratingSignificant).toBe(false);
  });
});

describe('bootstrapDifference', () => {
  it('pairs the draws through a permutation: identical draw lists give an interval around 0, not [0, 0]', () => {
    const draws = Array.from({ length: 400 }, (_, i) => 1000 + ((i * 37) % 101) - 50);
    const [low, high] = bootstrapDifference(draws, draws)!;
    expect(low).toBeLessThan(-50);
    expect(high).toBeGreaterThan(50);
    expect(bootstrapDifference([], draws)).toBeNull();
  });
});

describe('export', () => {
  const meta: EvalRunMeta = {
    id: 'run-1',
    status: 'COMPLETED',
    promptSetId: 'set-1',
    promptSetName: 'Set',
    models: ['b', 'a'],
    judgeModel: null,
    repeats: 1,
    createdAt: new Date('2026-12-07T10:00:00Z'),
    finishedAt: '2026-12-07T10:05:00.000Z',
  };
  const evil = cell({
    model: 'a',
    itemId: 'i1',
    position: 1,
    passed: false,
    prompt: '=HYPERLINK("http://x","click")',
    content: 'Hello, "world"\r\nline two',
    error: '-2+3',
    assertionResults: [
      { kind: 'CONTAINS', passed: false, reason: 'missing "x", y' },
      { kind: 'JSON_VALID', passed: true, reason: null },
    ],
  });
  const rows = [
    evil,
    cell({ model: 'a', position: 0, content: '@SUM(A1)', costUsd: 0.25, reused: true }),
    cell({ model: 'b', position: 0, content: '\tTAB', latencyMs: null }),
    cell({ model: 'b', itemId: 'i1', position: 1, content: '+1', prompt: 'plain' }),
  ];
  const results = computeResults(meta.models, rows, []);

  it('csvText quotes commas, quotes and line breaks and defuses formulas', () => {
    expect(csvText('plain')).toBe('plain');
    expect(csvText('a,b')).toBe('"a,b"');
    expect(csvText('say "hi"')).toBe('"say ""hi"""');
    expect(csvText('two\nlines')).toBe('"two\nlines"');
    expect(csvText('=1+1')).toBe("'=1+1");
    expect(csvText('+1')).toBe("'+1");
    expect(csvText('-1')).toBe("'-1");
    expect(csvText('@x')).toBe("'@x");
    expect(csvText('\tx')).toBe("'\tx");
    expect(csvText('\rx')).toBe(`"'\rx"`);
    expect(csvText('=a,"b"')).toBe(`"'=a,""b"""`);
    expect(csvText('a=b')).toBe('a=b');
    expect(csvText(null)).toBe('');
  });

  it('writes one CRLF row per cell under the documented header, ordered by position then run model order', () => {
    const csv = exportRunCsv(meta, rows);
    expect(csv.endsWith('\r\n')).toBe(true);
    const parsed = parseCsv(csv);
    expect(parsed[0]).toEqual([...EVAL_CSV_COLUMNS]);
    expect(parsed).toHaveLength(5);
    for (const r of parsed) expect(r).toHaveLength(EVAL_CSV_COLUMNS.length);
    const col = (r: string[], name: (typeof EVAL_CSV_COLUMNS)[number]) => r[EVAL_CSV_COLUMNS.indexOf(name)];
    expect(parsed.slice(1).map((r) => [col(r, 'position'), col(r, 'model')])).toEqual([
      ['0', 'b'],
      ['0', 'a'],
      ['1', 'b'],
      ['1', 'a'],
    ]);
    const [, b0, a0, b1, a1] = parsed;
    expect(col(a1, 'prompt')).toBe(`'=HYPERLINK("http://x","click")`);
    expect(col(a1, 'content')).toBe('Hello, "world"\r\nline two');
    expect(col(a1, 'error')).toBe("'-2+3");
    expect(col(a1, 'failed_assertions')).toBe('CONTAINS: missing "x", y');
    expect([col(a1, 'passed'), col(a1, 'assertions_passed'), col(a1, 'assertions_total')]).toEqual(['false', '1', '2']);
    expect(col(a0, 'content')).toBe("'@SUM(A1)");
    expect([col(a0, 'cost_usd'), col(a0, 'reused')]).toEqual(['0', 'true']);
    expect(col(b0, 'content')).toBe("'\tTAB");
    expect(col(b0, 'latency_ms')).toBe('');
    expect(col(b1, 'content')).toBe("'+1");
    expect(col(b1, 'run_id')).toBe('run-1');
  });

  it('writes a stable JSON document: meta, results, cells with assertions; no bootstrap draws', () => {
    const judged = computeResults(meta.models, rows, verdicts('a', 'b', 3, 1, 4), { bootstrapSamples: 20 });
    const text = exportRunJson(meta, rows, judged);
    expect(exportRunJson(meta, [...rows].reverse(), judged)).toBe(text);
    const doc = JSON.parse(text);
    expect(Object.keys(doc)).toEqual(['format', 'version', 'run', 'results', 'rating', 'diff', 'cells']);
    expect(doc).toMatchObject({
      format: 'llmselect.eval-run',
      version: 1,
      diff: null,
      rating: { battles: 4, bootstrapSamples: 20, seed: 1 },
    });
    expect(doc.rating.samples).toBeUndefined();
    expect(doc.run).toEqual({
      id: 'run-1',
      status: 'COMPLETED',
      promptSetId: 'set-1',
      promptSetName: 'Set',
      models: ['b', 'a'],
      judgeModel: null,
      repeats: 1,
      temperature: null,
      maxOutputTokens: null,
      baselineRunId: null,
      createdAt: '2026-12-07T10:00:00.000Z',
      startedAt: null,
      finishedAt: '2026-12-07T10:05:00.000Z',
    });
    expect(doc.results.map((r: { model: string }) => r.model)).toEqual(['b', 'a']);
    expect(doc.results[1]).toMatchObject({ model: 'a', cells: 2, passes: 1, costUsd: 0.01, costPerPassUsd: 0.01, reusedCells: 1 });
    expect(typeof doc.results[1].rating).toBe('number');
    expect(doc.cells).toHaveLength(4);
    expect(doc.cells[3]).toEqual({
      itemId: 'i1',
      position: 1,
      model: 'a',
      repeat: 0,
      status: 'COMPLETED',
      passed: false,
      assertions: [
        { kind: 'CONTAINS', passed: false, reason: 'missing "x", y' },
        { kind: 'JSON_VALID', passed: true, reason: null },
      ],
      prompt: '=HYPERLINK("http://x","click")',
      content: 'Hello, "world"\r\nline two',
      error: '-2+3',
      latencyMs: 100,
      ttftMs: 10,
      inputTokens: 10,
      outputTokens: 20,
      costUsd: 0.01,
      reused: false,
    });
    expect(doc.cells[1]).toMatchObject({ model: 'a', position: 0, costUsd: 0, reused: true });
  });

  it('includes the diff when given one', () => {
    const d = diffRuns({ models: meta.models, cells: rows, results }, { models: meta.models, cells: rows, results });
    const doc = JSON.parse(exportRunJson(meta, rows, results, d));
    expect(doc.diff).toMatchObject({ regressions: 0, improvements: 0, promptChanged: 0 });
    expect(doc.diff.perModel.map((m: { model: string }) => m.model)).toEqual(['b', 'a']);
  });
});
