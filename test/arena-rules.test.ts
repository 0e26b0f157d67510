/**
 * The pure rules behind blind comparisons and arena battles: category rules,
 * category parsing, the label shuffle, what an unrevealed response shows,
 * the battle-pair weighting and draw, the candidates, and ARENA_MODELS.
 */
import { ConfigError, loadConfig } from '../src/config';
import { arenaCandidates, drawPair, pairKey, pairWeights } from '../src/modules/comparison/arena.service';
import { hiddenError, presentResponse, responseLabel, shuffled } from '../src/modules/comparison/blind';
import { categorize, COMPARISON_CATEGORIES, LONG_PROMPT_CHARS, parseCategory } from '../src/modules/comparison/category';
import { ResponseKind, ResponseStatus, type ComparisonResponseView } from '../src/modules/comparison/comparison.entity';
import { Provider } from '../src/modules/api-key/api-key.entity';

describe('categorize', () => {
  it.each([
    ['Why does this throw?\n```python\nprint(1/0)\n```', 'code'],
    ['How do I reverse a linked list in Rust?', 'code'],
    ['My regex does not match dates, why', 'code'],
    ['for (let i = 0; i < n; i++) {', 'code'],
    ['import numpy as np', 'code'],
    ['Solve for x: 3x + 5 = 20', 'math'],
    ['What is the integral of sin(x)?', 'math'],
    ['What is 17 * 23?', 'math'],
    ['Simplify $\\frac{a}{b}$', 'math'],
    ['Prove that there are infinitely many primes', 'math'],
    ['Write a poem about the sea', 'creative_writing'],
    ['Tell me a short story about a dragon who is afraid of fire', 'creative_writing'],
    ['Compose song lyrics for a rainy day', 'creative_writing'],
    ['What is the capital of France?', 'other'],
    ['Hello!', 'other'],
    ['', 'other'],
  ])('%j is %s', (prompt, category) => {
    expect(categorize(prompt)).toBe(category);
  });

  it('calls a long prompt that no other rule claims long_prompt, and only above the threshold', () => {
    expect(categorize('word '.repeat(LONG_PROMPT_CHARS / 5 + 1))).toBe('long_prompt');
    expect(categorize('a'.repeat(LONG_PROMPT_CHARS))).toBe('other');
    // Code wins over length: the first rule that matches decides.
    expect(categorize(`${'context '.repeat(400)}\n\`\`\`\nx\n\`\`\``)).toBe('code');
  });

  it('is deterministic and always answers a known category', () => {
    for (const prompt of ['a', 'b c', 'Write a sonnet about integrals in Python']) {
      expect(categorize(prompt)).toBe(categorize(prompt));
      expect(COMPARISON_CATEGORIES).toContain(categorize(prompt));
    }
  });
});

describe('parseCategory', () => {
  it.each([
    ['code', 'code'],
    [' Creative Writing ', 'creative_writing'],
    ['creative-writing', 'creative_writing'],
    ['LONG_PROMPT', 'long_prompt'],
    ['coding', 'code'],
    ['Maths', 'math'],
    ['other', 'other'],
  ])('normalises %j to %s', (raw, expected) => {
    expect(parseCategory(raw)).toBe(expected);
  });

  it('treats absent or blank as "assign one"', () => {
    expect(parseCategory(undefined)).toBeNull();
    expect(parseCategory(null)).toBeNull();
    expect(parseCategory('   ')).toBeNull();
  });

  it('refuses anything else with BAD_USER_INPUT naming the known categories', () => {
    expect(() => parseCategory('cooking')).toThrow(
      /Unknown category "cooking": use one of code, math, creative_writing, long_prompt, other/,
    );
    try {
      parseCategory('x'.repeat(500));
    } catch (e) {
      expect((e as { extensions: Record<string, unknown> }).extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'category' });
      expect((e as Error).message.length).toBeLessThan(200);
    }
    expect.assertions(3);
  });
});

