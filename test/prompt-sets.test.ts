/**
 * Prompt sets through GraphQL on PostgreSQL (issue 18, item 1): CRUD, paging,
 * ownership, JSONL and CSV imports (all-or-nothing, errors naming the line),
 * the 5 MB and 1,000-item bounds. Every test signs up its own users.
 */
import { withClient } from './helpers/factories';
import { createTestApp, type TestApp } from './helpers/test-app';

const SET_FIELDS = `id name description itemCount updatedAt defaultAssertions { kind value weight }`;
const ITEM_FIELDS = `id position prompt system reference tags assertions { kind value weight }`;
const CREATE = `mutation($input: PromptSetInput!) { createPromptSet(input: $input) { ${SET_FIELDS} items { nodes { ${ITEM_FIELDS} } } } }`;
const GET = `query($id: ID!, $first: Int, $after: String) {
  promptSet(id: $id) { ${SET_FIELDS} items(first: $first, after: $after) { nodes { ${ITEM_FIELDS} } pageInfo { hasNextPage endCursor } } }
}`;
const LIST = `query($first: Int, $after: String) {
  promptSets(first: $first, after: $after) { totalCount nodes { id name } pageInfo { hasNextPage endCursor } }
}`;
const IMPORT = `mutation($id: ID!, $format: ImportFormat!, $data: String!) {
  importPromptItems(promptSetId: $id, format: $format, data: $data) { id itemCount }
}`;
const UPDATE_ITEM = `mutation($id: ID!, $input: PromptItemInput!) { updatePromptItem(id: $id, input: $input) { ${ITEM_FIELDS} } }`;
const DELETE_ITEM = `mutation($id: ID!) { deletePromptItem(id: $id) }`;
const DELETE_SET = `mutation($id: ID!) { deletePromptSet(id: $id) }`;

let t: TestApp;
beforeAll(async () => {
  // Defaults: a signed-in caller's body may reach MAX_SIGNED_IN_BODY_BYTES (8 MB), so a 6 MB import meets the service's 5 MB check.
  t = await createTestApp();
});
afterAll(() => t.close());

async function createSet(token: string, input: Record<string, unknown>): Promise<any> {
  const res = await t.gql(CREATE, { input }, token);
  expect(res.errors).toBeUndefined();
  return res.data.createPromptSet;
}

async function getSet(token: string, id: string, first?: number, after?: string): Promise<any> {
  const res = await t.gql(GET, { id, first, after }, token);
  expect(res.errors).toBeUndefined();
  return res.data.promptSet;
}

/** The rows in the database: what "nothing written" is checked against. */
async function itemRows(setId: string): Promise<Array<{ position: number; prompt: string }>> {
  return withClient(
    t.db.url,
    async (c) => (await c.query('select position, prompt from prompt_items where prompt_set_id = $1 order by position', [setId])).rows,
  );
}

function expectError(res: { errors?: Array<{ message: string; extensions?: Record<string, any> }> }, code: string, message?: RegExp) {
  expect(res.errors).toHaveLength(1);
  expect(res.errors![0]!.extensions!.code).toBe(code);
  if (message) expect(res.errors![0]!.message).toMatch(message);
  return res.errors![0]!;
}

