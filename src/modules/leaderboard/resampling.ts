/** Seeded resampling for the bootstrap intervals (`arena-stats.ts`): binomial and multinomial draws, percentiles. */
import { xoroshiro128plus } from 'pure-rand';

type BinomialDraw = (n: number, p: number) => number;

/**
 * Seeded binomial draws by exact inversion on a xoroshiro128+ stream
 * (pure-rand; uniforms with 53 random bits): from 0 upwards when the mean is
 * below 10, otherwise outwards from the mode (alternately one step up, one
 * down), so the expected number of steps is O(1 + sd). (@stdlib's own
 * binomial sampler was tried first: its BTRD path is biased — mean 30.47 for
 * Binomial(100, 0.3) — and its small-mean path costs O(n).)
 */
export function seededBinomial(seed: number): BinomialDraw {
  const rng = xoroshiro128plus(seed | 0);
  const uniform = () => ((rng.unsafeNext() >>> 5) * 67108864 + (rng.unsafeNext() >>> 6)) / 9007199254740992;
  const fromZero = (n: number, p: number): number => {
    const ratio = p / (1 - p);
    let prob = Math.exp(n * Math.log1p(-p));
    let u = uniform();
    let x = 0;
    while (u > prob && x < n) {
      u -= prob;
      x++;
      prob *= ((n - x + 1) / x) * ratio;
    }
    return x;
  };
  const fromMode = (n: number, p: number): number => {
    const ratio = p / (1 - p);
    const m = Math.floor((n + 1) * p);
    const pm = Math.exp(lnGamma(n + 1) - lnGamma(m + 1) - lnGamma(n - m + 1) + m * Math.log(p) + (n - m) * Math.log1p(-p));
    let u = uniform() - pm;
    if (u <= 0) return m;
    let lo = m;
    let hi = m;
    let pLo = pm;
    let pHi = pm;
    while (lo > 0 || hi < n) {
      if (hi < n) {
        pHi *= ((n - hi) / (hi + 1)) * ratio;
        hi++;
        if ((u -= pHi) <= 0) return hi;
      }
      if (lo > 0) {
        pLo *= lo / ((n - lo + 1) * ratio);
        lo--;
        if ((u -= pLo) <= 0) return lo;
      }
    }
    return m; // rounding left a sliver of probability: the mode
  };
  const draw = (n: number, p: number): number => {
    if (n <= 0 || p <= 0) return 0;
    if (p >= 1) return n;
    if (p > 0.5) return n - draw(n, 1 - p);
    return n * p < 10 ? fromZero(n, p) : fromMode(n, p);
  };
  return draw;
}

const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
  -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x ≥ 1 (Lanczos, g = 7; relative error ~1e-15). */
function lnGamma(x: number): number {
  const y = x - 1;
  let a = LANCZOS[0];
  for (let i = 1; i < LANCZOS.length; i++) a += LANCZOS[i] / (y + i);
  const t = y + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (y + 0.5) * Math.log(t) - t + Math.log(a);
}

/** A multinomial draw of `total` battles over the cells, probabilities counts/total, by conditional binomials. */
export function multinomial(counts: Float64Array, total: number, out: Float64Array, draw: BinomialDraw): void {
  let remaining = Math.round(total);
  let mass = total;
  for (let k = 0; k < counts.length; k++) {
    if (remaining <= 0 || counts[k] === 0) {
      out[k] = 0;
    } else if (counts[k] >= mass || k === counts.length - 1) {
      out[k] = remaining;
    } else {
      const x = draw(remaining, counts[k] / mass);
      out[k] = x;
    }
    remaining -= out[k];
    mass -= counts[k];
  }
}

/** 2.5 % and 97.5 % quantiles with linear interpolation (numpy's default). */
export function percentiles(values: Float64Array): [number, number] {
  const sorted = Float64Array.from(values).sort();
  const q = (prob: number) => {
    const h = (sorted.length - 1) * prob;
    const lo = Math.floor(h);
    const hi = Math.min(lo + 1, sorted.length - 1);
    return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
  };
  return [q(0.025), q(0.975)];
}
