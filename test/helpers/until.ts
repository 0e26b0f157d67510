/**
 * Polls `check` every 50 ms until it is truthy (then returns it) or `timeoutMs` passes (then throws
 * "`what` not within … ms", with the last error `check` threw). For what no event announces: a Redis
 * election, a cluster healing. `what` names the helper and the condition (e.g. "redis cluster: healed").
 */
export async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} not within ${timeoutMs} ms${last ? ` (${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
