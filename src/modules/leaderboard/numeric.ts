/** Numerics of the arena fit: linear algebra (symmetric positive definite, row-major), the logistic function, sums. */

export function cholesky(A: Float64Array, P: number): Float64Array {
  const L = new Float64Array(P * P);
  for (let i = 0; i < P; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i * P + j];
      for (let k = 0; k < j; k++) s -= L[i * P + k] * L[j * P + k];
      if (i === j) {
        if (!(s > 0)) throw new Error('information matrix is not positive definite');
        L[i * P + i] = Math.sqrt(s);
      } else {
        L[i * P + j] = s / L[j * P + j];
      }
    }
  }
  return L;
}

export function choleskySolve(L: Float64Array, b: Float64Array, P: number): Float64Array {
  const y = new Float64Array(P);
  for (let i = 0; i < P; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= L[i * P + k] * y[k];
    y[i] = s / L[i * P + i];
  }
  const x = new Float64Array(P);
  for (let i = P - 1; i >= 0; i--) {
    let s = y[i];
    for (let k = i + 1; k < P; k++) s -= L[k * P + i] * x[k];
    x[i] = s / L[i * P + i];
  }
  return x;
}

export function invertSpd(A: Float64Array, P: number): Float64Array {
  const L = cholesky(A, P);
  const inv = new Float64Array(P * P);
  const e = new Float64Array(P);
  for (let j = 0; j < P; j++) {
    e.fill(0);
    e[j] = 1;
    const col = choleskySolve(L, e, P);
    for (let i = 0; i < P; i++) inv[i * P + j] = col[i];
  }
  return inv;
}

// ---------------------------------------------------------------------------
// Small helpers

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

export function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

export function sumArray(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return s;
}

export function mean(xs: ArrayLike<number>): number {
  return xs.length === 0 ? 0 : sumArray(xs) / xs.length;
}

export function cmp(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}

export function cmpVec(x: number[], y: number[]): number {
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
}

/** A · B · A for square row-major P × P matrices (the sandwich H⁻¹ G H⁻¹). */
export function sandwich(A: Float64Array, B: Float64Array, P: number): Float64Array {
  const AB = new Float64Array(P * P);
  for (let i = 0; i < P; i++) {
    for (let k = 0; k < P; k++) {
      const a = A[i * P + k];
      if (a === 0) continue;
      for (let j = 0; j < P; j++) AB[i * P + j] += a * B[k * P + j];
    }
  }
  const out = new Float64Array(P * P);
  for (let i = 0; i < P; i++) {
    for (let k = 0; k < P; k++) {
      const ab = AB[i * P + k];
      if (ab === 0) continue;
      for (let j = 0; j < P; j++) out[i * P + j] += ab * A[k * P + j];
    }
  }
  return out;
}
