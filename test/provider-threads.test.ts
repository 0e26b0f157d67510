/**
 * Provider streams read in a worker thread (`src/llm/provider-threads.ts`):
 * the same text, deltas in order, the same error classes as in-process, a
 * cancel reaching the thread, the egress policy holding there, and a thread
 * that dies failing only its own calls (the next call gets a new thread).
 */
import { ProviderCallError } from '../src/llm/provider-errors';
import { type ModelSpec, ProviderThreads } from '../src/llm/provider-threads';
import { CancelledError, OutputLimitError } from '../src/llm/stream-completion';
import { FakeLlmServer, splitText } from './helpers/fake-llm';

const KEY = 'sk-test-0123456789abcdef';
const OPEN = { allowPrivateNetworks: true, allowCidrs: [] };
const CLOSED = { allowPrivateNetworks: false, allowCidrs: [] };
const ASK = [{ role: 'user' as const, content: 'Say hello' }];
/**
 * The timeout of calls that test something else: it counts a new thread's start, which here compiles the TypeScript
 * sources in the thread (at load 27 a warm-up call's 10 s, plus the 5 s grace, ran out before the thread answered).
 */
const CALL_MS = 45_000;

let fake: FakeLlmServer;
const pools: ProviderThreads[] = [];

beforeAll(async () => {
  fake = await FakeLlmServer.start();
});
beforeEach(() => fake.reset());
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
  await fake.close();
});

function pool(egress = OPEN, threads = 1, onThreadLost?: (error: unknown, calls: number) => void): ProviderThreads {
  const p = new ProviderThreads({ threads, egress, transport: {}, onThreadLost });
  pools.push(p);
  return p;
}

function spec(name: string, own = false): ModelSpec {
  return own
    ? { provider: 'openai_compatible', name, creds: { apiKey: KEY, baseUrl: fake.baseUrls.compatible }, baseUrls: {} }
    : { provider: 'openai', name, creds: { apiKey: KEY }, baseUrls: { openai: fake.baseUrls.openai } };
}

describe('provider threads', () => {
  it('streams the whole text as ordered deltas, several answers at once, with usage and timings', async () => {
    const threads = pool(OPEN, 2);
    const names = ['t-one', 't-two', 't-three', 't-four'];
    const textOf = (n: string) => `${n} says: ${'word '.repeat(40).trim()}`;
    const seen = names.map(() => [] as string[]);
    // Each delta event waits until the one before it has reached `onDelta`: deltas that arrive apart travel alone
    // (a loaded machine's timers could otherwise bunch them into one window, where they join).
    const waiting = names.map(() => new Map<number, () => void>());
    const arrived = (i: number) => waiting[i]!.get(seen[i]!.length)?.();
    names.forEach((n, i) => {
      const pieces = splitText(textOf(n)).length;
      // Event 0 opens the answer, events 1..pieces carry its text, the rest close it.
      const needed = (index: number) => Math.min(index - 1, pieces);
      fake.setBehavior(n, {
        text: textOf(n),
        chunkDelayMs: 10,
        beforeEvent: (index) =>
          seen[i]!.length >= needed(index) ? Promise.resolve() : new Promise((resolve) => waiting[i]!.set(needed(index), resolve)),
      });
    });
    const results = await Promise.all(
      names.map((n, i) =>
        threads.stream({
          spec: spec(n),
          messages: ASK,
          timeoutMs: CALL_MS,
          onDelta: (d) => {
            seen[i]!.push(d);
            arrived(i);
          },
        }),
      ),
    );
    results.forEach((r, i) => {
      expect(r.text).toBe(textOf(names[i]!));
      expect(seen[i]!.join('')).toBe(r.text);
      // Sent apart, each delta travels alone: the thread joins only deltas that wait together.
      expect(seen[i]).toEqual(splitText(r.text));
      expect(r.completionTokens).toBeGreaterThan(0);
      expect(r.timeToFirstTokenMs).not.toBeNull();
    });
  });

  it('answers provider failures, the output limit and cancels with the in-process error classes', async () => {
    const threads = pool();
    const refused = threads.stream({ spec: spec('t-fail-429'), messages: ASK, timeoutMs: CALL_MS });
    await expect(refused).rejects.toBeInstanceOf(ProviderCallError);
    await expect(refused).rejects.toMatchObject({ reason: 'RATE_LIMIT', provider: 'openai', statusCode: 429 });

    fake.setBehavior('t-long', { text: 'x'.repeat(5_000), chunks: 50 });
    const cut = threads.stream({ spec: spec('t-long'), messages: ASK, timeoutMs: CALL_MS, maxOutputBytes: 1_024 });
    await expect(cut).rejects.toBeInstanceOf(OutputLimitError);
    await expect(cut).rejects.toMatchObject({ partialText: 'x'.repeat(1_024), limitBytes: 1_024 });

    const controller = new AbortController();
    fake.setBehavior('t-hang', { hang: true });
    const hung = threads.stream({ spec: spec('t-hang'), messages: ASK, timeoutMs: 60_000, signal: controller.signal });
    await fake.waitForRequests(3, 'openai', 'chat');
    controller.abort();
    await expect(hung).rejects.toBeInstanceOf(CancelledError);

    const slow = threads.stream({ spec: spec('t-hang'), messages: ASK, timeoutMs: 200 });
    await expect(slow).rejects.toMatchObject({ reason: 'TIMEOUT' });
  });

  it("obeys the egress policy in the thread: a key's own private endpoint is refused before any request", async () => {
    const threads = pool(CLOSED);
    const call = threads.stream({ spec: spec('t-private', true), messages: ASK, timeoutMs: CALL_MS });
    await expect(call).rejects.toMatchObject({ reason: 'BAD_REQUEST' });
    expect(fake.count('compatible', 'chat')).toBe(0);
    // The operator's configured endpoint is not the user's choice: allowed.
    await expect(threads.stream({ spec: spec('t-operator'), messages: ASK, timeoutMs: CALL_MS })).resolves.toMatchObject({
      text: expect.stringContaining('t-operator'),
    });
  });

  it('fails the calls of a thread that dies as UNAVAILABLE, and the next call runs on a new thread', async () => {
    const lost: Array<[unknown, number]> = [];
    const threads = pool(OPEN, 1, (error, calls) => lost.push([error, calls]));
    fake.setBehavior('t-held', { hang: true });
    const held = threads.stream({ spec: spec('t-held'), messages: ASK, timeoutMs: 60_000 });
    await fake.waitForRequests(1, 'openai', 'chat');
    const worker = (threads as unknown as { threads: Array<{ worker: { terminate(): Promise<number> } }> }).threads[0]!.worker;
    await worker.terminate();
    await expect(held).rejects.toMatchObject({ reason: 'UNAVAILABLE' });
    // Reported (the app logs it), with the one call it failed.
    expect(lost).toEqual([[expect.any(Error), 1]]);
    await expect(threads.stream({ spec: spec('t-after'), messages: ASK, timeoutMs: CALL_MS })).resolves.toMatchObject({
      text: expect.stringContaining('t-after'),
    });
  });
});

