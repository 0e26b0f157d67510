import { AppError } from '../src/errors';
import { CATALOG_DATE, MODEL_CATALOG, costUsd, findCatalogEntry, type CatalogEntry } from '../src/llm/catalog';
import {
  InvalidModelIdError,
  PROVIDER_NAMES,
  formatModelId,
  parseModelId,
  toProvider,
  toProviderName,
  type Provider,
} from '../src/llm/model-id';

describe('parseModelId', () => {
  it('parses provider:name with the default label', () => {
    expect(parseModelId('openai:gpt-4o')).toEqual({
      provider: 'openai',
      name: 'gpt-4o',
      label: 'default',
      id: 'openai:gpt-4o',
    });
  });

  it('takes the label after the last @', () => {
    expect(parseModelId('anthropic:claude-sonnet-4-5@work')).toEqual({
      provider: 'anthropic',
      name: 'claude-sonnet-4-5',
      label: 'work',
      id: 'anthropic:claude-sonnet-4-5',
    });
    expect(parseModelId('openai_compatible:org@model@lab')).toMatchObject({ name: 'org@model', label: 'lab' });
  });

  it('splits on the first colon only, so Ollama tags survive', () => {
    expect(parseModelId('openai_compatible:llama3.1:8b@ollama')).toEqual({
      provider: 'openai_compatible',
      name: 'llama3.1:8b',
      label: 'ollama',
      id: 'openai_compatible:llama3.1:8b',
    });
    expect(parseModelId('openai_compatible:qwen2.5:7b-instruct-q4_K_M')).toMatchObject({
      name: 'qwen2.5:7b-instruct-q4_K_M',
      label: 'default',
    });
  });

  it('accepts every listed provider, and exactly 200 characters', () => {
    for (const p of PROVIDER_NAMES) expect(parseModelId(`${p}:m`).provider).toBe(p);
    const prefix = 'openai:';
    expect(parseModelId(prefix + 'x'.repeat(200 - prefix.length)).name).toHaveLength(200 - prefix.length);
  });

  it.each([
    ['unknown provider', 'cohere:command-r', /unknown provider/],
    ['provider not lower case', 'OpenAI:gpt-4o', /unknown provider/],
    ['no colon', 'gpt-4o', /missing ':'/],
    ['empty name', 'openai:', /empty model name/],
    ['empty name before label', 'openai:@work', /empty model name/],
    ['empty label', 'openai:gpt-4o@', /empty label/],
    ['space', 'openai:gpt 4o', /whitespace/],
    ['trailing newline', 'openai:gpt-4o\n', /whitespace/],
    ['tab in label', 'openai:gpt-4o@a\tb', /whitespace/],
    ['too long', 'openai:' + 'x'.repeat(194), /longer than 200/],
    ['empty string', '', /missing ':'/],
  ])('rejects %s', (_case, raw, reason) => {
    let caught: unknown;
    try {
      parseModelId(raw);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(InvalidModelIdError);
    const err = caught as InvalidModelIdError;
    expect(err.message).toMatch(reason);
    expect(err.message).toContain("expected 'provider:name[@label]'");
    expect(err.message).toContain(JSON.stringify(raw).slice(0, 60)); // the input, JSON-quoted
    expect(err).toBeInstanceOf(AppError);
    expect(err.extensions.code).toBe('BAD_USER_INPUT');
  });

  it('truncates a huge input in the message', () => {
    expect(() => parseModelId('openai:' + 'x'.repeat(10_000))).toThrow(/x…"/);
  });
});

describe('formatModelId', () => {
  it('joins provider and name, and round-trips through parseModelId', () => {
    expect(formatModelId('openai_compatible', 'llama3.1:8b')).toBe('openai_compatible:llama3.1:8b');
    const parsed = parseModelId(formatModelId('google', 'gemini-2.5-pro'));
    expect(parsed).toMatchObject({ provider: 'google', name: 'gemini-2.5-pro', label: 'default' });
  });
});

describe('GraphQL provider enum', () => {
  it('maps every provider both ways', () => {
    expect(PROVIDER_NAMES.map(toProvider)).toEqual(['OPENAI', 'ANTHROPIC', 'GOOGLE', 'MISTRAL', 'AZURE', 'OPENAI_COMPATIBLE']);
    for (const p of PROVIDER_NAMES) expect(toProviderName(toProvider(p))).toBe(p);
  });

  it('rejects values outside the enum at run time', () => {
    expect(() => toProviderName('COHERE' as Provider)).toThrow(RangeError);
    expect(() => toProviderName('openai' as Provider)).toThrow(RangeError);
  });
});

describe('catalog', () => {
  it('has unique, well-formed entries for the requested models', () => {
    expect(CATALOG_DATE).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    const ids = MODEL_CATALOG.map((e) => formatModelId(e.provider, e.name));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(parseModelId(id).id).toBe(id);
    for (const required of [
      'openai:gpt-4o',
      'openai:gpt-4o-mini',
      'openai:gpt-4.1',
      'openai:gpt-4.1-mini',
      'openai:o3-mini',
      'anthropic:claude-sonnet-4-5',
      'anthropic:claude-opus-4-1',
      'anthropic:claude-haiku-4-5',
      'anthropic:claude-3-5-haiku-latest',
      'google:gemini-2.5-pro',
      'google:gemini-2.5-flash',
      'google:gemini-2.0-flash',
      'mistral:mistral-large-latest',
      'mistral:mistral-small-latest',
      'mistral:codestral-latest',
    ]) {
      expect(ids).toContain(required);
    }
    for (const e of MODEL_CATALOG) {
      for (const n of [e.contextWindow, e.inputCostPerMTok, e.outputCostPerMTok]) {
        if (n !== null) expect(n).toBeGreaterThan(0);
      }
    }
    expect(Object.isFrozen(MODEL_CATALOG)).toBe(true);
  });

  it('finds entries by exact provider and name', () => {
    expect(findCatalogEntry('openai', 'gpt-4o')?.displayName).toBe('GPT-4o');
    expect(findCatalogEntry('anthropic', 'gpt-4o')).toBeUndefined();
    expect(findCatalogEntry('openai', 'GPT-4o')).toBeUndefined();
    expect(findCatalogEntry('azure', 'gpt-4o')).toBeUndefined();
  });
});

describe('costUsd', () => {
  const entry: CatalogEntry = {
    provider: 'openai',
    name: 'test',
    displayName: 'Test',
    contextWindow: 1000,
    inputCostPerMTok: 2.5,
    outputCostPerMTok: 10,
  };

  it('charges per million tokens (hand computed)', () => {
    // 1 000 000 · $2.50/M + 0 = $2.50; 1 200 · 2.5e-6 + 350 · 10e-6 = 0.003 + 0.0035 = $0.0065
    expect(costUsd(entry, 1_000_000, 0)).toBeCloseTo(2.5, 12);
    expect(costUsd(entry, 1_200, 350)).toBeCloseTo(0.0065, 12);
    expect(costUsd(entry, 0, 0)).toBe(0);
  });

  it('uses the catalog prices: gpt-4o-mini, 10k in + 2k out = $0.0027', () => {
    // 10 000 · 0.15e-6 + 2 000 · 0.60e-6 = 0.0015 + 0.0012
    expect(costUsd(findCatalogEntry('openai', 'gpt-4o-mini'), 10_000, 2_000)).toBeCloseTo(0.0027, 12);
  });

  it('is null when the price or the usage is unknown', () => {
    expect(costUsd(undefined, 10, 10)).toBeNull();
    expect(costUsd({ ...entry, inputCostPerMTok: null }, 10, 10)).toBeNull();
    expect(costUsd({ ...entry, outputCostPerMTok: null }, 10, 10)).toBeNull();
    expect(costUsd(entry)).toBeNull();
    expect(costUsd(entry, 10, null)).toBeNull();
    expect(costUsd(entry, undefined, 10)).toBeNull();
    expect(costUsd(entry, -1, 10)).toBeNull();
    expect(costUsd(entry, Number.NaN, 10)).toBeNull();
  });
});