describe('CRUD', () => {
  it('creates a set with items and default assertions, reads it back, edits and deletes items, deletes the set', async () => {
    const { token } = await t.signUp('ps-crud');
    const created = await createSet(token, {
      name: '  Capitals  ',
      description: 'Geography\nquestions',
      defaultAssertions: [{ kind: 'MAX_LATENCY_MS', value: '5000' }],
      items: [
        {
          prompt: 'Capital of France?',
          reference: 'Paris',
          assertions: [{ kind: 'EQUALS_REFERENCE', weight: 2 }],
          tags: ['geo', 'easy', 'geo'],
        },
        { prompt: 'Capital of Peru?', system: 'Answer in one word.', tags: ['a,b "quoted"'] },
      ],
    });
    expect(created).toMatchObject({
      name: 'Capitals',
      description: 'Geography\nquestions',
      itemCount: 2,
      defaultAssertions: [{ kind: 'MAX_LATENCY_MS', value: '5000', weight: 1 }],
    });
    expect(created.items.nodes).toEqual([
      expect.objectContaining({
        position: 1,
        prompt: 'Capital of France?',
        reference: 'Paris',
        system: null,
        tags: ['geo', 'easy'],
        assertions: [{ kind: 'EQUALS_REFERENCE', value: null, weight: 2 }],
      }),
      expect.objectContaining({
        position: 2,
        prompt: 'Capital of Peru?',
        system: 'Answer in one word.',
        tags: ['a,b "quoted"'],
        assertions: [],
      }),
    ]);

    const [first, second] = created.items.nodes;
    const updated = await t.gql(
      UPDATE_ITEM,
      { id: second.id, input: { prompt: 'Capital of Chile?', reference: 'Santiago', tags: ['geo'] } },
      token,
    );
    expect(updated.errors).toBeUndefined();
    // The whole item is replaced: the system prompt it no longer sends is cleared; the position stays.
    expect(updated.data.updatePromptItem).toMatchObject({
      id: second.id,
      position: 2,
      prompt: 'Capital of Chile?',
      system: null,
      reference: 'Santiago',
    });

    expect((await t.gql(DELETE_ITEM, { id: first.id }, token)).data.deletePromptItem).toBe(true);
    const after = await getSet(token, created.id);
    expect(after.itemCount).toBe(1);
    expect(after.items.nodes.map((i: any) => i.prompt)).toEqual(['Capital of Chile?']);
    expect(Date.parse(after.updatedAt)).toBeGreaterThan(Date.parse(created.updatedAt));

    expectError(await t.gql(DELETE_ITEM, { id: first.id }, token), 'NOT_FOUND');
    expect((await t.gql(DELETE_SET, { id: created.id }, token)).data.deletePromptSet).toBe(true);
    expect((await t.gql(GET, { id: created.id }, token)).data.promptSet).toBeNull();
    expect(await itemRows(created.id)).toEqual([]);
    expectError(await t.gql(DELETE_SET, { id: created.id }, token), 'NOT_FOUND');
  });

  it('refuses bad input naming the item and the field, writing nothing', async () => {
    const { token, userId } = await t.signUp('ps-bad');
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ name: '   ' }, /name: must not be empty/],
      [{ name: 'x'.repeat(201) }, /name: must be at most 200 characters/],
      [{ name: 'two\nlines' }, /name: holds the control character U\+000A/],
      [{ name: 'ok', items: [{ prompt: 'fine' }, { prompt: ' ' }] }, /^items\[1\], prompt: must not be empty/],
      [{ name: 'ok', items: [{ prompt: 'bell\u0007' }] }, /^items\[0\], prompt: holds the control character U\+0007/],
      [{ name: 'ok', items: [{ prompt: 'p', tags: ['a|b'] }] }, /^items\[0\], tags\[0\]: must not contain "\|" or ";"/],
      [
        { name: 'ok', items: [{ prompt: 'p', assertions: [{ kind: 'EQUALS_REFERENCE' }] }] },
        /^items\[0\], reference: EQUALS_REFERENCE compares/,
      ],
      [
        { name: 'ok', defaultAssertions: [{ kind: 'EQUALS_REFERENCE' }], items: [{ prompt: 'p', reference: 'r' }, { prompt: 'q' }] },
        /^items\[1\], reference:/,
      ],
      [{ name: 'ok', items: [{ prompt: 'p'.repeat(32_001) }] }, /^items\[0\], prompt: must be at most 32000 characters/],
    ];
    for (const [input, message] of cases) {
      const error = expectError(await t.gql(CREATE, { input }, token), 'BAD_USER_INPUT', message);
      expect(error.extensions!.field).toBeDefined();
    }
    const count = await withClient(
      t.db.url,
      async (c) => (await c.query('select count(*)::int as n from prompt_sets where owner_id = $1', [userId])).rows[0].n,
    );
    expect(count).toBe(0);
  });
});