describe('labels and the shuffle', () => {
  it('labels positions A, B, …', () => {
    expect([0, 1, 2, 7].map(responseLabel)).toEqual(['A', 'B', 'C', 'H']);
  });

  it('shuffles with the RNG it is given (Fisher–Yates), without touching the input', () => {
    const input = ['m1', 'm2', 'm3'];
    // j = random(i + 1): i = 2 → 0 (swap 2 and 0), i = 1 → 1 (stay).
    const calls: number[] = [];
    const out = shuffled(input, (max) => {
      calls.push(max);
      return max === 3 ? 0 : max - 1;
    });
    expect(out).toEqual(['m3', 'm2', 'm1']);
    expect(calls).toEqual([3, 2]);
    expect(input).toEqual(['m1', 'm2', 'm3']);
  });

  it('reaches every order with the crypto RNG', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200 && seen.size < 2; i++) seen.add(shuffled(['x', 'y']).join());
    expect(seen).toEqual(new Set(['x,y', 'y,x']));
  });
});

describe('what an unrevealed response shows', () => {
  const row: ComparisonResponseView = {
    id: 'r1',
    createdAt: new Date(0),
    comparisonId: 'c1',
    position: 1,
    provider: Provider.OPENAI,
    model: 'openai:gpt-4o',
    keyLabel: 'work',
    status: ResponseStatus.FAILED,
    content: 'partial',
    error: 'RATE_LIMIT: Rate limit reached for gpt-4o in organization org-1',
    latencyMs: 120,
    timeToFirstTokenMs: 40,
    promptTokens: 10,
    completionTokens: 3,
    costUsd: 0.0001,
    customEndpoint: true,
    kind: ResponseKind.MODEL,
    sourceIds: [],
    settledAt: new Date(0),
  };

  it('hides identity, prices, token counts, a custom endpoint and provider texts; keeps label, status, content and timing', () => {
    expect(presentResponse(row, false)).toEqual({
      ...row,
      label: 'B',
      provider: null,
      model: null,
      keyLabel: null,
      costUsd: null,
      promptTokens: null,
      completionTokens: null,
      customEndpoint: false,
      error: 'RATE_LIMIT: the model call failed (details hidden until you vote)',
    });
    expect(presentResponse(row, true)).toEqual({ ...row, label: 'B' });
  });

  it.each([
    [null, null],
    ['Cancelled', 'Cancelled'],
    [
      'Interrupted by shutdown: the server stopped before this model answered; retry it',
      'Interrupted by shutdown: the server stopped before this model answered; retry it',
    ],
    [
      'AUTH: No anthropic API key labelled "default": add one with saveApiKey',
      'AUTH: the model call failed (details hidden until you vote)',
    ],
    ['something the provider said about claude', 'The model call failed (details hidden until you vote)'],
  ])('error %j reads %j', (error, shown) => {
    expect(hiddenError(error)).toBe(shown);
  });
});

