/**
 * `generateCompletion` (an eval cell's call, not streamed) against the fake
 * provider in every wire format LLMSelect speaks: the same text, usage and
 * outcomes as `streamCompletion` (errors classified alike, the output limit,
 * the timeout and cancel), with one non-streaming request per call.
 */
import { createLanguageModel, type ProviderBaseUrls } from '../src/llm/language-models';
import type { ProviderName } from '../src/llm/model-id';
import { ProviderCallError } from '../src/llm/provider-errors';
import {
  CancelledError,
  generateCompletion,
  OutputLimitError,
  type StreamCompletionOptions,
  streamCompletion,
} from '../src/llm/stream-completion';
import { type FakeProvider, FakeLlmServer } from './helpers/fake-llm';

const PROVIDERS: Array<[ProviderName, FakeProvider]> = [
  ['openai', 'openai'],
  ['anthropic', 'anthropic'],
  ['google', 'google'],
  ['mistral', 'mistral'],
  ['azure', 'azure'],
  ['openai_compatible', 'compatible'],
];

let fake: FakeLlmServer;

beforeAll(async () => {
  fake = await FakeLlmServer.start();
});
afterAll(() => fake.close());
beforeEach(() => fake.reset());

function call(provider: ProviderName, name: string, extra: Partial<StreamCompletionOptions> = {}): StreamCompletionOptions {
  const { openai, anthropic, google, mistral } = fake.baseUrls;
  const baseUrls: ProviderBaseUrls = { openai, anthropic, google, mistral };
  const baseUrl = provider === 'azure' ? fake.baseUrls.azure : provider === 'openai_compatible' ? fake.baseUrls.compatible : null;
  return {
    provider,
    model: createLanguageModel(provider, name, { apiKey: 'sk-generate', baseUrl }, baseUrls),
    system: 'Be brief.',
    messages: [{ role: 'user', content: 'Say hi' }],
    timeoutMs: 5_000,
    maxOutputTokens: 256,
    headers: { 'Idempotency-Key': `evc_${provider}` },
    ...extra,
  };
}

/** The outcome of a call as the eval worker reads it: the result, or the error's class and reason. */
async function outcome(promise: Promise<unknown>): Promise<unknown> {
  try {
    return await promise;
  } catch (e) {
    if (e instanceof OutputLimitError) return { error: 'OutputLimitError', partial: e.partialText };
    if (e instanceof ProviderCallError) return { error: e.reason, retryAfterMs: e.retryAfterMs };
    if (e instanceof CancelledError) return { error: 'Cancelled' };
    throw e;
  }
}

describe.each(PROVIDERS)('%s', (provider, fakeName) => {
  it('answers with one non-streaming request: the same text and usage as streamed', async () => {
    const generated = await generateCompletion(call(provider, 'gen-model'));
    const streamed = await streamCompletion(call(provider, 'gen-model'));
    expect(generated).toMatchObject({
      text: streamed.text,
      promptTokens: streamed.promptTokens,
      completionTokens: streamed.completionTokens,
    });
    expect(generated.text).toBe('Reply from gen-model: Say hi');
    expect(generated.promptTokens).toBeGreaterThan(0);
    expect(generated.timeToFirstTokenMs).toBe(generated.latencyMs);
    const chats = fake.requests.filter((r) => r.kind === 'chat');
    expect(chats.map((r) => [r.provider, r.stream, r.idempotencyKey])).toEqual([
      [fakeName, false, `evc_${provider}`],
      [fakeName, true, `evc_${provider}`],
    ]);
  });

  it.each([429, 401, 500])('classifies HTTP %i as the streamed call does', async (status) => {
    const name = `fail-${status}`;
    const generated = await outcome(generateCompletion(call(provider, name)));
    expect(generated).toEqual(await outcome(streamCompletion(call(provider, name))));
    expect(generated).toMatchObject({ error: expect.any(String) });
  });
});

it('cuts an answer past the output limit to the limit (OutputLimitError, as streamed)', async () => {
  fake.setBehavior('long-model', { text: 'é'.repeat(100) });
  const generated = await outcome(generateCompletion(call('openai', 'long-model', { maxOutputBytes: 51 })));
  expect(generated).toEqual({ error: 'OutputLimitError', partial: 'é'.repeat(25) });
  expect(await outcome(streamCompletion(call('openai', 'long-model', { maxOutputBytes: 51 })))).toEqual(generated);
});

it('times out (TIMEOUT) and cancels (CancelledError) a call that does not answer', async () => {
  expect(await outcome(generateCompletion(call('anthropic', 'hang', { timeoutMs: 100 })))).toMatchObject({ error: 'TIMEOUT' });
  const controller = new AbortController();
  const cancelled = outcome(generateCompletion(call('anthropic', 'hang', { signal: controller.signal })));
  await fake.waitForRequests(2, 'anthropic', 'chat');
  controller.abort();
  expect(await cancelled).toEqual({ error: 'Cancelled' });
});