describe('paging', () => {
  it('pages sets newest first and items in position order, without skipping or repeating while items are added', async () => {
    const { token } = await t.signUp('ps-pages');
    const ids: string[] = [];
    for (const name of ['one', 'two', 'three']) ids.push((await createSet(token, { name })).id);
    const firstPage = (await t.gql(LIST, { first: 2 }, token)).data.promptSets;
    expect(firstPage.totalCount).toBe(3);
    expect(firstPage.nodes.map((s: any) => s.name)).toEqual(['three', 'two']);
    const secondPage = (await t.gql(LIST, { first: 2, after: firstPage.pageInfo.endCursor }, token)).data.promptSets;
    expect(secondPage.nodes.map((s: any) => s.name)).toEqual(['one']);
    expect(secondPage.pageInfo.hasNextPage).toBe(false);

    const items = Array.from({ length: 7 }, (_, i) => ({ prompt: `p${i + 1}` }));
    const set = await createSet(token, { name: 'items', items });
    const seen: string[] = [];
    let after: string | undefined;
    let round = 0;
    do {
      const page = (await getSet(token, set.id, 3, after)).items;
      seen.push(...page.nodes.map((i: any) => i.prompt));
      after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : undefined;
      // Appended items come after the cursor, so they show on later pages and never shift earlier ones.
      if (round++ === 0)
        expect((await t.gql(IMPORT, { id: set.id, format: 'JSONL', data: '{"prompt":"p8"}' }, token)).errors).toBeUndefined();
    } while (after);
    expect(seen).toEqual(['p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8']);
  });

  it('refuses a cursor of another list, a tampered one, and a page size over 100', async () => {
    const { token } = await t.signUp('ps-cursor');
    const a = await createSet(token, { name: 'a', items: [{ prompt: '1' }, { prompt: '2' }] });
    const b = await createSet(token, { name: 'b', items: [{ prompt: '1' }, { prompt: '2' }] });
    const cursorOfA = (await getSet(token, a.id, 1)).items.pageInfo.endCursor;
    expectError(await t.gql(GET, { id: b.id, first: 1, after: cursorOfA }, token), 'BAD_USER_INPUT', /Invalid cursor/);
    expectError(await t.gql(GET, { id: a.id, first: 1, after: `${cursorOfA}x` }, token), 'BAD_USER_INPUT', /Invalid cursor/);
    const listCursor = (await t.gql(LIST, { first: 1 }, token)).data.promptSets.pageInfo.endCursor;
    expectError(await t.gql(GET, { id: a.id, first: 1, after: listCursor }, token), 'BAD_USER_INPUT', /Invalid cursor/);
    expectError(await t.gql(GET, { id: a.id, first: 101 }, token), 'BAD_USER_INPUT', /first must be between 1 and 100/);
  });

  it('reads a page of sets with their items and counts in a fixed number of statements', async () => {
    const { token } = await t.signUp('ps-n1');
    for (let i = 0; i < 5; i++) await createSet(token, { name: `s${i}`, items: [{ prompt: 'a' }, { prompt: 'b' }] });
    const query = `{ promptSets(first: 5) { nodes { id itemCount items(first: 1) { nodes { prompt } } } } }`;
    const { count, result } = await t.countStatements(() => t.gql(query, {}, token, { 'cache-control': 'no-cache' }));
    expect(result.errors).toBeUndefined();
    expect(result.data.promptSets.nodes).toHaveLength(5);
    // The page, one batch of counts, one LATERAL batch of item pages: never one statement per set.
    expect(count).toBeLessThanOrEqual(3);
  });
});

describe('ownership', () => {
  it("answers another user's set and items as missing and changes nothing", async () => {
    const owner = await t.signUp('ps-owner');
    const other = await t.signUp('ps-other');
    const set = await createSet(owner.token, { name: 'mine', items: [{ prompt: 'secret prompt' }] });
    const itemId = set.items.nodes[0].id;

    expect((await t.gql(GET, { id: set.id }, other.token)).data.promptSet).toBeNull();
    expect((await t.gql(LIST, {}, other.token)).data.promptSets).toMatchObject({ totalCount: 0, nodes: [] });
    expectError(await t.gql(UPDATE_ITEM, { id: itemId, input: { prompt: 'taken over' } }, other.token), 'NOT_FOUND');
    expectError(await t.gql(DELETE_ITEM, { id: itemId }, other.token), 'NOT_FOUND');
    expectError(await t.gql(IMPORT, { id: set.id, format: 'JSONL', data: '{"prompt":"injected"}' }, other.token), 'NOT_FOUND');
    expectError(await t.gql(DELETE_SET, { id: set.id }, other.token), 'NOT_FOUND');
    expectError(await t.gql(DELETE_SET, { id: 'not-a-uuid' }, other.token), 'NOT_FOUND');

    const mine = await getSet(owner.token, set.id);
    expect(mine).toMatchObject({ name: 'mine', itemCount: 1, updatedAt: set.updatedAt });
    expect(await itemRows(set.id)).toEqual([{ position: 1, prompt: 'secret prompt' }]);
  });

  it('answers UNAUTHENTICATED without a token', async () => {
    expectError(await t.gql(LIST, {}), 'UNAUTHENTICATED');
  });
});

