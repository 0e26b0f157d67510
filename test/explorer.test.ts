/**
 * The local explorer: GraphiQL from node_modules at GET /graphql for browsers
 * outside production, every asset served by us (nothing remote, so it works
 * offline), its example operations valid against the schema, and GET /
 * redirecting to it. Production keeps Apollo's landing page and has no `/`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSchema, Kind, parse, validate } from 'graphql';
import { EXAMPLE_TABS } from '../src/graphql/explorer';
import { appsClosedAfterAll } from './helpers/test-app';

const app = appsClosedAfterAll();

const html = (url: string) => fetch(url, { headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' }, redirect: 'manual' });

/** Every src= / href= in a page, and every url(...) / @import in a stylesheet. */
function references(text: string): string[] {
  const attrs = [...text.matchAll(/\b(?:src|href)\s*=\s*["']([^"']+)["']/gi)].map((m) => m[1]!);
  const css = [...text.matchAll(/url\(\s*["']?([^"')]+)["']?\s*\)/gi)].map((m) => m[1]!);
  const imports = [...text.matchAll(/@import\s+["']([^"']+)["']/gi)].map((m) => m[1]!);
  return [...attrs, ...css, ...imports];
}

const isRemote = (ref: string) => /^(?:[a-z][a-z0-9+.-]*:)?\/\//i.test(ref) && !ref.startsWith('data:');

describe('the local explorer (outside production)', () => {
  it('GET / redirects to /graphql', async () => {
    const t = await app();
    const res = await html(`${t.url}/`);
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/graphql');
  });

  it('serves GraphiQL at /graphql for browsers, and every asset it references from this server', async () => {
    const t = await app();
    const page = await html(`${t.url}/graphql`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const text = await page.text();
    expect(text).toContain('LLMSelect API explorer');

    const refs = references(text);
    expect(refs.length).toBeGreaterThanOrEqual(5);
    expect(refs.filter(isRemote)).toEqual([]);
    for (const ref of refs) {
      const asset = await fetch(new URL(ref, `${t.url}/graphql`));
      expect([ref, asset.status]).toEqual([ref, 200]);
      const body = await asset.text();
      expect(body.length).toBeGreaterThan(0);
      if (ref.endsWith('.css')) {
        // Fonts and images of the stylesheet are inlined (data:) or ours, never fetched from elsewhere.
        expect(references(body).filter(isRemote)).toEqual([]);
      }
    }
    // The mount script holds the pre-filled operations.
    const mount = await (await fetch(`${t.url}/explorer/explorer.js`)).text();
    for (const name of ['mutation Login', 'query History', 'mutation Compare']) expect(mount).toContain(name);
  });

  it('still answers GraphQL over GET and JSON clients at /graphql', async () => {
    const t = await app();
    const get = await fetch(`${t.url}/graphql?query=${encodeURIComponent('{ __typename }')}`, {
      headers: { accept: 'application/json', 'apollo-require-preflight': 'true' },
    });
    expect(await get.json()).toEqual({ data: { __typename: 'Query' } });
    expect((await t.gql('{ __typename }')).data).toEqual({ __typename: 'Query' });
    expect((await fetch(`${t.url}/explorer/nope.js`)).status).toBe(404);
  });

  it('pre-fills operations that are valid against the schema, and the history query runs', async () => {
    const schema = buildSchema(readFileSync(join(__dirname, '..', 'schema', 'schema.graphql'), 'utf8'));
    for (const tab of EXAMPLE_TABS) {
      const document = parse(tab.query);
      expect(validate(schema, document).map((e) => e.message)).toEqual([]);
      // Each tab runs as it opens: its variables give every required variable of its operation.
      const variables = JSON.parse(tab.variables) as Record<string, unknown>;
      const required = document.definitions
        .flatMap((d) => (d.kind === Kind.OPERATION_DEFINITION ? (d.variableDefinitions ?? []) : []))
        .filter((v) => v.type.kind === Kind.NON_NULL_TYPE && !v.defaultValue)
        .map((v) => v.variable.name.value);
      expect(required.filter((name) => variables[name] === undefined || variables[name] === null)).toEqual([]);
    }
    const t = await app();
    const user = await t.signUp('explorer');
    await t.gql(`mutation { createConversation(title: "explored") { id } }`, {}, user.token);
    const history = EXAMPLE_TABS.find((tab) => tab.query.includes('query History'))!;
    const res = await t.gql(history.query, JSON.parse(history.variables), user.token);
    expect(res.errors).toBeUndefined();
    expect(res.data.conversations.nodes.map((c: { title: string }) => c.title)).toEqual(['explored']);
  });
});

describe('production', () => {
  it("keeps Apollo's production landing page and has no redirect or explorer assets", async () => {
    const t = await app({ NODE_ENV: 'production' });
    const page = await html(`${t.url}/graphql`);
    expect(await page.text()).not.toContain('LLMSelect API explorer');
    expect((await html(`${t.url}/`)).status).toBe(404);
    expect((await fetch(`${t.url}/explorer/graphiql.min.js`)).status).toBe(404);
  });
});
