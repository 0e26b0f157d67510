/**
 * The self-describing deltas of `npm run bench:stream`. The fake provider
 * writes each delta as one token `<k.m.i.t> `: comparison k, model m (1..4),
 * sequence i (0..deltas-1) and the wall-clock time it wrote the delta, in ms
 * with µs resolution. A subscriber parses every token in the text it gets
 * (a replay `content`, a `delta`, or several deltas coalesced into one event)
 * and so sees lost, duplicated, out-of-order and misrouted deltas, and how
 * long each took from the provider's write to its own read.
 *
 * Clock: `performance.timeOrigin + performance.now()` in every process, i.e.
 * the wall clock read once at process start plus the monotonic clock since:
 * processes on one machine agree to within microseconds, and neither jumps.
 */
export const nowMs = (): number => performance.timeOrigin + performance.now();

export const tokenText = (k: number, m: number, i: number, sentAt: number): string => `<${k}.${m}.${i}.${sentAt.toFixed(3)}> `;

/** Global: use with `matchAll` (which clones it) or reset `lastIndex`. */
export const TOKEN_RE = /<(\d+)\.(\d+)\.(\d+)\.(\d+\.\d+)> /g;

/** The prompt of comparison k (the fake provider reads k back out of it). */
export const promptOf = (k: number): string => `bench-stream comparison ${k}: answer in ${'tokens'}`;
export const COMPARISON_IN_PROMPT = /bench-stream comparison (\d+)/;

/** Model m (1-based) of a comparison: an OpenAI model name the fake provider serves. */
export const modelName = (m: number): string => `bench-stream-${m}`;
export const MODEL_INDEX = /bench-stream-(\d+)/;
