/**
 * Battle counts as columns of typed arrays, to hand them to the fit worker by
 * transferring buffers instead of cloning one object per cell (at 1M votes
 * with style control: 578,776 objects, seconds of structured clone on the
 * main loop).
 */
import type { BattleCounts, BattleOutcome } from './arena.types';

export interface PackedCounts {
  features: string[];
  models: string[];
  a: Int32Array;
  b: Int32Array;
  /** 0: A, 1: B, 2: TIE. */
  outcome: Uint8Array;
  /** rows × features (0 where a row has no style values). */
  x: Float64Array;
  count: Float64Array;
}

const OUTCOMES: readonly BattleOutcome[] = ['A', 'B', 'TIE'];

export function packCounts(counts: BattleCounts): PackedCounts {
  const F = counts.features.length;
  const R = counts.rows.length;
  const index = new Map<string, number>();
  const models: string[] = [];
  const id = (m: string) => {
    let i = index.get(m);
    if (i === undefined) index.set(m, (i = models.push(m) - 1));
    return i;
  };
  const packed: PackedCounts = {
    features: counts.features,
    models,
    a: new Int32Array(R),
    b: new Int32Array(R),
    outcome: new Uint8Array(R),
    x: new Float64Array(R * F),
    count: new Float64Array(R),
  };
  counts.rows.forEach((r, k) => {
    packed.a[k] = id(r.a);
    packed.b[k] = id(r.b);
    const o = OUTCOMES.indexOf(r.outcome);
    // An unknown outcome travels as itself (255) and is refused by the fit like any malformed row.
    packed.outcome[k] = o < 0 ? 255 : o;
    packed.count[k] = r.count;
    if (r.x) for (let f = 0; f < F && f < r.x.length; f++) packed.x[k * F + f] = r.x[f]!;
  });
  return packed;
}

export function unpackCounts(p: PackedCounts): BattleCounts {
  const F = p.features.length;
  const rows = Array.from(p.count, (count, k) => ({
    a: p.models[p.a[k]!]!,
    b: p.models[p.b[k]!]!,
    outcome: (OUTCOMES[p.outcome[k]!] ?? 'UNKNOWN') as BattleOutcome,
    x: F === 0 ? [] : Array.from(p.x.subarray(k * F, (k + 1) * F)),
    count,
  }));
  return { features: p.features, rows };
}

export function transferablesOf(p: PackedCounts): ArrayBuffer[] {
  return [p.a.buffer, p.b.buffer, p.outcome.buffer, p.x.buffer, p.count.buffer] as ArrayBuffer[];
}