describe('provider threads under review', () => {
  it('ends a call by its own timeout even when its thread never answers (a wedged or lost thread)', async () => {
    const threads = pool();
    fake.setBehavior('t-wedged', { text: 'never sent' });
    // Start the thread, then make it deaf: what a thread whose loop is blocked looks like from the main thread.
    await threads.stream({ spec: spec('t-warm'), messages: ASK, timeoutMs: CALL_MS });
    const worker = (threads as unknown as { threads: Array<{ worker: { postMessage(m: unknown): void } }> }).threads[0]!.worker;
    worker.postMessage = () => undefined;
    const call = threads.stream({ spec: spec('t-wedged'), messages: ASK, timeoutMs: 200 });
    const outcome = await Promise.race([
      call.then(
        () => 'resolved',
        (error: unknown) => error,
      ),
      new Promise((resolve) => setTimeout(() => resolve('still pending after 8 s'), 8_000)),
    ]);
    expect(outcome).toMatchObject({ reason: 'TIMEOUT' });
    expect((threads as unknown as { pending: Map<number, unknown> }).pending.size).toBe(0);
  }, 90_000);

  it('answers an unexpected error (not a provider failure) as in-process: not a ProviderCallError the user is shown', async () => {
    const odd = { ...spec('t-odd', true), provider: 'nope' } as unknown as ModelSpec;
    const inProcess = Promise.resolve().then(() => pool(OPEN, 0).stream({ spec: odd, messages: ASK, timeoutMs: CALL_MS }));
    await expect(inProcess).rejects.toThrow('Unknown provider: nope');
    await expect(inProcess).rejects.not.toBeInstanceOf(ProviderCallError);
    const inThread = pool().stream({ spec: odd, messages: ASK, timeoutMs: CALL_MS });
    await expect(inThread).rejects.toThrow('Unknown provider: nope');
    // The runner stores a ProviderCallError's message for the user ("UNAVAILABLE: …"), an unexpected one as "Internal error".
    await expect(inThread).rejects.not.toBeInstanceOf(ProviderCallError);
  });
});
