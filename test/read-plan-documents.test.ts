/**
 * Random documents over the history, conversation and comparison types,
 * answered both ways: compiled (`src/graphql/compiled-read.ts`, from the read
 * plans of `src/db/read-plan.ts`) and the ordinary path (Apollo and the
 * resolvers, over HTTP, on an instance with `COMPILED_READS=off`). Whenever
 * the compiled read answers, its bytes must be the ordinary path's.
 *
 * The documents use every field of those types (fields the compiled read does
 * not accept too: the document then takes the ordinary path), aliases, named
 * and inline fragments, variables and literals, page sizes in and out of
 * bounds, cursors of the right list, of another list and forged ones, ids of
 * the reader's rows, of another user's, and not ids at all.
 *
 * READ_PLAN_SEED picks the documents (printed at the start; a failure quotes
 * it), READ_PLAN_DOCUMENTS how many (1,000 by default in `npm test`; 10,000 for a deeper run). The ordinary instance
 * runs graphql-js: graphql-jit would compile each one-off document.
 */
import { getNamedType, type GraphQLField, type GraphQLObjectType, isLeafType, isNonNullType, isObjectType } from 'graphql';
import { CursorCodec } from '../src/db/pagination';
import { PreparedStatements } from '../src/db/prepared';
import { cursorScope, MESSAGES } from '../src/db/read-plan';
import type { CompiledReadDeps } from '../src/graphql/compiled-read';
import { seedUserData, withClient } from './helpers/factories';
import { compile, compileDeps } from './helpers/read-plan';
import { createTestApp, type TestApp } from './helpers/test-app';

const SEED = process.env.READ_PLAN_SEED ? Number(process.env.READ_PLAN_SEED) : Math.floor(Math.random() * 2 ** 31);
const DOCUMENTS = Number(process.env.READ_PLAN_DOCUMENTS ?? 1000);
const CONCURRENCY = 4;

let t: TestApp;
let deps: CompiledReadDeps;
let alice: { token: string; userId: string };
let bob: { token: string; userId: string };
let empty: { token: string; userId: string };
/** Alice's rows the documents point at. */
let own: { conversations: string[]; comparisons: string[]; messageCursors: Map<string, string[]> };
let foreign: { conversation: string; comparison: string; cursor: string };

const NASTY = `"q" \\ \n \t \u0001 \u001f ünï 😀 \u2028 </script> '`;

