/**
 * The fake LLM server driven by the real AI SDK clients, and the provider
 * helpers (`createLanguageModel`, `classifyProviderError`, `listProviderModels`).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAzure } from '@ai-sdk/azure';
import { APICallError, RetryError, generateText, streamText, type ModelMessage, type StreamTextResult, type ToolSet } from 'ai';
import { createLanguageModel, LLM_MAX_RETRIES, type ProviderBaseUrls } from '../src/llm/language-models';
import type { ProviderName } from '../src/llm/model-id';
import { azureV1Url, listProviderModels } from '../src/llm/model-lists';
import { classifyProviderError, ProviderCallError } from '../src/llm/provider-errors';
import { BAD_API_KEY, FakeLlmServer, splitText, type FakeProvider } from './helpers/fake-llm';

const PROVIDERS: Array<[ProviderName, FakeProvider]> = [
  ['openai', 'openai'],
  ['anthropic', 'anthropic'],
  ['google', 'google'],
  ['mistral', 'mistral'],
  ['azure', 'azure'],
  ['openai_compatible', 'compatible'],
];

const KEY = 'sk-test-0123456789abcdef';
const SYSTEM = 'You are terse.';
const HISTORY: ModelMessage[] = [
  { role: 'user', content: 'What is the capital of France?' },
  { role: 'assistant', content: 'Paris.' },
  { role: 'user', content: 'And of Italy?' },
];
/** Words in SYSTEM + HISTORY: 3 + 6 + 1 + 3. */
const PROMPT_WORDS = 13;
/** maxOutputTokens silences Anthropic's "unknown model, limited to 4096" warning. */
const CALL = { maxRetries: LLM_MAX_RETRIES, maxOutputTokens: 256 } as const;

let fake: FakeLlmServer;

beforeAll(async () => {
  fake = await FakeLlmServer.start();
});
afterAll(() => fake.close());
beforeEach(() => fake.reset());

function baseUrls(): ProviderBaseUrls {
  const { openai, anthropic, google, mistral } = fake.baseUrls;
  return { openai, anthropic, google, mistral };
}

/** Azure and OpenAI-compatible keys carry their own endpoint; the others use the configured base URLs. */
function credsFor(provider: ProviderName, apiKey = KEY) {
  if (provider === 'azure') return { apiKey, baseUrl: fake.baseUrls.azure };
  if (provider === 'openai_compatible') return { apiKey, baseUrl: fake.baseUrls.compatible };
  return { apiKey };
}

function model(provider: ProviderName, name: string, apiKey = KEY) {
  return createLanguageModel(provider, name, credsFor(provider, apiKey), baseUrls());
}

interface Drained {
  deltas: string[];
  errors: unknown[];
  aborted: boolean;
}

/** Reads a whole `fullStream`: text deltas, `error` parts and whether an `abort` part arrived. */
async function drain(result: StreamTextResult<ToolSet, never>): Promise<Drained> {
  const drained: Drained = { deltas: [], errors: [], aborted: false };
  for await (const part of result.fullStream) {
    if (part.type === 'text-delta') drained.deltas.push(part.text);
    else if (part.type === 'error') drained.errors.push(part.error);
    else if (part.type === 'abort') drained.aborted = true;
  }
  return drained;
}

async function generateError(provider: ProviderName, name: string, apiKey = KEY): Promise<unknown> {
  return generateText({ ...CALL, model: model(provider, name, apiKey), prompt: 'Hi' }).then(
    () => {
      throw new Error('expected generateText to fail');
    },
    (error: unknown) => error,
  );
}

function expectSafeMessage(error: ProviderCallError, ...secrets: string[]): void {
  for (const secret of [...secrets, 'Incorrect API key', 'server had an error', '{']) {
    expect(error.message).not.toContain(secret);
  }
}

/** A port that refuses connections: listen, note the port, close. */
async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