describe('import', () => {
  it('imports JSONL: one object per line, blank lines skipped, appended after the existing items', async () => {
    const { token } = await t.signUp('ps-jsonl');
    const set = await createSet(token, { name: 'jsonl', items: [{ prompt: 'existing' }] });
    const data = [
      JSON.stringify({ prompt: 'What is 2+2?', reference: '4', assertions: [{ kind: 'EQUALS_REFERENCE' }], tags: ['math'] }),
      '',
      JSON.stringify({
        prompt: 'Give JSON',
        system: 'You answer in JSON.',
        assertions: [{ kind: 'JSON_SCHEMA', value: '{"type":"object"}', weight: 3 }],
      }),
      '',
    ].join('\r\n');
    const res = await t.gql(IMPORT, { id: set.id, format: 'JSONL', data }, token);
    expect(res.errors).toBeUndefined();
    expect(res.data.importPromptItems.itemCount).toBe(3);
    const items = (await getSet(token, set.id)).items.nodes;
    expect(items.map((i: any) => [i.position, i.prompt])).toEqual([
      [1, 'existing'],
      [2, 'What is 2+2?'],
      [3, 'Give JSON'],
    ]);
    expect(items[2]).toMatchObject({
      system: 'You answer in JSON.',
      assertions: [{ kind: 'JSON_SCHEMA', value: '{"type":"object"}', weight: 3 }],
    });
  });

  it('imports CSV: a header in any order, quoted fields across lines, tags split on | or ;, assertions as JSON', async () => {
    const { token } = await t.signUp('ps-csv');
    const set = await createSet(token, { name: 'csv' });
    const data = [
      'tags,prompt,reference,assertions,system',
      'geo|easy,"Capital of France?",Paris,"[{""kind"":""CONTAINS"",""value"":""Paris""}]",',
      'geo; hard,"A prompt with, a comma',
      'and a second line",,,Be brief.',
      ',"Say ""hi""",hi,,',
    ].join('\n');
    const res = await t.gql(IMPORT, { id: set.id, format: 'CSV', data: `\ufeff${data}\n` }, token);
    expect(res.errors).toBeUndefined();
    const items = (await getSet(token, set.id)).items.nodes;
    expect(items).toEqual([
      expect.objectContaining({
        position: 1,
        prompt: 'Capital of France?',
        reference: 'Paris',
        system: null,
        tags: ['geo', 'easy'],
        assertions: [{ kind: 'CONTAINS', value: 'Paris', weight: 1 }],
      }),
      expect.objectContaining({
        position: 2,
        prompt: 'A prompt with, a comma\nand a second line',
        reference: null,
        system: 'Be brief.',
        tags: ['geo', 'hard'],
      }),
      expect.objectContaining({ position: 3, prompt: 'Say "hi"', reference: 'hi', tags: [], assertions: [] }),
    ]);
  });

  it.each([
    ['CSV', 'prompt,reference\nfine,ok\nalso fine,ok,extra\n', 3, /^line 3: malformed CSV: Invalid Record Length/],
    ['CSV', 'prompt,reference\nfine,ok\n"unclosed,ok\n', 3, /^line 3: malformed CSV: Quote Not Closed/],
    ['CSV', 'prompt,answer\nfine,ok\n', 1, /^line 1, column 2: unknown column "answer"/],
    ['CSV', 'prompt,assertions\nfine,\nx,"[{""kind"":""CONTAINS""}"\n', 3, /^line 3, assertions: not valid JSON/],
    ['CSV', 'prompt\r\na\r\n"multi\r\nline"\r\n\r\n"\u0007"\r\n', 6, /^line 6, prompt: holds the control character U\+0007/],
    ['CSV', '\ufeffprompt\nok\n"é\u0007"\n', 3, /^line 3, prompt: holds the control character U\+0007/],
    ['JSONL', '{"prompt":"a"}\n{"prompt":"b",}\n', 2, /^line 2: not valid JSON/],
    [
      'JSONL',
      '{"prompt":"a"}\n\n{"prompt":"b","assertions":[{"kind":"CONTAINZ","value":"x"}]}',
      3,
      /^line 3, assertions\[0\]\.kind: must be equal to one of the allowed values/,
    ],
    ['JSONL', '{"prompt":"a"}\n{"promt":"b"}', 2, /^line 2, prompt: must have required property 'prompt'/],
    ['JSONL', '{"prompt":"a","colour":"red"}', 1, /^line 1: unknown field "colour"/],
    [
      'JSONL',
      '{"prompt":"a"}\n{"prompt":"b","assertions":[{"kind":"REGEX","value":"(a+)+$"}]}',
      2,
      /^line 2, assertions\[0\]: the pattern "\(a\+\)\+\$" can backtrack catastrophically/,
    ],
  ])('refuses a bad %s file naming the line, writing nothing (%#)', async (format, data, line, message) => {
    const { token } = await t.signUp('ps-badfile');
    const set = await createSet(token, { name: 'untouched', items: [{ prompt: 'kept' }] });
    const error = expectError(await t.gql(IMPORT, { id: set.id, format, data }, token), 'BAD_USER_INPUT', message);
    expect(error.extensions!.line).toBe(line);
    // All or nothing: the good lines before the bad one were not written either.
    expect(await itemRows(set.id)).toEqual([{ position: 1, prompt: 'kept' }]);
    expect((await getSet(token, set.id)).updatedAt).toBe(set.updatedAt);
  });

  it('refuses an import over 5 MB, writing nothing', async () => {
    const { token } = await t.signUp('ps-big');
    const set = await createSet(token, { name: 'big' });
    const line = `${JSON.stringify({ prompt: 'x'.repeat(6_000) })}\n`;
    const data = line.repeat(Math.ceil((6 * 1024 * 1024) / line.length));
    const error = expectError(
      await t.gql(IMPORT, { id: set.id, format: 'JSONL', data }, token),
      'BAD_USER_INPUT',
      /data is 6\.0 MB; an import takes at most 5\.0 MB/,
    );
    expect(error.extensions!.field).toBe('data');
    expect(await itemRows(set.id)).toEqual([]);
  });

  it("refuses a body over the caller's limit (413): MAX_BODY_BYTES anonymous, MAX_SIGNED_IN_BODY_BYTES signed in", async () => {
    const small = await createTestApp({ env: { MAX_BODY_BYTES: String(64 * 1024), MAX_SIGNED_IN_BODY_BYTES: String(256 * 1024) } });
    try {
      const { token } = await small.signUp('ps-413');
      const body = (kb: number) => ({ id: '00000000-0000-4000-8000-000000000000', format: 'JSONL', data: 'x'.repeat(kb * 1024) });
      const anonymous = await small.gql(IMPORT, body(128));
      expect(anonymous.status).toBe(413);
      expect(anonymous.errors![0]!.extensions).toEqual({ code: 'BAD_USER_INPUT', maxBodyBytes: 64 * 1024 });
      // Signed in, the same body is read and answered by the service (its own refusal of the data, not the body's size).
      const signedIn = await small.gql(IMPORT, body(128), token);
      expect(signedIn.status).toBe(200);
      expect(signedIn.errors![0]!.extensions!.maxBodyBytes).toBeUndefined();
      const tooLarge = await small.gql(IMPORT, body(512), token);
      expect(tooLarge.status).toBe(413);
      expect(tooLarge.errors![0]!.extensions).toEqual({ code: 'BAD_USER_INPUT', maxBodyBytes: 256 * 1024 });
    } finally {
      await small.close();
    }
  });
});