beforeAll(async () => {
  // eslint-disable-next-line no-console
  console.log(`read-plan documents: READ_PLAN_SEED=${SEED} READ_PLAN_DOCUMENTS=${DOCUMENTS}`);
  // graphql-js: graphql-jit would compile each of the thousands of one-off documents (the bytes are the same either way).
  t = await createTestApp({ env: { COMPILED_READS: 'off', GRAPHQL_EXECUTOR: 'graphql-js' } });
  [alice, bob, empty] = [await t.signUp('alice'), await t.signUp('bob'), await t.signUp('empty')];
  await seedUserData(t.db.url, alice.userId, {
    conversations: 6,
    messagesPerConversation: 7,
    comparisons: 5,
    responsesPerComparison: 3,
    votes: false,
    linkComparisons: true,
  });
  await seedUserData(t.db.url, bob.userId, {
    conversations: 2,
    messagesPerConversation: 3,
    comparisons: 2,
    responsesPerComparison: 2,
    votes: false,
    linkComparisons: true,
  });
  await withClient(t.db.url, async (c) => {
    // Timestamps as the app writes them (milliseconds), nulls and non-nulls, text that needs escaping.
    for (const table of ['conversations', 'messages', 'comparison_results', 'comparison_responses']) {
      await c.query(`update ${table} set created_at = date_trunc('milliseconds', created_at)`);
    }
    await c.query(
      `update conversations set title = $2 where id = (select id from conversations where owner_id = $1 order by created_at limit 1)`,
      [alice.userId, NASTY],
    );
    await c.query(
      `update messages set content = $2, provider = 'ANTHROPIC', model = 'anthropic:claude',
              prompt_tokens = 0, completion_tokens = 12, latency_ms = 45
        where id in (select m.id from messages m join conversations c on c.id = m.conversation_id
                      where c.owner_id = $1 order by m.created_at limit 4)`,
      [alice.userId, NASTY],
    );
    await c.query(
      `update comparison_responses set status = 'FAILED', error = $2, latency_ms = null, completion_tokens = 7, key_label = 'work'
        where id in (select s.id from comparison_responses s join comparison_results r on r.id = s.comparison_id
                      where r.owner_id = $1 order by s.created_at limit 2)`,
      [alice.userId, `RATE_LIMIT: ${NASTY}`],
    );
    // Blind and revealed (voted), blind and hidden (its responses take the ordinary path), a category.
    const { rows } = await c.query(`select id from comparison_results where owner_id = $1 order by created_at desc limit 3`, [
      alice.userId,
    ]);
    await c.query(`update comparison_results set blind = true where id = any($1::uuid[])`, [[rows[0].id, rows[1].id]]);
    await c.query(`insert into votes (id, created_at, comparison_id, user_id, outcome) values (gen_random_uuid(), now(), $1, $2, 'TIE')`, [
      rows[0].id,
      alice.userId,
    ]);
    await c.query(`update comparison_results set category = 'code' where id = $1`, [rows[2].id]);
  });
  const cursors = new CursorCodec(t.app.config.jwtSecret);
  deps = await compileDeps(t.app.orm, {
    em: t.app.orm.em,
    prepared: new PreparedStatements(t.app.orm.em, undefined),
    cursors,
    maxResponseBytes: t.app.config.limits.maxResponseBytes,
  });
  const rowsOf = async (sql: string, params: unknown[]) => withClient(t.db.url, async (c) => (await c.query(sql, params)).rows);
  const conversations = await rowsOf(`select id from conversations where owner_id = $1 order by created_at`, [alice.userId]);
  const comparisons = await rowsOf(`select id from comparison_results where owner_id = $1 order by created_at`, [alice.userId]);
  const messages = await rowsOf(
    `select m.id, m.conversation_id, (extract(epoch from m.created_at) * 1000)::float8 as ms
       from messages m join conversations c on c.id = m.conversation_id
      where c.owner_id = $1 order by m.created_at, m.id`,
    [alice.userId],
  );
  const messageCursors = new Map<string, string[]>();
  for (const m of messages) {
    const list = messageCursors.get(m.conversation_id) ?? [];
    list.push(cursors.encode(cursorScope(MESSAGES, m.conversation_id), { createdAt: new Date(Number(m.ms)), id: m.id }));
    messageCursors.set(m.conversation_id, list);
  }
  own = { conversations: conversations.map((r) => r.id), comparisons: comparisons.map((r) => r.id), messageCursors };
  const [bobsConversation] = await rowsOf(`select id from conversations where owner_id = $1 limit 1`, [bob.userId]);
  const [bobsComparison] = await rowsOf(`select id from comparison_results where owner_id = $1 limit 1`, [bob.userId]);
  const [bobsMessage] = await rowsOf(
    `select id, (extract(epoch from created_at) * 1000)::float8 as ms from messages where conversation_id = $1 limit 1`,
    [bobsConversation.id],
  );
  foreign = {
    conversation: bobsConversation.id,
    comparison: bobsComparison.id,
    cursor: cursors.encode(cursorScope(MESSAGES, bobsConversation.id), { createdAt: new Date(Number(bobsMessage.ms)), id: bobsMessage.id }),
  };
});
afterAll(() => t?.close());

/** mulberry32: small, fast, and the same sequence for the same seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface Generated {
  source: string;
  variables: Record<string, unknown>;
  user: { token: string; userId: string };
}

/** Fields the compiled read does not accept appear this often (the whole document then takes the ordinary path). */
const RARE = new Set([
  'lastMessage',
  'messageCount',
  'costUsd',
  'totalCount',
  'vote',
  'conversation',
  'comparison',
  'apiKeys',
  'budgetUsd',
  'dailyBudgetUsd',
  'remainingBudgetUsd',
  'spentTodayUsd',
]);