describe('battle pairs', () => {
  it('weighs every unordered pair 1 / (1 + battles so far)', () => {
    const counts = new Map([
      [pairKey('b', 'a'), 3],
      [pairKey('a', 'c'), 1],
    ]);
    expect(pairWeights(['c', 'a', 'b', 'a'], counts)).toEqual([
      { a: 'a', b: 'b', battles: 3, weight: 0.25 },
      { a: 'a', b: 'c', battles: 1, weight: 0.5 },
      { a: 'b', b: 'c', battles: 0, weight: 1 },
    ]);
  });

  it('draws a pair in proportion to its weight', () => {
    const pairs = pairWeights(
      ['a', 'b', 'c'],
      new Map([
        [pairKey('a', 'b'), 3],
        [pairKey('a', 'c'), 1],
      ]),
    );
    // Total 1.75: [0, 0.25) → a-b, [0.25, 0.75) → a-c, [0.75, 1.75) → b-c.
    const at = (u: number) => {
      const p = drawPair(pairs, u);
      return `${p.a}-${p.b}`;
    };
    expect(at(0)).toBe('a-b');
    expect(at(0.25 / 1.75 - 1e-9)).toBe('a-b');
    expect(at(0.25 / 1.75 + 1e-9)).toBe('a-c');
    expect(at(0.75 / 1.75 + 1e-9)).toBe('b-c');
    expect(at(0.999999999)).toBe('b-c');
    // Over an even grid of u, each pair comes up in proportion to its weight.
    const tally = new Map<string, number>();
    const n = 7_000;
    for (let i = 0; i < n; i++) tally.set(at((i + 0.5) / n), (tally.get(at((i + 0.5) / n)) ?? 0) + 1);
    expect(Object.fromEntries(tally)).toEqual({ 'a-b': 1000, 'a-c': 2000, 'b-c': 4000 });
  });

  it('never pairs a model with itself', () => {
    expect(pairWeights(['a', 'a'], new Map())).toEqual([]);
    expect(() => drawPair([], 0.5)).toThrow();
  });
});

describe('arena candidates', () => {
  it("keeps the pool's models whose provider and label the user holds a key for", () => {
    const pool = ['openai:gpt-4o', 'anthropic:claude-haiku-4-5', 'openai_compatible:llama3@ollama', 'google:gemini-2.5-flash'];
    const keys = [
      { provider: 'OPENAI' as const, label: 'default' },
      { provider: 'OPENAI_COMPATIBLE' as const, label: 'ollama' },
      { provider: 'ANTHROPIC' as const, label: 'work' },
    ];
    expect(arenaCandidates(keys, pool)).toEqual(['openai:gpt-4o', 'openai_compatible:llama3@ollama']);
  });

  it("without a pool: the catalog's models of each provider the user has a key for, through its default key, else its first label", () => {
    const candidates = arenaCandidates(
      [
        { provider: 'MISTRAL', label: 'zeta' },
        { provider: 'MISTRAL', label: 'alpha' },
        { provider: 'ANTHROPIC', label: 'default' },
        { provider: 'ANTHROPIC', label: 'other' },
        { provider: 'OPENAI_COMPATIBLE', label: 'default' },
      ],
      [],
    );
    expect(candidates).toContain('anthropic:claude-sonnet-4-5');
    expect(candidates).toContain('mistral:mistral-small-latest@alpha');
    expect(
      candidates.some((c) => c.startsWith('openai:') || c.startsWith('openai_compatible:') || c.includes('@zeta') || c.includes('@other')),
    ).toBe(false);
    expect(arenaCandidates([], [])).toEqual([]);
  });
});

describe('ARENA_MODELS', () => {
  const base = { NODE_ENV: 'test', JWT_SECRET: 'x'.repeat(40), ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64') };

  it('parses a comma-separated pool of model ids into endpoint keys (none by default)', () => {
    expect(loadConfig(base).arena.models).toEqual([]);
    expect(
      loadConfig({ ...base, ARENA_MODELS: ' openai:gpt-4o , anthropic:claude-haiku-4-5@default, openai_compatible:llama3@ollama ' }).arena
        .models,
    ).toEqual(['openai:gpt-4o', 'anthropic:claude-haiku-4-5', 'openai_compatible:llama3@ollama']);
  });

  it.each([
    ['openai:gpt-4o', /ARENA_MODELS needs at least two models/],
    ['openai:gpt-4o,gpt-4o', /ARENA_MODELS: Invalid model id "gpt-4o"/],
    ['openai:gpt-4o,openai:gpt-4o@default', /ARENA_MODELS lists openai:gpt-4o twice/],
  ])('refuses %j with one line naming it', (value, message) => {
    expect(() => loadConfig({ ...base, ARENA_MODELS: value })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base, ARENA_MODELS: value })).toThrow(message);
  });
});