describe('at most 1,000 items per set', () => {
  const items = (n: number, from = 1) => Array.from({ length: n }, (_, i) => ({ prompt: `p${from + i}` }));
  const jsonl = (n: number) =>
    items(n)
      .map((i) => JSON.stringify(i))
      .join('\n');

  it('creates a set of exactly 1,000 items and refuses 1,001', async () => {
    const { token, userId } = await t.signUp('ps-1000');
    expectError(
      await t.gql(CREATE, { input: { name: 'too many', items: items(1001) } }, token),
      'BAD_USER_INPUT',
      /items: a set holds at most 1,000 items, got 1,001/,
    );
    const none = await withClient(
      t.db.url,
      async (c) => (await c.query('select count(*)::int as n from prompt_sets where owner_id = $1', [userId])).rows[0].n,
    );
    expect(none).toBe(0);
    const full = await createSet(token, { name: 'full', items: items(1000) });
    expect(full.itemCount).toBe(1000);
    expectError(
      await t.gql(IMPORT, { id: full.id, format: 'JSONL', data: jsonl(1) }, token),
      'BAD_USER_INPUT',
      /the set has 1,000 items and the file 1: a set holds at most 1,000 items; nothing was imported/,
    );
    expect((await itemRows(full.id)).length).toBe(1000);
  });

  it('refuses an import that would pass 1,000, writing nothing', async () => {
    const { token } = await t.signUp('ps-overflow');
    const set = await createSet(token, { name: 'almost', items: items(999) });
    expectError(
      await t.gql(IMPORT, { id: set.id, format: 'JSONL', data: jsonl(2) }, token),
      'BAD_USER_INPUT',
      /the set has 999 items and the file 2/,
    );
    expectError(
      await t.gql(
        IMPORT,
        {
          id: set.id,
          format: 'CSV',
          data: `prompt\n${items(1001)
            .map((i) => i.prompt)
            .join('\n')}`,
        },
        token,
      ),
      'BAD_USER_INPUT',
      /the file has more than 1,000 items/,
    );
    expect((await itemRows(set.id)).length).toBe(999);
    expect((await t.gql(IMPORT, { id: set.id, format: 'JSONL', data: jsonl(1) }, token)).data.importPromptItems.itemCount).toBe(1000);
  });

  it('holds under concurrent imports: the set never passes 1,000', async () => {
    const { token } = await t.signUp('ps-race');
    const set = await createSet(token, { name: 'race', items: items(990) });
    const results = await Promise.all(
      Array.from({ length: 4 }, () => t.gql(IMPORT, { id: set.id, format: 'JSONL', data: jsonl(5) }, token)),
    );
    expect(results.filter((r) => !r.errors)).toHaveLength(2);
    expect(results.filter((r) => r.errors?.[0]?.extensions?.code === 'BAD_USER_INPUT')).toHaveLength(2);
    const rows = await itemRows(set.id);
    expect(rows.length).toBe(1000);
    expect(new Set(rows.map((r) => r.position)).size).toBe(1000);
  });
});

