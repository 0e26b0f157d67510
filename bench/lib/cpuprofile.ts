/**
 * Summarises a V8 `.cpuprofile` (written by `node --cpu-prof`): self time per
 * frame, as a share of the busy samples ("(idle)" left out). Used by
 * `bench/profile.ts` and `bench/stream.ts --profile`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
export interface Profile {
  nodes: Node[];
  /** Microseconds of the system's monotonic clock (`process.hrtime` in any process on the machine). */
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** The monotonic clock as profiles record it, in µs: windows for `topFrames`, taken in any process. */
export const profileClockUs = (): number => Number(process.hrtime.bigint() / 1000n);

export interface Frame {
  frame: string;
  /** Share of the busy samples. */
  share: number;
  /** Self time in ms. */
  selfMs: number;
}

/**
 * Self time per frame (function + file:line), as a share of all busy samples;
 * with `windows` ([start, end] in `profileClockUs`), only the samples taken
 * inside them (e.g. the measured load, not the process's start-up).
 */
export function topFrames(profile: Profile, n: number, windows?: Array<[number, number]>): Frame[] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  let total = 0;
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    at += dt;
    if (windows && !windows.some(([start, end]) => at >= start && at <= end)) return;
    const f = byId.get(id)!.callFrame;
    if (f.functionName === '(idle)') return;
    const file = f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(dist|src)\//, '$1/');
    const key = `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  });
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([frame, t]) => ({ frame, share: t / total, selfMs: t / 1000 }));
}

/**
 * Self time per origin (an npm package, a directory of dist/src, a node:
 * internal module, or V8's own: GC, program, native), as a share of the busy
 * samples: where the time goes when the top frames are flat.
 */
export function selfByOrigin(profile: Profile, n: number, windows?: Array<[number, number]>): Frame[] {
  const origins = new Map<string, { share: number; selfMs: number }>();
  for (const f of topFrames(profile, Infinity, windows)) {
    const file = f.frame.slice(f.frame.lastIndexOf(' ') + 1).replace(/:\d+$/, '');
    const pkg = /^(@[^/]+\/[^/]+|[^/.:][^/:]*)\//.exec(file)?.[1];
    const origin = !file
      ? 'V8 / native'
      : file.startsWith('node:')
        ? file.replace(/^node:(internal\/)?([^/]+).*$/, 'node:$2')
        : /^(dist|src)\//.test(file)
          ? file.replace(/^((dist\/)?src\/[^/]+).*$/, '$1')
          : (pkg ?? file);
    const o = origins.get(origin) ?? { share: 0, selfMs: 0 };
    o.share += f.share;
    o.selfMs += f.selfMs;
    origins.set(origin, o);
  }
  return [...origins.entries()]
    .sort((a, b) => b[1].selfMs - a[1].selfMs)
    .slice(0, n)
    .map(([frame, o]) => ({ frame, ...o }));
}

/** The `.cpuprofile` files in `dir` (node names them by date, pid and sequence). */
export function profilesIn(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f));
}

export function readProfile(file: string): Profile {
  return JSON.parse(readFileSync(file, 'utf8')) as Profile;
}

export function formatFrames(frames: Frame[]): string {
  return frames.map(({ frame, share }) => `${(share * 100).toFixed(1).padStart(5)}%  ${frame}`).join('\n');
}