describe.each(PROVIDERS)('%s through the AI SDK', (provider, fakeProvider) => {
  it('generateText returns the reply and usage, and the fake records the history and key', async () => {
    const result = await generateText({ ...CALL, model: model(provider, 'model-a'), system: SYSTEM, messages: HISTORY });

    expect(result.text).toBe('Reply from model-a: And of Italy?');
    expect(result.usage.inputTokens).toBe(PROMPT_WORDS);
    expect(result.usage.outputTokens).toBe(6);
    expect(result.usage.totalTokens).toBe(PROMPT_WORDS + 6);
    expect(fake.count(fakeProvider, 'chat')).toBe(1);
    const request = fake.requests[0]!;
    expect(request).toMatchObject({ provider: fakeProvider, kind: 'chat', model: 'model-a', apiKey: KEY, stream: false });
    expect(request.messages).toEqual([
      { role: 'system', text: SYSTEM },
      { role: 'user', text: 'What is the capital of France?' },
      { role: 'assistant', text: 'Paris.' },
      { role: 'user', text: 'And of Italy?' },
    ]);
    expect(request.body).toBeDefined();
  });

  it('streamText yields several deltas and reports usage', async () => {
    const result = streamText({ ...CALL, model: model(provider, 'model-b'), system: SYSTEM, messages: HISTORY });
    const { deltas, errors } = await drain(result);

    expect(errors).toEqual([]);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe('Reply from model-b: And of Italy?');
    const usage = await result.usage;
    expect(usage.inputTokens).toBe(PROMPT_WORDS);
    expect(usage.outputTokens).toBe(6);
    expect(fake.requests[0]).toMatchObject({ provider: fakeProvider, model: 'model-b', stream: true });
    expect(fake.requests[0]!.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user']);
  });

  it('streams the configured text in the configured number of deltas', async () => {
    fake.setBehavior('chunky', { text: 'one two three four five six seven', chunks: 3 });
    const { deltas } = await drain(streamText({ ...CALL, model: model(provider, 'chunky'), prompt: 'Hi' }));
    expect(deltas).toEqual(['one two ', 'three four ', 'five six seven']);
  });

  it('bad-key → AUTH, without leaking the key or the response body', async () => {
    const error = classifyProviderError(provider, await generateError(provider, 'model-a', BAD_API_KEY));
    expect(error).toBeInstanceOf(ProviderCallError);
    expect(error).toMatchObject({ provider, reason: 'AUTH', statusCode: 401 });
    expectSafeMessage(error, BAD_API_KEY);
    expect(fake.requests[0]!.apiKey).toBe(BAD_API_KEY);
  });

  it('fail-401 with a real-looking key → AUTH, key not in the message', async () => {
    const error = classifyProviderError(provider, await generateError(provider, 'fail-401'));
    expect(error.reason).toBe('AUTH');
    expectSafeMessage(error, KEY);
  });

  it.each([
    ['fail-429', 'RATE_LIMIT'],
    ['fail-500', 'UNAVAILABLE'],
    ['fail-503', 'UNAVAILABLE'],
    ['fail-400', 'BAD_REQUEST'],
  ] as const)('%s → %s (generateText throws)', async (name, reason) => {
    const error = classifyProviderError(provider, await generateError(provider, name));
    expect(error.reason).toBe(reason);
    expectSafeMessage(error, KEY);
  });

  it('an HTTP error in streamText surfaces only as an error part (text rejects without the cause)', async () => {
    const onError = jest.fn();
    const result = streamText({ ...CALL, model: model(provider, 'fail-429'), prompt: 'Hi', onError });
    const { deltas, errors } = await drain(result);

    expect(deltas).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(classifyProviderError(provider, errors[0]).reason).toBe('RATE_LIMIT');
    expect(onError).toHaveBeenCalledWith({ error: errors[0] });
    await expect(result.text).rejects.toMatchObject({ name: 'AI_NoOutputGeneratedError' });
  });

  it('an error frame mid-stream becomes an error part after the first deltas; text resolves partial', async () => {
    fake.setBehavior('midway', { errorAfterChunks: 2 });
    const result = streamText({ ...CALL, model: model(provider, 'midway'), prompt: 'Hi', onError: () => undefined });
    const { deltas, errors } = await drain(result);

    expect(deltas).toEqual(['Reply ', 'from ']);
    expect(errors).toHaveLength(1);
    expect(classifyProviderError(provider, errors[0]).reason).toBe('UNAVAILABLE');
    await expect(result.text).resolves.toBe('Reply from ');
  });

  it('hang + AbortSignal.timeout → TIMEOUT (generateText)', async () => {
    const error = await generateText({
      ...CALL,
      model: model(provider, 'model-hang'),
      prompt: 'Hi',
      abortSignal: AbortSignal.timeout(200),
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(classifyProviderError(provider, error).reason).toBe('TIMEOUT');
  });

  it('hang + AbortSignal.timeout → TIMEOUT (streamText: abort part, no error part)', async () => {
    const onAbort = jest.fn();
    const result = streamText({ ...CALL, model: model(provider, 'hang'), prompt: 'Hi', abortSignal: AbortSignal.timeout(200), onAbort });
    const { errors, aborted } = await drain(result);

    expect(errors).toEqual([]);
    expect(aborted).toBe(true);
    expect(onAbort).toHaveBeenCalledTimes(1);
    const rejection = await result.text.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(classifyProviderError(provider, rejection).reason).toBe('TIMEOUT');
  });

  it('listProviderModels lists chat models with one request carrying the key', async () => {
    const names = await listProviderModels(provider, credsFor(provider), baseUrls(), 2_000);

    expect(names.length).toBeGreaterThan(0);
    expect(names.some((n) => /embed|whisper/.test(n))).toBe(false);
    expect(names.every((n) => !n.startsWith('models/'))).toBe(true);
    expect(fake.count(fakeProvider, 'models')).toBe(1);
    expect(fake.count(undefined, 'chat')).toBe(0);
    expect(fake.requests[0]!.apiKey).toBe(KEY);
  });

  it('listProviderModels returns exactly the provider list', async () => {
    fake.setModels(fakeProvider, ['alpha', 'beta']);
    await expect(listProviderModels(provider, credsFor(provider), baseUrls(), 2_000)).resolves.toEqual(['alpha', 'beta']);
  });

  it('listProviderModels: bad key → AUTH, hang → TIMEOUT', async () => {
    await expect(listProviderModels(provider, credsFor(provider, BAD_API_KEY), baseUrls(), 2_000)).rejects.toMatchObject({
      reason: 'AUTH',
      provider,
    });
    fake.setBehavior(`${fakeProvider}:models`, { hang: true });
    await expect(listProviderModels(provider, credsFor(provider), baseUrls(), 200)).rejects.toMatchObject({ reason: 'TIMEOUT' });
  });
});

describe('provider URLs', () => {
  it('calls the documented paths', async () => {
    for (const [provider] of PROVIDERS) {
      await generateText({ ...CALL, model: model(provider, 'm'), prompt: 'Hi' });
      await drain(streamText({ ...CALL, model: model(provider, 'm'), prompt: 'Hi' }));
    }
    expect(fake.requests.map((r) => r.path)).toEqual([
      '/openai/v1/chat/completions',
      '/openai/v1/chat/completions',
      '/anthropic/v1/messages',
      '/anthropic/v1/messages',
      '/google/v1beta/models/m:generateContent',
      '/google/v1beta/models/m:streamGenerateContent?alt=sse',
      '/mistral/v1/chat/completions',
      '/mistral/v1/chat/completions',
      '/azure/openai/v1/chat/completions',
      '/azure/openai/v1/chat/completions',
      '/compatible/v1/chat/completions',
      '/compatible/v1/chat/completions',
    ]);
    const openaiStream = fake.requests[1]!.body;
    expect(openaiStream).toMatchObject({ model: 'm', stream: true, stream_options: { include_usage: true } });
    expect(fake.requests[11]!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
  });

  it('serves Azure deployment-based URLs too', async () => {
    const azure = createAzure({ apiKey: KEY, baseURL: `${fake.url}/azure/openai`, useDeploymentBasedUrls: true, apiVersion: '2024-10-21' });
    const result = await generateText({ ...CALL, model: azure.chat('my-deployment'), prompt: 'Hi' });

    expect(result.text).toBe('Reply from my-deployment: Hi');
    expect(fake.requests[0]).toMatchObject({
      provider: 'azure',
      model: 'my-deployment',
      apiKey: KEY,
      path: '/azure/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21',
    });
  });

  it('azureV1Url mirrors the SDK rule for Azure hosts', () => {
    expect(azureV1Url('https://res.openai.azure.com/openai', '/models')).toBe(
      'https://res.openai.azure.com/openai/v1/models?api-version=v1',
    );
    expect(azureV1Url('https://res.openai.azure.com/openai/v1', '/models')).toBe('https://res.openai.azure.com/openai/v1/models');
    expect(azureV1Url('http://127.0.0.1:1/azure/openai/v1', '/models')).toBe('http://127.0.0.1:1/azure/openai/v1/models');
  });

  it("a key's base URL overrides the configured one", async () => {
    const configured = { ...baseUrls(), openai: await closedPortUrl() };
    const m = createLanguageModel('openai', 'm', { apiKey: KEY, baseUrl: `${fake.baseUrls.openai}/` }, configured);
    await expect(generateText({ ...CALL, model: m, prompt: 'Hi' })).resolves.toMatchObject({ text: 'Reply from m: Hi' });
  });

  it('azure and openai_compatible need a base URL; base URLs must be http(s)', () => {
    for (const provider of ['azure', 'openai_compatible'] as const) {
      expect(() => createLanguageModel(provider, 'm', { apiKey: KEY, baseUrl: null }, baseUrls())).toThrow(
        expect.objectContaining({ reason: 'BAD_REQUEST', provider }),
      );
    }
    expect(() => createLanguageModel('openai', 'm', { apiKey: KEY, baseUrl: 'ftp://x' }, {})).toThrow(ProviderCallError);
    expect(() => createLanguageModel('openai', 'm', { apiKey: KEY, baseUrl: 'not a url' }, {})).toThrow(ProviderCallError);
  });
});

describe('classifyProviderError', () => {
  const apiError = (statusCode: number | undefined, data?: unknown) =>
    new APICallError({ message: `secret ${KEY}`, url: 'http://x', requestBodyValues: {}, statusCode, responseBody: '{"raw":true}', data });

  it.each([
    [401, 'AUTH'],
    [403, 'AUTH'],
    [429, 'RATE_LIMIT'],
    [408, 'TIMEOUT'],
    [504, 'TIMEOUT'],
    [500, 'UNAVAILABLE'],
    [529, 'UNAVAILABLE'],
    [404, 'BAD_REQUEST'],
    [422, 'BAD_REQUEST'],
  ] as const)('HTTP %i → %s', (status, reason) => {
    const error = classifyProviderError('openai', apiError(status));
    expect(error).toMatchObject({ reason, statusCode: status });
    expect(error.message).not.toContain(KEY);
    expect(error.message).not.toContain('raw');
  });

  it('unwraps RetryError and honours timedOut', () => {
    const retry = new RetryError({ message: 'failed', reason: 'maxRetriesExceeded', errors: [apiError(500), apiError(429)] });
    expect(classifyProviderError('anthropic', retry).reason).toBe('RATE_LIMIT');
    expect(classifyProviderError('anthropic', apiError(500), { timedOut: true }).reason).toBe('TIMEOUT');
  });

  it("recognises Gemini's 400 API_KEY_INVALID as AUTH", () => {
    const data = {
      error: { code: 400, message: 'API key not valid.', status: 'INVALID_ARGUMENT', details: [{ reason: 'API_KEY_INVALID' }] },
    };
    expect(classifyProviderError('google', apiError(400, data)).reason).toBe('AUTH');
  });

  it('classifies streamed error frames and unknown errors', () => {
    expect(classifyProviderError('anthropic', { type: 'overloaded_error', message: 'Overloaded' }).reason).toBe('UNAVAILABLE');
    expect(classifyProviderError('anthropic', { type: 'rate_limit_error', message: 'x' }).reason).toBe('RATE_LIMIT');
    expect(classifyProviderError('openai', { message: 'x', type: 'invalid_request_error', code: 'context_length_exceeded' }).reason).toBe(
      'BAD_REQUEST',
    );
    expect(classifyProviderError('openai', new Error('weird')).reason).toBe('UNAVAILABLE');
    const already = new ProviderCallError('openai', 'AUTH', 'x');
    expect(classifyProviderError('openai', already)).toBe(already);
  });

  it('connection refused → UNAVAILABLE, for generateText and model lists', async () => {
    const dead = await closedPortUrl();
    const m = createLanguageModel('mistral', 'm', { apiKey: KEY }, { mistral: dead });
    const error = await generateText({ ...CALL, model: m, prompt: 'Hi' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(classifyProviderError('mistral', error)).toMatchObject({ reason: 'UNAVAILABLE', message: 'Mistral could not be reached' });
    await expect(listProviderModels('openai', { apiKey: KEY }, { openai: dead }, 2_000)).rejects.toMatchObject({ reason: 'UNAVAILABLE' });
  });
});

describe('listProviderModels pagination', () => {
  it.each([
    ['anthropic', 'anthropic'],
    ['google', 'google'],
  ] as const)('%s follows pages', async (provider, fakeProvider) => {
    fake.setModels(fakeProvider, ['m1', 'm2', 'm3', 'm4', 'm5'], { maxPageSize: 2 });
    await expect(listProviderModels(provider, { apiKey: KEY }, baseUrls(), 2_000)).resolves.toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
    expect(fake.count(fakeProvider, 'models')).toBe(3);
  });
});

describe('FakeLlmServer', () => {
  it('reads behaviour from the model name: slow-<ms> delays, fail-<status> fails', async () => {
    const started = performance.now();
    await generateText({ ...CALL, model: model('openai', 'gpt-slow-120'), prompt: 'Hi' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(100);
    const error = classifyProviderError('openai', await generateError('openai', 'gpt-fail-503'));
    expect(error).toMatchObject({ reason: 'UNAVAILABLE', statusCode: 503 });
  });

  it('setBehavior overrides the name, and reset clears it', async () => {
    fake.setBehavior('fail-500', { text: 'fine after all' });
    await expect(generateText({ ...CALL, model: model('openai', 'fail-500'), prompt: 'Hi' })).resolves.toMatchObject({
      text: 'fine after all',
    });
    fake.reset();
    expect(fake.requests).toHaveLength(0);
    await expect(generateError('openai', 'fail-500')).resolves.toMatchObject({ statusCode: 500 });
  });

  it('a missing key gets 401', async () => {
    const error = classifyProviderError('openai', await generateError('openai', 'm', ''));
    expect(error.reason).toBe('AUTH');
    expect(fake.requests[0]!.apiKey ?? '').toBe('');
  });

  it('answers unknown routes with 404 JSON', async () => {
    const response = await fetch(`${fake.url}/nope`);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { type: 'not_found' } });
  });

  it('splitText keeps the text intact', () => {
    expect(splitText('a b c')).toEqual(['a ', 'b ', 'c']);
    expect(splitText('ab', 5)).toEqual(['a', 'b']);
    expect(splitText('', 3)).toEqual([]);
  });

  it('close() returns while a request hangs, and the client sees the connection drop', async () => {
    const own = await FakeLlmServer.start();
    const m = createLanguageModel('openai', 'hang', { apiKey: KEY }, { openai: own.baseUrls.openai });
    const pending = generateText({ ...CALL, model: m, prompt: 'Hi' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    await own.waitForRequests(1, 'openai', 'chat');
    await own.close();
    expect(classifyProviderError('openai', await pending).reason).toBe('UNAVAILABLE');
  });
});