describe('what an eval run reads', () => {
  it("itemsToRun: items in position order, the set's defaults before each item's own assertions; a foreign set NOT_FOUND", async () => {
    const owner = await t.signUp('ps-run');
    const other = await t.signUp('ps-run-other');
    const set = await createSet(owner.token, {
      name: 'run me',
      defaultAssertions: [{ kind: 'MAX_LATENCY_MS', value: '100' }],
      items: [{ prompt: 'first', assertions: [{ kind: 'CONTAINS', value: 'x' }] }, { prompt: 'second' }, { prompt: 'third' }],
    });
    await t.gql(DELETE_ITEM, { id: set.items.nodes[1].id }, owner.token);
    const service = t.app.services.promptSets;
    const run = await service.itemsToRun(t.app.orm.em.fork(), { userId: owner.userId, role: 'USER' } as never, set.id);
    expect(run.set).toMatchObject({ id: set.id, name: 'run me' });
    expect(run.items.map((i) => [i.position, i.prompt, i.effectiveAssertions.map((a) => a.kind)])).toEqual([
      [1, 'first', ['MAX_LATENCY_MS', 'CONTAINS']],
      [3, 'third', ['MAX_LATENCY_MS']],
    ]);
    await expect(service.itemsToRun(t.app.orm.em.fork(), { userId: other.userId, role: 'USER' } as never, set.id)).rejects.toMatchObject({
      extensions: { code: 'NOT_FOUND' },
    });
  });
});