class DocumentGenerator {
  private readonly next: () => number;
  private vars: Array<{ name: string; type: string; value: unknown }> = [];
  private fragments: string[] = [];
  private counter = 0;
  /** The conversation a root `conversation(id)` reads, when the document has one: its cursors verify. */
  private rootConversation: string | null = null;

  constructor(seed: number) {
    this.next = random(seed);
  }

  private chance(p: number): boolean {
    return this.next() < p;
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** An argument's value, as a literal or through a variable. */
  private argument(type: string, value: unknown): string {
    if (value !== null && this.chance(0.35)) return typeof value === 'string' ? JSON.stringify(value) : String(value);
    const name = `v${this.vars.length}`;
    this.vars.push({ name, type, value });
    return `$${name}`;
  }

  private pageArgs(list: 'messages' | 'root'): string {
    const parts: string[] = [];
    if (this.chance(0.7)) parts.push(`first: ${this.argument('Int', this.pick([1, 2, 3, 5, 7, 10, 1, 2, 3, 100, 0, 101]))}`);
    if (list === 'messages' && this.chance(0.45)) {
      const conversation = this.rootConversation;
      const mine = conversation ? (own.messageCursors.get(conversation) ?? []) : [];
      const other = [...own.messageCursors.values()].flat();
      const cursor = this.pick<string | null>([
        ...(mine.length ? [this.pick(mine), this.pick(mine), this.pick(mine)] : []),
        null,
        null,
        this.pick(other),
        foreign.cursor,
        'bm90.forged',
      ]);
      parts.push(`after: ${cursor === null && this.chance(0.5) ? 'null' : this.argument('String', cursor)}`);
    }
    return parts.length ? `(${parts.join(', ')})` : '';
  }

  /** A selection set on `type`: a random subset of its fields, some aliased, some in fragments. */
  private selection(type: GraphQLObjectType, depth: number): string {
    const fields = Object.values(type.getFields()).filter((f) => !RARE.has(f.name) || this.chance(0.03));
    const chosen = fields.filter(() => this.chance(0.4));
    if (chosen.length === 0) chosen.push(this.pick(fields.filter((f) => !RARE.has(f.name))) ?? fields[0]!);
    if (this.chance(0.1)) chosen.push({ name: '__typename' } as GraphQLField<unknown, unknown>);
    const items = chosen
      .map((field) => this.field(field, depth))
      .filter((s): s is string => s !== null)
      .sort(() => this.next() - 0.5);
    if (items.length === 0) items.push('__typename');
    // Some of the selection moves into a fragment (inline, with or without a type, or named).
    if (items.length > 1 && this.chance(0.3)) {
      const moved = items.splice(0, 1 + Math.floor(this.next() * (items.length - 1)));
      const kind = this.next();
      if (kind < 0.35) items.push(`... on ${type.name} { ${moved.join(' ')} }`);
      else if (kind < 0.5) items.push(`... { ${moved.join(' ')} }`);
      else {
        const name = `F${this.counter++}`;
        this.fragments.push(`fragment ${name} on ${type.name} { ${moved.join(' ')} }`);
        items.push(`...${name}`);
      }
    }
    return items.join(' ');
  }

  private field(field: GraphQLField<unknown, unknown>, depth: number): string | null {
    const alias = this.chance(0.2) ? `a${this.counter++}: ` : '';
    if (field.name === '__typename') return `${alias}__typename`;
    const named = getNamedType(field.type);
    if (isLeafType(named)) return `${alias}${field.name}`;
    if (!isObjectType(named) || depth > 3) return null;
    if (field.args.some((a) => isNonNullType(a.type))) return null;
    const args = field.name === 'messages' ? this.pageArgs('messages') : '';
    return `${alias}${field.name}${args} { ${this.selection(named, depth + 1)} }`;
  }

  document(): Generated {
    this.vars = [];
    this.fragments = [];
    this.rootConversation = null;
    const query = deps.schema.getQueryType()!.getFields();
    const roots = ['me', 'conversations', 'comparisons', 'conversation', 'comparison', 'conversation', 'comparison'] as const;
    const count = 1 + Math.floor(this.next() * 3);
    const used = new Set<string>();
    const parts: string[] = [];
    for (let i = 0; i < count; i++) {
      const root = this.pick(roots);
      const key = used.has(root) ? `r${this.counter++}` : root;
      used.add(root);
      const alias = key !== root || this.chance(0.15) ? `${key === root ? `x${this.counter++}` : key}: ` : '';
      const field = query[root]!;
      let args = '';
      if (root === 'conversation' || root === 'comparison') {
        const ids = root === 'conversation' ? own.conversations : own.comparisons;
        const id = this.pick([
          ...ids,
          ...ids,
          root === 'conversation' ? foreign.conversation : foreign.comparison,
          'not-an-id',
          '00000000-0000-4000-8000-000000000000',
        ]);
        if (root === 'conversation' && this.rootConversation === null) this.rootConversation = id;
        args = `(id: ${this.argument('ID!', id)})`;
      } else if (root !== 'me') args = this.pageArgs('root');
      parts.push(`${alias}${root}${args} { ${this.selection(getNamedType(field.type) as GraphQLObjectType, 1)} }`);
    }
    const defs = this.vars.length ? `(${this.vars.map((v) => `$${v.name}: ${v.type}`).join(', ')})` : '';
    const source = [`query Generated${defs} { ${parts.join(' ')} }`, ...this.fragments].join('\n');
    const variables = Object.fromEntries(this.vars.map((v) => [v.name, v.value]));
    const user = this.chance(0.8) ? alice : this.pick([bob, empty]);
    return { source, variables, user };
  }
}

it(`random documents over the history, conversation and comparison types: compiled = ordinary bytes (seed ${SEED})`, async () => {
  const generator = new DocumentGenerator(SEED);
  const outcomes = { served: 0, fallback: 0, notCompiled: 0, refused: 0 };
  const timing = { compile: 0, run: 0, http: 0 };
  const mismatches: Array<{ source: string; variables: Record<string, unknown>; user: string; compiled: string; ordinary: string }> = [];
  const documents = Array.from({ length: DOCUMENTS }, () => generator.document());
  let next = 0;
  const worker = async () => {
    while (next < documents.length) {
      const { source, variables, user } = documents[next++]!;
      // Duplicate response keys and invalid shapes are the generator's bug, not the server's: compile() validates.
      let started = performance.now();
      const { read } = compile(deps, source);
      timing.compile += performance.now() - started;
      if (!read) {
        outcomes.notCompiled++;
        continue;
      }
      started = performance.now();
      const compiled = await read.run(user.userId, variables);
      timing.run += performance.now() - started;
      started = performance.now();
      const ordinary = await t.gql(source, variables, user.token, { 'cache-control': 'no-cache' });
      timing.http += performance.now() - started;
      // Refused by the document guard (cost): Apollo never validates it, so it is never compiled (`operation-cache.ts`).
      if (ordinary.errors?.[0]?.extensions?.code === 'QUERY_TOO_COMPLEX') {
        outcomes.refused++;
        continue;
      }
      if (compiled === undefined) {
        outcomes.fallback++;
        continue;
      }
      outcomes.served++;
      if (compiled !== ordinary.raw)
        mismatches.push({
          source,
          variables,
          user: user === alice ? 'alice' : user === bob ? 'bob' : 'empty',
          compiled,
          ordinary: ordinary.raw,
        });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  // eslint-disable-next-line no-console
  console.log(`read-plan documents (seed ${SEED}): ${JSON.stringify(outcomes)} ${JSON.stringify(timing)}`);
  expect({ seed: SEED, mismatches: mismatches.slice(0, 3), count: mismatches.length }).toEqual({ seed: SEED, mismatches: [], count: 0 });
  // Most documents must really be compiled, or the comparison proves little.
  expect(outcomes.served).toBeGreaterThan(DOCUMENTS * 0.5);
  expect(outcomes.fallback).toBeGreaterThan(0);
  expect(outcomes.notCompiled).toBeGreaterThan(0);
  // About 20 documents a second on this shared 2-core machine under load; a few seconds on a quiet one.
}, 240_000);
