/**
 * `npx ts-node --transpile-only bench/profile-top.ts FILE.cpuprofile [--skip=S] [--until=S] [--top=N] [--inclusive=regexp,…]`:
 * summarises a `.cpuprofile` written by a bench run (e.g. `BENCH_OURS_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR"
 * npm run bench -- --variants=ours-vote,bare-vote --concurrency=10`): the top self-time frames, self time per origin,
 * and the inclusive time of the frames whose name matches each regexp, over the samples taken from --skip to --until
 * seconds after the profile started (the server's start-up left out, one point of several).
 */
import { formatFrames, readProfile, selfByOrigin, topFrames, type Profile } from './lib/cpuprofile';

/** Inclusive busy time (ms) of the frames whose function name matches `pattern`, counted once per sample. */
function inclusiveMs(profile: Profile, pattern: RegExp, [from, to]: [number, number]): number {
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of (node as { children?: number[] }).children ?? []) parent.set(child, node.id);
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const matches = new Map<number, boolean>();
  const under = (id: number): boolean => {
    const known = matches.get(id);
    if (known !== undefined) return known;
    const node = byId.get(id)!;
    const up = parent.get(id);
    const result = pattern.test(node.callFrame.functionName) || (up !== undefined && under(up));
    matches.set(id, result);
    return result;
  };
  let at = profile.startTime;
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    at += dt;
    if (at < from || at > to || byId.get(id)!.callFrame.functionName === '(idle)') return;
    if (under(id)) total += dt;
  });
  return total / 1000;
}

function main(): void {
  const args = process.argv.slice(2);
  const pick = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const file = args.find((a) => !a.startsWith('--'));
  if (!file) throw new Error('usage: profile-top.ts FILE.cpuprofile [--skip=S] [--until=S] [--top=N] [--inclusive=regexp,…]');
  const profile = readProfile(file);
  const from = profile.startTime + Number(pick('skip') ?? 0) * 1e6;
  const until = pick('until');
  const windows: Array<[number, number]> = [[from, until ? profile.startTime + Number(until) * 1e6 : profile.endTime]];
  const all = topFrames(profile, Infinity, windows);
  const busyMs = all.reduce((sum, f) => sum + f.selfMs, 0);
  console.log(`busy ${busyMs.toFixed(0)} ms from ${pick('skip') ?? 0} s to ${until ?? 'the end'}`);
  console.log(formatFrames(all.slice(0, Number(pick('top') ?? 30))));
  console.log('by origin:');
  console.log(formatFrames(selfByOrigin(profile, 20, windows)));
  for (const source of (pick('inclusive') ?? '').split(',').filter(Boolean)) {
    const ms = inclusiveMs(profile, new RegExp(source), windows[0]!);
    console.log(`inclusive ${source}: ${ms.toFixed(0)} ms (${((ms / busyMs) * 100).toFixed(1)}%)`);
  }
}

main();
