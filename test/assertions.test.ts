/**
 * Assertions (issue 18, item 2): every kind scored by the pure evaluator, with
 * its edge cases, and every kind's rules enforced when a set is saved through
 * GraphQL (each refusal naming the item and what to change).
 */
import { AssertionKind, type AssertionSpec, checkAssertions } from '../src/modules/prompt-set/assertions';
import { checkPattern, testBounded } from '../src/modules/prompt-set/bounded-regex';
import { evaluateAssertions, type RubricJudge } from '../src/modules/prompt-set/evaluate-assertions';
import { createTestApp, type TestApp } from './helpers/test-app';

const a = (kind: keyof typeof AssertionKind, value: string | null = null, weight = 1): AssertionSpec => ({
  kind: AssertionKind[kind],
  value,
  weight,
});

async function one(
  assertion: AssertionSpec,
  content: string,
  extra: { latencyMs?: number | null; costUsd?: number | null; reference?: string | null } = {},
  judge?: RubricJudge,
) {
  const { results } = await evaluateAssertions(
    [assertion],
    { content, latencyMs: extra.latencyMs, costUsd: extra.costUsd },
    { reference: extra.reference },
    judge,
  );
  return results[0]!;
}

describe('evaluateAssertions', () => {
  it('CONTAINS and NOT_CONTAINS: exact, case-sensitive substrings', async () => {
    expect(await one(a('CONTAINS', 'Paris'), 'The capital is Paris.')).toMatchObject({ kind: 'CONTAINS', passed: true, outcome: 'pass' });
    expect(await one(a('CONTAINS', 'Paris'), 'the capital is paris')).toMatchObject({
      passed: false,
      outcome: 'fail',
      reason: 'does not contain "Paris"',
    });
    expect(await one(a('NOT_CONTAINS', 'sorry'), 'Here it is')).toMatchObject({ passed: true });
    expect(await one(a('NOT_CONTAINS', 'sorry'), 'I am sorry')).toMatchObject({ passed: false, reason: 'contains "sorry" at character 5' });
  });

  it('REGEX: plain and /…/flags patterns', async () => {
    expect(await one(a('REGEX', '^\\d{4}-\\d{2}-\\d{2}$'), '2026-12-07')).toMatchObject({ passed: true });
    expect(await one(a('REGEX', '^\\d{4}-\\d{2}-\\d{2}$'), 'on 2026-12-07')).toMatchObject({ passed: false, outcome: 'fail' });
    expect(await one(a('REGEX', '/^yes|no$/i'), 'YES')).toMatchObject({ passed: true });
    expect(await one(a('REGEX', '^yes$'), 'YES')).toMatchObject({ passed: false });
  });

  it('REGEX runs bounded: a pattern the screen lets through still stops at the time limit, as an error outcome', async () => {
    // Star height one, so safe-regex2 accepts it, yet exponential on this input.
    const pattern = '(a|a)*$';
    expect(() => checkPattern(pattern)).not.toThrow();
    const started = Date.now();
    expect(testBounded({ source: pattern, flags: '' }, `${'a'.repeat(40)}!`, 50)).toBe('timeout');
    expect(Date.now() - started).toBeLessThan(2_000);
    const result = await one(a('REGEX', pattern), `${'a'.repeat(40)}!`);
    expect(result).toMatchObject({ passed: false, outcome: 'error', reason: expect.stringMatching(/ran longer than 100 ms/) });
  });

  it("JSON_SCHEMA's patterns run bounded too: a backtracking one stops at the time limit, as an error outcome", async () => {
    const schema = JSON.stringify({ type: 'string', pattern: '^(a|a)*$' });
    const started = Date.now();
    const result = await one(a('JSON_SCHEMA', schema), JSON.stringify(`${'a'.repeat(40)}b`));
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(result).toMatchObject({ passed: false, outcome: 'error', reason: expect.stringMatching(/ran past 100 ms/) });
  });

  it('EQUALS_REFERENCE: equal after case, Unicode and whitespace normalisation', async () => {
    const reference = 'The  Eiffel\nTower';
    expect(await one(a('EQUALS_REFERENCE'), '  the eiffel   tower\t', { reference })).toMatchObject({ passed: true });
    expect(await one(a('EQUALS_REFERENCE'), 'ＴＨＥ Eiffel Tower', { reference })).toMatchObject({ passed: true });
    expect(await one(a('EQUALS_REFERENCE'), 'The Eiffel Tower.', { reference })).toMatchObject({
      passed: false,
      outcome: 'fail',
      reason: expect.stringMatching(/differs from the reference/),
    });
    expect(await one(a('EQUALS_REFERENCE'), 'anything', { reference: null })).toMatchObject({ passed: false, outcome: 'error' });
  });

  it('JSON_VALID: the whole answer or its one fenced block; invalid JSON says why', async () => {
    expect(await one(a('JSON_VALID'), ' {"a": [1, 2]} ')).toMatchObject({ passed: true });
    expect(await one(a('JSON_VALID'), '```json\n{"a": 1}\n```')).toMatchObject({ passed: true });
    const bad = await one(a('JSON_VALID'), '{"a": 1,}');
    expect(bad).toMatchObject({ passed: false, outcome: 'fail' });
    expect(bad.reason).toMatch(/^is not valid JSON: .*(Unexpected|Expected)/);
    expect(await one(a('JSON_VALID'), 'Sure! {"a": 1}')).toMatchObject({ passed: false });
  });

  it("JSON_SCHEMA: passes a match, fails a mismatch with Ajv's message, fails invalid JSON", async () => {
    const schema = JSON.stringify({
      type: 'object',
      required: ['name', 'age'],
      properties: { name: { type: 'string' }, age: { type: 'integer', minimum: 0 } },
    });
    expect(await one(a('JSON_SCHEMA', schema), '{"name": "Ada", "age": 36}')).toMatchObject({ passed: true });
    const mismatch = await one(a('JSON_SCHEMA', schema), '{"name": "Ada", "age": -1}');
    expect(mismatch).toMatchObject({ passed: false, outcome: 'fail', reason: 'does not match the JSON Schema: /age must be >= 0' });
    const missing = await one(a('JSON_SCHEMA', schema), '{"age": 3}');
    expect(missing.reason).toBe("does not match the JSON Schema: (root) must have required property 'name'");
    expect(await one(a('JSON_SCHEMA', schema), 'not json')).toMatchObject({
      passed: false,
      reason: expect.stringMatching(/^is not valid JSON/),
    });
  });

  it('MAX_LATENCY_MS and MAX_COST_USD: at most the limit passes; a missing measurement is an error, not a pass', async () => {
    expect(await one(a('MAX_LATENCY_MS', '2000'), 'x', { latencyMs: 2000 })).toMatchObject({ passed: true });
    expect(await one(a('MAX_LATENCY_MS', '2000'), 'x', { latencyMs: 2001 })).toMatchObject({
      passed: false,
      reason: 'took 2001 ms, over the limit of 2000 ms',
    });
    expect(await one(a('MAX_LATENCY_MS', '2000'), 'x', { latencyMs: null })).toMatchObject({ passed: false, outcome: 'error' });
    expect(await one(a('MAX_COST_USD', '0.01'), 'x', { costUsd: 0.01 })).toMatchObject({ passed: true });
    expect(await one(a('MAX_COST_USD', '0.01'), 'x', { costUsd: 0.0101 })).toMatchObject({ passed: false, outcome: 'fail' });
    expect(await one(a('MAX_COST_USD', '0'), 'x', { costUsd: undefined })).toMatchObject({ passed: false, outcome: 'error' });
  });

  it('RUBRIC: the injected judge decides; refused and unparseable are their own outcomes, never a pass', async () => {
    const calls: Array<[string, string]> = [];
    const judgeSaying =
      (verdict: 'pass' | 'fail' | 'refused' | 'unparseable'): RubricJudge =>
      async (rubric, content) => {
        calls.push([rubric, content]);
        return { verdict, reason: `judge said ${verdict}` };
      };
    const rubric = a('RUBRIC', 'Polite and under 20 words');
    expect(await one(rubric, 'Hello!', {}, judgeSaying('pass'))).toMatchObject({
      passed: true,
      outcome: 'pass',
      reason: 'judge said pass',
    });
    expect(await one(rubric, 'Hello!', {}, judgeSaying('fail'))).toMatchObject({ passed: false, outcome: 'fail' });
    expect(await one(rubric, 'Hello!', {}, judgeSaying('refused'))).toMatchObject({ passed: false, outcome: 'refused' });
    expect(await one(rubric, 'Hello!', {}, judgeSaying('unparseable'))).toMatchObject({ passed: false, outcome: 'unparseable' });
    expect(calls[0]).toEqual(['Polite and under 20 words', 'Hello!']);
    expect(await one(rubric, 'Hello!')).toMatchObject({ passed: false, outcome: 'error', reason: expect.stringMatching(/no judge model/) });
    // A failed judge call is not an outcome: it propagates so the caller can retry it.
    await expect(one(rubric, 'Hello!', {}, async () => Promise.reject(new Error('judge unreachable')))).rejects.toThrow(
      'judge unreachable',
    );
  });

  it('weighs the score; the answer passes only when every assertion passes; no assertions, no verdict', async () => {
    const result = await evaluateAssertions(
      [a('CONTAINS', 'Paris', 3), a('NOT_CONTAINS', 'London', 1), a('JSON_VALID', null, 1)],
      { content: 'Paris, not London' },
      {},
    );
    expect(result.results.map((r) => [r.kind, r.passed])).toEqual([
      ['CONTAINS', true],
      ['NOT_CONTAINS', false],
      ['JSON_VALID', false],
    ]);
    expect(result.score).toBeCloseTo(3 / 5);
    expect(result.passed).toBe(false);
    expect(await evaluateAssertions([], { content: 'x' }, {})).toEqual({ results: [], passed: null, score: null });
    expect((await evaluateAssertions([a('CONTAINS', 'x', 2)], { content: 'x' }, {})).passed).toBe(true);
  });
});

describe('checkAssertions', () => {
  it('normalises what it keeps: weight defaults to 1, numbers canonical, no value for the kinds that take none', () => {
    expect(
      checkAssertions(
        [
          { kind: 'MAX_COST_USD', value: ' 0.50 ' },
          { kind: 'JSON_VALID', value: '' },
          { kind: 'RUBRIC', value: ' polite ', weight: 2.5 },
        ],
        'x',
      ),
    ).toEqual([
      { kind: 'MAX_COST_USD', value: '0.5', weight: 1 },
      { kind: 'JSON_VALID', value: null, weight: 1 },
      { kind: 'RUBRIC', value: 'polite', weight: 2.5 },
    ]);
  });

  it.each([
    [{ kind: 'REGEX', value: '(a+)+$' }, /can backtrack catastrophically .*remove the nested quantifier/],
    [{ kind: 'REGEX', value: '(x+x+)+y' }, /can backtrack catastrophically/],
    [{ kind: 'REGEX', value: '([a-z' }, /the pattern does not compile/],
    [{ kind: 'REGEX', value: '/abc/g' }, /flags "g" are not allowed/],
    [{ kind: 'JSON_SCHEMA', value: '{"type": "objekt"}' }, /Ajv cannot compile the JSON Schema/],
    [
      { kind: 'JSON_SCHEMA', value: '{"type": "object", "propertees": {}}' },
      /Ajv cannot compile the JSON Schema: strict mode: unknown keyword: "propertees"/,
    ],
    [{ kind: 'JSON_SCHEMA', value: '{type: object}' }, /the JSON Schema is not valid JSON/],
    [{ kind: 'JSON_SCHEMA', value: '{"type":"string","pattern":"^(a+)+$"}' }, /the JSON Schema's pattern is refused: .*backtrack/],
    [{ kind: 'MAX_LATENCY_MS', value: 'fast' }, /MAX_LATENCY_MS needs a number above 0/],
    [{ kind: 'MAX_LATENCY_MS', value: '0' }, /MAX_LATENCY_MS needs a number above 0/],
    [{ kind: 'MAX_COST_USD', value: '-1' }, /MAX_COST_USD needs a number 0 or more/],
    [{ kind: 'MAX_COST_USD', value: 'Infinity' }, /MAX_COST_USD needs a number/],
    [{ kind: 'RUBRIC', value: '  ' }, /RUBRIC needs a value: what the judge model grades/],
    [{ kind: 'RUBRIC' }, /RUBRIC needs a value/],
    [{ kind: 'CONTAINS', value: 'x', weight: 0 }, /weight must be a number above 0/],
    [{ kind: 'CONTAINS', value: 'x', weight: -2 }, /weight must be a number above 0/],
    [{ kind: 'JSON_VALID', value: 'x' }, /JSON_VALID takes no value/],
    [{ kind: 'SIMILAR' }, /kind must be one of CONTAINS, /],
  ])('refuses %j', (draft, message) => {
    expect(() => checkAssertions([draft], 'assertions')).toThrow(message);
    expect(() => checkAssertions([draft], 'assertions')).toThrow(/^assertions\[0\]: /);
  });
});

describe('through GraphQL', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  const CREATE = `mutation($input: PromptSetInput!) {
    createPromptSet(input: $input) { id defaultAssertions { kind value weight } items { nodes { assertions { kind value weight } } } }
  }`;
  const UPDATE = `mutation($id: ID!, $input: PromptItemInput!) { updatePromptItem(id: $id, input: $input) { prompt assertions { kind } } }`;

  it('saves every kind', async () => {
    const { token } = await t.signUp('as-all');
    const assertions = [
      { kind: 'CONTAINS', value: 'Paris' },
      { kind: 'NOT_CONTAINS', value: 'London' },
      { kind: 'REGEX', value: '/^paris/i' },
      { kind: 'EQUALS_REFERENCE', weight: 2 },
      { kind: 'JSON_VALID' },
      { kind: 'JSON_SCHEMA', value: '{"type":"string"}' },
      { kind: 'MAX_LATENCY_MS', value: '1500' },
      { kind: 'MAX_COST_USD', value: '0.002' },
      { kind: 'RUBRIC', value: 'Names the city only' },
    ];
    const res = await t.gql(
      CREATE,
      { input: { name: 'all kinds', items: [{ prompt: 'Capital of France?', reference: 'Paris', assertions }] } },
      token,
    );
    expect(res.errors).toBeUndefined();
    expect(res.data.createPromptSet.items.nodes[0].assertions).toEqual(assertions.map((x) => ({ value: null, weight: 1, ...x })));
  });

  it('refuses more than 20 distinct JSON Schemas in one save, before compiling any', async () => {
    const { token } = await t.signUp('as-schemas');
    const items = Array.from({ length: 21 }, (_, i) => ({
      prompt: `p${i}`,
      assertions: [{ kind: 'JSON_SCHEMA', value: JSON.stringify({ type: 'object', required: [`k${i}`] }) }],
    }));
    const res = await t.gql(CREATE, { input: { name: 'many schemas', items } }, token);
    expect(res.errors?.[0]).toMatchObject({
      message: expect.stringMatching(/at most 20 distinct JSON Schemas/),
      extensions: { code: 'BAD_USER_INPUT' },
    });
    const shared = items.map((item) => ({ ...item, assertions: [{ kind: 'JSON_SCHEMA', value: '{"type":"object"}' }] }));
    expect((await t.gql(CREATE, { input: { name: 'one schema', items: shared } }, token)).errors).toBeUndefined();
  });

  it('refuses a backtracking regex, naming the item, the assertion and what to change, and writes nothing', async () => {
    const { token, userId } = await t.signUp('as-regex');
    const res = await t.gql(
      CREATE,
      {
        input: {
          name: 'evil',
          items: [
            { prompt: 'ok' },
            {
              prompt: 'p',
              assertions: [
                { kind: 'CONTAINS', value: 'x' },
                { kind: 'REGEX', value: '^(\\w+\\s?)*$' },
              ],
            },
          ],
        },
      },
      token,
    );
    expect(res.errors![0]!.extensions).toEqual({ code: 'BAD_USER_INPUT', index: 1, field: 'assertions[1]' });
    expect(res.errors![0]!.message).toMatch(
      /^items\[1\], assertions\[1\]: the pattern "\^\(\\w\+\\s\?\)\*\$" can backtrack catastrophically/,
    );
    const { withClient } = await import('./helpers/factories');
    const n = await withClient(
      t.db.url,
      async (c) => (await c.query('select count(*)::int as n from prompt_sets where owner_id = $1', [userId])).rows[0].n,
    );
    expect(n).toBe(0);
  });

  it('refuses bad default assertions and bad assertions on update, changing nothing', async () => {
    const { token } = await t.signUp('as-update');
    const bad = await t.gql(CREATE, { input: { name: 'd', defaultAssertions: [{ kind: 'MAX_COST_USD', value: 'cheap' }] } }, token);
    expect(bad.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'defaultAssertions[0]' });
    expect(bad.errors![0]!.message).toMatch(
      /^input, defaultAssertions\[0\]: MAX_COST_USD needs a number 0 or more as its value, got "cheap"/,
    );

    const created = await t.gql(
      CREATE,
      { input: { name: 'd', items: [{ prompt: 'keep me', assertions: [{ kind: 'JSON_VALID' }] }] } },
      token,
    );
    const id = (
      await t.gql(`query($id: ID!) { promptSet(id: $id) { items { nodes { id } } } }`, { id: created.data.createPromptSet.id }, token)
    ).data.promptSet.items.nodes[0].id;
    const refused = await t.gql(
      UPDATE,
      { id, input: { prompt: 'changed', assertions: [{ kind: 'JSON_SCHEMA', value: '{"type":"objekt"}' }] } },
      token,
    );
    expect(refused.errors![0]!.extensions!.code).toBe('BAD_USER_INPUT');
    expect(refused.errors![0]!.message).toMatch(/assertions\[0\]: Ajv cannot compile the JSON Schema/);
    const weightless = await t.gql(
      UPDATE,
      { id, input: { prompt: 'changed', assertions: [{ kind: 'CONTAINS', value: 'x', weight: 0 }] } },
      token,
    );
    expect(weightless.errors![0]!.message).toMatch(/weight must be a number above 0/);
    const item = (
      await t.gql(
        `query($id: ID!) { promptSet(id: $id) { items { nodes { prompt assertions { kind } } } } }`,
        { id: created.data.createPromptSet.id },
        token,
      )
    ).data.promptSet.items.nodes[0];
    expect(item).toEqual({ prompt: 'keep me', assertions: [{ kind: 'JSON_VALID' }] });
  });
});
