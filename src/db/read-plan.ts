/**
 * Read plans: every fact the hot reads need about a relation or a visibility
 * rule, declared once (the declarations are the first half of this file).
 *
 * A relation plan says which rows a list or relation field of the schema
 * holds: the entity and its table, how the rows hang off their parent (an
 * owner column or a foreign key), their order, the page bounds and the cursor
 * scope. Every way of reading the field is derived from it (the second half
 * of this file has the derivations):
 * - the services' pages and the DataLoader batches (`readOwnedPage`,
 *   `childPagesBatchSql`, `childListBatchSql`);
 * - the look-ahead embedding of children in their parent list's statement
 *   (`childRowsSql`);
 * - the compiled read's SQL (`graphql/compiled-read.ts`, which knows no table:
 *   it asks {@link RELATIONS} and {@link COMPUTED}).
 *
 * A relation that a parent also inherits (a fork's messages, `inherits`) reads
 * its own rows and its ancestors' (`childSourceSql`). Its pages and its last
 * row (`childRowsSql`) derive the inherited part only where the parent is a
 * fork (the ancestry's `marker` column on the parent's row, tested as a
 * one-time filter), and take the own rows' first (or last) ones from the
 * ordered index before merging: a conversation that is no fork, the vast
 * majority, reads its page as a plain keyset page.
 *
 * A visibility rule is a predicate over facts of a row (a boolean column,
 * whether rows of another table point at it), written as data, so its SQL
 * predicate (`rule.sql(alias)`) and its TypeScript check (`rule.check(facts)`)
 * are two readings of the same declaration; it also lists what a reader sees
 * of the rows it governs while it does not hold (`rule.present`).
 *
 * Changing a declaration changes SQL: `test/read-plan-sql.test.ts` snapshots the
 * SQL of every field a compiled read accepts (`test/read-plan-sql/`), so the
 * change shows in review; `test/read-plan-documents.test.ts` answers random
 * documents both ways and requires the same bytes.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import { badInput } from '../errors';
import { type CursorCodec, type CursorPosition, MAX_PAGE_SIZE, type Page, toPage } from './pagination';
import { plainShape } from './plain';

// ─── Visibility rules ──────────────────────────────────────────────────────────

/** Errors the server itself writes: they say nothing about the model, so they stay as they are. */
const SERVER_ERRORS = /^(Cancelled|Interrupted|Internal error)/;
/** `REASON: provider text` as the runner stores a provider failure. */
const PROVIDER_ERROR = /^([A-Z_]{2,32}): /;

export const HIDDEN_DETAILS = 'details hidden until you vote';

/** The error text a reader may see of an unrevealed blind response: the reason code, never the provider's own text. */
export function hiddenError(error: string | null | undefined): string | null {
  if (error === null || error === undefined) return null;
  if (SERVER_ERRORS.test(error)) return error;
  const reason = PROVIDER_ERROR.exec(error)?.[1];
  return reason ? `${reason}: the model call failed (${HIDDEN_DETAILS})` : `The model call failed (${HIDDEN_DETAILS})`;
}

/**
 * REVEALED: a comparison is revealed when it is not blind, or once a vote on
 * it exists (the vote row is the reveal, written atomically by the vote's own
 * statement, so every instance sees the same answer). While it is not, its
 * responses hide what would name a model (see `modules/comparison/blind.ts`).
 */
export const REVEALED = visibilityRule({
  name: 'revealed',
  entity: 'ComparisonResult',
  table: 'comparison_results',
  facts: {
    blind: { column: 'blind' },
    voted: { exists: { table: 'votes', foreignKey: 'comparison_id' } },
  },
  holds: { anyOf: [{ not: { fact: 'blind' } }, { fact: 'voted' }] },
  conceals: {
    entity: 'ComparisonResponse',
    fields: {
      // The label of a key names the endpoint.
      provider: () => null,
      model: () => null,
      keyLabel: () => null,
      // A price identifies a model.
      costUsd: () => null,
      // The same prompt counts differently under each provider's tokenizer.
      promptTokens: () => null,
      completionTokens: () => null,
      // Not nullable; true would tell which answer came through which of the user's keys.
      customEndpoint: () => false,
      error: (value) => hiddenError(value as string | null),
    },
  },
});

/**
 * SHARED_REVEALED: what a share link shows of a comparison's responses. Its
 * one fact is REVEALED as it held when the link was made, stored per shared
 * comparison (`share_link_comparisons.revealed`, written with `REVEALED.sql`):
 * a vote after sharing reveals nothing through the link until the owner
 * shares again. It conceals exactly what REVEALED conceals (the same
 * declaration, not a copy).
 */
export const SHARED_REVEALED = visibilityRule({
  name: 'shared_revealed',
  entity: 'ShareLinkComparison',
  table: 'share_link_comparisons',
  facts: { revealed: { column: 'revealed' } },
  holds: { fact: 'revealed' },
  conceals: REVEALED.conceals,
});

/** Every visibility rule (snapshotted by `test/read-plan-sql.test.ts`). */
export const VISIBILITY_RULES: readonly VisibilityRule<string>[] = [REVEALED, SHARED_REVEALED];

/**
 * SHARE_LINK_LIVE: whether a share link answers with its snapshot at all: not
 * revoked, not past its expiry, and (a conversation's link) its conversation
 * not {@link DELETED}. A link that is not live reads exactly like an unknown
 * token (null, never FORBIDDEN: whether a token exists is not confirmed).
 * `sql` is the predicate the snapshot's statement applies to the link's row;
 * `servedAt` is its expiry part on a snapshot kept in a cache or memo
 * (revocation and deletion reach those through the link's generation, which
 * the same mutations bump).
 */
export const SHARE_LINK_LIVE = Object.freeze({
  name: 'share_link_live',
  entity: 'ShareLinkEntity',
  table: 'share_links',
  sql: (a: string) =>
    `(${a}.revoked_at is null and (${a}.expires_at is null or ${a}.expires_at > now())` +
    ` and not exists (select 1 from conversations deleted_${a} where deleted_${a}.id = ${a}.conversation_id` +
    ` and deleted_${a}.${DELETED.column} is not null))`,
  /** A snapshot kept since it was read (`expiresAt`: epoch ms, null for none) may still be served at `now`. */
  servedAt: (expiresAt: number | null, now: number): boolean => expiresAt === null || expiresAt > now,
});

/**
 * SHARED_SNAPSHOT: which rows a link shows: those of its snapshot time. A
 * conversation's messages are the MESSAGES source read as of the link's
 * `as_of` (`childSourceSql(…, { asOf })`, {@link CURRENT_VERSION}'s `asOfSql`:
 * later messages and later regenerated versions stay out); its comparisons are
 * the link's `share_link_comparisons` rows (fixed when shared, each with
 * {@link SHARED_REVEALED}'s fact); a comparison's responses are those written
 * by the time the link was made (a later fused answer stays out).
 */
export const SHARED_SNAPSHOT = Object.freeze({
  asOf: 'as_of',
  /** SQL predicate: the response under `r` belongs to a snapshot made at `sharedAt` (an SQL expression). */
  responseSql: (r: string, sharedAt: string) => `${r}.created_at <= ${sharedAt}`,
});

// ─── Fields computed from a row's own columns ──────────────────────────────────

/** A field whose resolver computes its value from the row: the same value as JSON text in SQL and in TypeScript. */
export interface ComputedField<R> {
  /** SQL text expression: the field's JSON text for the row under `alias`. */
  json(alias: string): string;
  value(row: R): unknown;
}

/** "A" for position 0, "B" for 1, … (a comparison has at most 8 responses). */
export const RESPONSE_LABEL: ComputedField<{ position: number }> = {
  json: (a) => `to_json(chr(65 + ${a}.position))::text`,
  value: (row) => String.fromCharCode(65 + row.position),
};

/** `Type.field` → computed field (`ComparisonResult.revealed` is the rule above, read next to the row). */
export const COMPUTED: Readonly<Record<string, ComputedField<never>>> = {
  'ComparisonResponse.label': RESPONSE_LABEL,
  // The version a read shows is current where it is read (`childSourceSql` reads an inherited one as such).
  'Message.current': {
    json: (a) => `(case when ${CURRENT_VERSION.sql(a)} then 'true' else 'false' end)`,
    value: (row: { replacedAt?: Date | null }) => row.replacedAt === null || row.replacedAt === undefined,
  },
  'ComparisonResult.revealed': {
    json: (a) => `(case when ${REVEALED.sql(a)} then 'true' else 'false' end)`,
    value: (row: { revealed: boolean }) => row.revealed,
  },
};

// ─── Forks, versions, hidden rows ──────────────────────────────────────────────

/**
 * DELETED: a conversation its owner deleted while forks still read its
 * messages is kept, hidden: every owned read of conversations leaves it out
 * (`ownerSql` adds `deleted_at is null`), so it reads exactly like a missing one.
 */
export const DELETED: HiddenWhen = { column: 'deleted_at' };

/**
 * CURRENT_VERSION: of a turn's versions (`regenerateMessage`), the one a
 * conversation shows. In its own conversation: the one not replaced
 * (`replaced_at is null`). Inherited by a fork: the one current when the fork
 * was made (written by then, not replaced by then), so regenerating in the
 * original never changes what a fork shows. A fork regenerating an inherited
 * turn writes its own version (`conversation_id` = the fork, `version_of_id`
 * = the turn's first version): from then on the fork reads its own current
 * version of that turn, not the inherited one (`childSourceSql`).
 */
export const CURRENT_VERSION: VersionRule = {
  replacedAt: 'replaced_at',
  writtenAt: 'answered_at',
  slot: 'version_of_id',
  sql: (a) => `${a}.replaced_at is null`,
  asOfSql: (a, at) => `coalesce(${a}.answered_at, ${a}.created_at) <= ${at} and (${a}.replaced_at is null or ${a}.replaced_at > ${at})`,
};

/**
 * FORK_ANCESTRY: where a fork's inherited rows come from. Each row of
 * `conversation_ancestors` says: the children of `ancestor_id` up to and
 * including `(upto_created_at, upto_id)` (the cut turn's first version),
 * as of `created_at` (when the fork was made), belong to `conversation_id` too.
 */
export const FORK_ANCESTRY: Ancestry = {
  table: 'conversation_ancestors',
  child: 'conversation_id',
  ancestor: 'ancestor_id',
  upto: ['upto_created_at', 'upto_id'],
  asOf: 'created_at',
  // `forkConversation` sets it on every fork, in the flush (one transaction) that writes the fork's ancestry rows; nothing clears it.
  marker: { table: 'conversations', column: 'forked_from_message_id' },
};

// ─── Relations ─────────────────────────────────────────────────────────────────

/** Keyset order on `(created_at, id)`: the cursor carries both. */
const NEWEST_FIRST: Keyset = { columns: ['created_at', 'id'], direction: 'desc' };
const OLDEST_FIRST: Keyset = { columns: ['created_at', 'id'], direction: 'asc' };
/** Keyset order on `(position, id)`, for rows with an explicit position: the cursor carries the position as its extra key. */
const IN_POSITION_ORDER: Keyset = { columns: ['position', 'id'], direction: 'asc' };

/** The viewer's own row. */
export const VIEWER = plan({ kind: 'viewer', field: 'Query.me', entity: 'User', table: 'users' });

/** A user's conversations, newest first, 20 per page. */
export const CONVERSATIONS = plan({
  kind: 'ownedList',
  field: 'Query.conversations',
  entity: 'Conversation',
  table: 'conversations',
  owner: 'owner_id',
  hiddenWhen: DELETED,
  order: NEWEST_FIRST,
  page: { default: 20, max: MAX_PAGE_SIZE },
  cursor: 'conversations',
});

/** A user's comparisons, newest first, 20 per page. */
export const COMPARISONS = plan({
  kind: 'ownedList',
  field: 'Query.comparisons',
  entity: 'ComparisonResult',
  table: 'comparison_results',
  owner: 'owner_id',
  order: NEWEST_FIRST,
  page: { default: 20, max: MAX_PAGE_SIZE },
  cursor: 'comparisons',
});

/** One of the user's conversations by id; another user's id reads as a missing one. */
export const CONVERSATION_BY_ID = plan({
  kind: 'ownedRow',
  field: 'Query.conversation',
  entity: 'Conversation',
  table: 'conversations',
  owner: 'owner_id',
  hiddenWhen: DELETED,
});

/** One of the user's comparisons by id. */
export const COMPARISON_BY_ID = plan({
  kind: 'ownedRow',
  field: 'Query.comparison',
  entity: 'ComparisonResult',
  table: 'comparison_results',
  owner: 'owner_id',
});

/**
 * A conversation's messages, oldest first, 50 per page: its own current
 * versions, and a fork's inherited ones ({@link FORK_ANCESTRY}) as of the fork,
 * read as the fork's own (see {@link childSourceSql}); a page reads inherited ones only for a fork ({@link childRowsSql}).
 */
export const MESSAGES = plan({
  kind: 'childPage',
  field: 'Conversation.messages',
  entity: 'Message',
  table: 'messages',
  foreignKey: 'conversation_id',
  order: OLDEST_FIRST,
  page: { default: 50, max: MAX_PAGE_SIZE },
  cursor: 'messages',
  inherits: FORK_ANCESTRY,
  current: CURRENT_VERSION,
});

/** A comparison's responses in the order shown (by label); hidden fields while it is not {@link REVEALED}. */
export const RESPONSES = plan({
  kind: 'childList',
  field: 'ComparisonResult.responses',
  entity: 'ComparisonResponse',
  table: 'comparison_responses',
  foreignKey: 'comparison_id',
  order: ['position'],
  concealedUnless: REVEALED,
});

/**
 * A conversation's comparisons, oldest first: its own, and those whose prompt
 * a fork inherited (read as the fork's, like the prompt; see {@link childListFromSql}).
 */
export const CONVERSATION_COMPARISONS = plan({
  kind: 'childList',
  field: 'Conversation.comparisons',
  entity: 'ComparisonResult',
  table: 'comparison_results',
  foreignKey: 'conversation_id',
  order: ['created_at', 'id'],
  inheritsThrough: { children: MESSAGES, key: 'comparison_id' },
});

/** A user's prompt sets, newest first, 20 per page (served by the resolvers; not compiled, see {@link RELATIONS}). */
export const PROMPT_SETS = plan({
  kind: 'ownedList',
  field: 'Query.promptSets',
  entity: 'PromptSet',
  table: 'prompt_sets',
  owner: 'owner_id',
  order: NEWEST_FIRST,
  page: { default: 20, max: MAX_PAGE_SIZE },
  cursor: 'prompt-sets',
});

/** One of the user's prompt sets by id. */
export const PROMPT_SET_BY_ID = plan({
  kind: 'ownedRow',
  field: 'Query.promptSet',
  entity: 'PromptSet',
  table: 'prompt_sets',
  owner: 'owner_id',
});

/** A prompt set's items in position order, 50 per page (keyset on the unique (prompt_set_id, position)). */
export const PROMPT_ITEMS = plan({
  kind: 'childPage',
  field: 'PromptSet.items',
  entity: 'PromptItem',
  table: 'prompt_items',
  foreignKey: 'prompt_set_id',
  order: IN_POSITION_ORDER,
  page: { default: 50, max: MAX_PAGE_SIZE },
  cursor: 'prompt-items',
});

/** A user's share links, newest first, 20 per page (served by the resolvers). */
export const SHARE_LINKS = plan({
  kind: 'ownedList',
  field: 'Query.shareLinks',
  entity: 'ShareLinkEntity',
  table: 'share_links',
  owner: 'owner_id',
  order: NEWEST_FIRST,
  page: { default: 20, max: MAX_PAGE_SIZE },
  cursor: 'share-links',
});

/**
 * A share link's snapshot of comparisons, in the order shown (oldest first,
 * fixed at share time). Each row carries {@link SHARED_REVEALED}'s fact; the
 * rule governs the responses of the row's comparison (joined by the share
 * service), not the row itself, so it is not this plan's `concealedUnless`.
 */
export const SHARED_COMPARISONS = plan({
  kind: 'childList',
  field: 'SharedView.comparisons',
  entity: 'ShareLinkComparison',
  table: 'share_link_comparisons',
  foreignKey: 'link_id',
  order: ['position'],
});

/** Plans read only through the services' derivations (the compiled read does not take them); checked and snapshotted like the others. */
export const SERVICE_ONLY_PLANS: readonly RelationPlan[] = [PROMPT_SETS, PROMPT_SET_BY_ID, PROMPT_ITEMS, SHARE_LINKS, SHARED_COMPARISONS];

/**
 * `Type.field` → its plan: what the compiled read may compile (nothing else is a relation to it).
 * The compiled read keys its pages on `created_at` (it carries the cursor's time in its SQL), so only
 * those plans are here; the prompt-set plans are read through the services' derivations alone.
 */
export const RELATIONS: Readonly<Record<string, RelationPlan>> = Object.fromEntries(
  [VIEWER, CONVERSATIONS, COMPARISONS, CONVERSATION_BY_ID, COMPARISON_BY_ID, MESSAGES, RESPONSES, CONVERSATION_COMPARISONS].map((p) => {
    if ('order' in p && !Array.isArray(p.order) && (p.order as Keyset).columns[0] !== 'created_at') {
      throw new Error(`read plan: ${p.field} cannot be compiled: the compiled read pages on created_at only`);
    }
    return [p.field, p];
  }),
);

// ─── What a declaration is ─────────────────────────────────────────────────────

/** The first key column of a keyset: a timestamp, or an integer position. */
export type KeyColumn = 'created_at' | 'position';

export interface Keyset {
  columns: readonly [KeyColumn, 'id'];
  direction: 'asc' | 'desc';
}

/** The SQL type of a key column's values in a batch parameter. */
const KEY_TYPES: Readonly<Record<KeyColumn, string>> = { created_at: 'timestamptz', position: 'int' };

interface PageBounds {
  default: number;
  max: number;
}

interface PlanBase {
  /** The schema field it answers, `Type.field`. */
  field: string;
  /** The MikroORM entity (its metadata names the columns) and its table. */
  entity: string;
  table: string;
}

/** The viewer's own row (`id` = the user). */
export interface ViewerPlan extends PlanBase {
  kind: 'viewer';
}

/** A row is hidden from every owned read while this column is set (see {@link DELETED}). */
export interface HiddenWhen {
  column: string;
}

/** Which of a turn's versions a read shows (see {@link CURRENT_VERSION}). */
export interface VersionRule {
  replacedAt: string;
  writtenAt: string;
  /** The first version's id on later versions (null on the first). */
  slot: string;
  /** Current in its own conversation. */
  sql(alias: string): string;
  /** Current as of the time `at` (an SQL expression): what a fork made then shows. */
  asOfSql(alias: string, at: string): string;
}

/** Rows of another parent that a parent inherits by reference (see {@link FORK_ANCESTRY}). */
export interface Ancestry {
  table: string;
  /** The inheriting parent. */
  child: string;
  /** The parent the rows belong to. */
  ancestor: string;
  /** The last inherited row's key position (its first version's id). */
  upto: readonly [string, string];
  /** When the inheritance was made: versions are read as of then. */
  asOf: string;
  /**
   * A column of the inheriting parent's own row (in `table`) that is set on every parent with rows in the
   * ancestry table: where it is null the parent inherits nothing, so a read skips the inherited branch.
   */
  marker: { table: string; column: string };
}

/** One owned row by id (`owner` = the user): another user's row reads as missing. */
export interface OwnedRowPlan extends PlanBase {
  kind: 'ownedRow';
  owner: string;
  hiddenWhen?: HiddenWhen;
}

/** A connection of the user's own rows (`owner` = the user), keyset-paged, cursors scoped to `<cursor>:<userId>`. */
export interface OwnedListPlan extends PlanBase {
  kind: 'ownedList';
  owner: string;
  hiddenWhen?: HiddenWhen;
  order: Keyset;
  page: PageBounds;
  cursor: string;
}

/** A connection of a parent's children (`foreignKey` = the parent's id), keyset-paged, cursors scoped to `<cursor>:<parentId>`. */
export interface ChildPagePlan extends PlanBase {
  kind: 'childPage';
  foreignKey: string;
  order: Keyset;
  page: PageBounds;
  cursor: string;
  /** A parent also holds an ancestor's rows up to a point (forks). */
  inherits?: Ancestry;
  /** Only the current version of a row is a child. */
  current?: VersionRule;
}

/** All of a parent's children, in `order` (ascending columns); some fields hidden unless the parent satisfies `concealedUnless`. */
export interface ChildListPlan extends PlanBase {
  kind: 'childList';
  foreignKey: string;
  order: readonly string[];
  concealedUnless?: VisibilityRule<string>;
  /** Also the rows that the inherited rows of `children` (a fork's messages) point at with `key`. */
  inheritsThrough?: { children: ChildPagePlan; key: string };
}

export type RelationPlan = ViewerPlan | OwnedRowPlan | OwnedListPlan | ChildPagePlan | ChildListPlan;

function identifier(name: string, what: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`read plan: ${what} must be a lower-case SQL identifier, got "${name}"`);
  return name;
}

/** Checks a declaration once, at load: every name that reaches SQL text is an identifier. */
function plan<P extends RelationPlan>(p: P): P {
  identifier(p.table, `${p.field} table`);
  if ('owner' in p) identifier(p.owner, `${p.field} owner`);
  if ('foreignKey' in p) identifier(p.foreignKey, `${p.field} foreignKey`);
  if (p.kind === 'childList') for (const c of p.order) identifier(c, `${p.field} order`);
  if (p.kind === 'childPage' && p.inherits) {
    identifier(p.inherits.marker.table, `${p.field} ancestry marker table`);
    identifier(p.inherits.marker.column, `${p.field} ancestry marker column`);
  }
  if ('page' in p && !(p.page.default >= 1 && p.page.default <= p.page.max && p.page.max <= MAX_PAGE_SIZE)) {
    throw new Error(`read plan: ${p.field} page bounds must be 1 ≤ default ≤ max ≤ ${MAX_PAGE_SIZE}`);
  }
  return Object.freeze(p);
}

// ─── Derivations: relations ────────────────────────────────────────────────────

type Ordered = OwnedListPlan | ChildPagePlan | ChildListPlan;

/** `a.created_at desc, a.id desc` (keysets), `a.position` (lists). */
export function orderSql(p: Ordered, alias: string): string {
  if (p.kind === 'childList') return p.order.map((c) => `${alias}.${c}`).join(', ');
  return p.order.columns.map((c) => `${alias}.${c} ${p.order.direction}`).join(', ');
}

/** The rows after a cursor position in the plan's order: `(a.created_at, a.id) < (at, id)` newest first. */
export function afterSql(p: OwnedListPlan | ChildPagePlan, alias: string, at = '?', id = '?'): string {
  return `(${p.order.columns.map((c) => `${alias}.${c}`).join(', ')}) ${p.order.direction === 'desc' ? '<' : '>'} (${at}, ${id})`;
}

/** The owner filter, `a.owner_id = <user>` (and `a.deleted_at is null` for a plan with `hiddenWhen`). */
export function ownerSql(p: OwnedListPlan | OwnedRowPlan, alias: string, user = '?'): string {
  const hidden = p.hiddenWhen ? ` and ${alias}.${p.hiddenWhen.column} is null` : '';
  return `${alias}.${p.owner} = ${user}${hidden}`;
}

/** The DataLoader batch of owned rows by id: `a.id = any(<ids>::uuid[]) and a.owner_id = <user>` (ids, then the user). */
export function ownedRowsSql(p: OwnedRowPlan, alias: string): string {
  return `${alias}.id = any(?::uuid[]) and ${ownerSql(p, alias)}`;
}

/** The children of one parent, `a.conversation_id = <parent id>`. */
export function childOfSql(p: ChildPagePlan | ChildListPlan, alias: string, parentId: string): string {
  return `${alias}.${p.foreignKey} = ${parentId}`;
}

/** The scope a cursor of this list is signed for: `conversations:<userId>`, `messages:<conversationId>`. */
export function cursorScope(p: OwnedListPlan | ChildPagePlan, id: string): string {
  return `${p.cursor}:${id}`;
}

/** `first` or the plan's default, validated against its bounds (BAD_USER_INPUT otherwise). */
export function pageLimit(p: OwnedListPlan | ChildPagePlan, first: number | null | undefined): number {
  const size = first ?? p.page.default;
  if (!isPageSizeOf(p, size)) throw badInput(`first must be between 1 and ${p.page.max}, got ${size}`, 'first');
  return size;
}

/** Whether `first` is a page size the plan accepts, without throwing. */
export function isPageSizeOf(p: OwnedListPlan | ChildPagePlan, first: unknown): first is number {
  return Number.isInteger(first) && (first as number) >= 1 && (first as number) <= p.page.max;
}

/**
 * One parent's children (`select * …`), in the plan's order, optionally
 * limited: the look-ahead embedding's child query, the compiled read's, and
 * each key's page of a DataLoader batch. `limit` and `after` are SQL
 * expressions that may appear more than once in the text (never a `?`
 * placeholder, which would need its value once per occurrence).
 * `parentRow`: the alias of the parent's own row where the enclosing
 * statement has it (`parentId` is then `<parentRow>.id`); it lets an
 * inheriting plan test its ancestry marker without a look-up. `last`: the
 * last rows instead, in the reverse order (a conversation's last message).
 *
 * For a plan that inherits (forks), the page is the first `limit` of the
 * parent's own rows (in order, so an ordered index scan feeds the limit and a
 * page of a long conversation reads `limit` rows, not all of them), merged
 * with the inherited rows (`childSourceSql` with `inheritedOnly`), then cut to
 * `limit` again: the first n of a union are among the first n of each part.
 * The inherited part runs only where the parent's ancestry marker is set (a
 * one-time filter on the parent, so PostgreSQL never starts it for a
 * conversation that is no fork, whatever else its batch holds).
 */
export function childRowsSql(
  p: ChildPagePlan | ChildListPlan,
  alias: string,
  parentId: string,
  opts: { limit?: string; after?: [string, string]; parentRow?: string; last?: boolean } = {},
): string {
  const limit = opts.limit ? ` limit ${opts.limit}` : '';
  if (opts.last && (p.kind !== 'childPage' || opts.after))
    throw new Error(`read plan: ${p.field}: last rows of a page plan, without after`);
  // `last`: the last rows, in the reverse of the plan's order (a conversation's last message).
  const order = (a: string) =>
    p.kind === 'childPage' && opts.last
      ? p.order.columns.map((c) => `${a}.${c} ${p.order.direction === 'asc' ? 'desc' : 'asc'}`).join(', ')
      : orderSql(p, a);
  if (p.kind === 'childPage' && (p.inherits || p.current)) {
    const afterOf = (a: string) => (opts.after ? ` and (${opts.after[0]} is null or ${afterSql(p, a, ...opts.after)})` : '');
    const version = p.current ? ` and ${p.current.sql('o')}` : '';
    const where = `${childOfSql(p, 'o', parentId)}${version}${afterOf('o')}`;
    const own = `select o.* from ${p.table} o where ${where} order by ${order('o')}${limit}`;
    if (!p.inherits) return `select * from (${own}) ${alias} order by ${order(alias)}`;
    const marker = p.inherits.marker;
    const forked = opts.parentRow
      ? `${opts.parentRow}.${marker.column} is not null`
      : `exists (select 1 from ${marker.table} z where z.id = ${parentId} and z.${marker.column} is not null)`;
    // A fresh alias for the inherited rows: the marker test may name the parent by a short alias (`c`, `m`).
    const h = `${alias}_inherited`;
    const inherited = childSourceSql(p, (column) => `${column} = ${parentId}`, { inheritedOnly: true });
    return (
      `select * from ((${own}) union all select ${h}.* from (${inherited}) ${h} where ${forked}${afterOf(h)})` +
      ` ${alias} order by ${order(alias)}${limit}`
    );
  }
  if (p.kind === 'childList' && p.inheritsThrough) {
    return `select * ${childListFromSql(p, alias, parentId)} order by ${orderSql(p, alias)}${limit}`;
  }
  let where = childOfSql(p, alias, parentId);
  if (opts.after && p.kind === 'childPage') where += ` and (${opts.after[0]} is null or ${afterSql(p, alias, ...opts.after)})`;
  return `select * from ${p.table} ${alias} where ${where} order by ${order(alias)}${limit}`;
}

/**
 * The children of the parents `parentIs` matches (`parentIs(column)` is an SQL
 * condition on a parent id column), as rows of the child table (`select *`
 * shape): the parent's own current rows, then, through the plan's ancestry,
 * each ancestor's rows up to the cut as they were when it was made, with the
 * foreign key rewritten to the inheriting parent and the version read as
 * current there. Every read of a conversation's messages is made from this
 * (pages, counts, last message, search, export, the histories sent to models);
 * pages (`childRowsSql`) take only its inherited part, gated on the parent's
 * ancestry marker, next to a keyset page of the own rows. Elsewhere the
 * inherited part of a parent that is no fork ends at its first step, an empty
 * index probe of the ancestry table.
 */
export function childSourceSql(
  p: ChildPagePlan,
  parentIs: (column: string) => string,
  opts: { inheritedOnly?: boolean; asOf?: string } = {},
): string {
  const current = p.current;
  // `asOf` (an SQL timestamp): the parent's own rows as they read then (a share link's snapshot), not now.
  const version = current ? ` and ${opts.asOf ? current.asOfSql('o', opts.asOf) : current.sql('o')}` : '';
  const own = `select o.* from ${p.table} o where ${parentIs(`o.${p.foreignKey}`)}${version}`;
  const a = p.inherits;
  if (!a) return opts.inheritedOnly ? `${own} and false` : own;
  const key = p.order.columns[0];
  const slot = current ? `coalesce(s.${current.slot}, s.id)` : 's.id';
  const rewritten = current
    ? `jsonb_build_object('${p.foreignKey}', x.${a.child}, '${current.replacedAt}', null)`
    : `jsonb_build_object('${p.foreignKey}', x.${a.child})`;
  // A turn the inheriting parent (or a nearer ancestor, as of its segment) has its own version of reads that one instead.
  const overridden = current
    ? ` and not exists (select 1 from ${p.table} f where f.${p.foreignKey} = x.${a.child} and f.${current.slot} = ${slot}` +
      ` and ${opts.asOf ? current.asOfSql('f', opts.asOf) : current.sql('f')})` +
      ` and not exists (select 1 from ${a.table} y join ${p.table} g on g.${p.foreignKey} = y.${a.ancestor}` +
      ` and g.${current.slot} = ${slot} where y.${a.child} = x.${a.child} and y.${a.asOf} > x.${a.asOf}` +
      ` and ${current.asOfSql('g', `y.${a.asOf}`)})`
    : '';
  return (
    `${opts.inheritedOnly ? '' : `${own} union all `}` +
    `select i.* from ${a.table} x join ${p.table} s on s.${p.foreignKey} = x.${a.ancestor}` +
    ` and (s.${key}, ${slot}) <= (x.${a.upto[0]}, x.${a.upto[1]})${current ? ` and ${current.asOfSql('s', `x.${a.asOf}`)}` : ''}` +
    ` cross join lateral jsonb_populate_record(s, ${rewritten}) i where ${parentIs(`x.${a.child}`)}${overridden}`
  );
}

/**
 * A child list's rows as a FROM item under `alias`: `from <table> a where
 * a.<fk> = <parent>`, or, for a plan that `inheritsThrough` another relation,
 * the parent's own rows and those its inherited children point at, with the
 * foreign key rewritten to the parent (`childListSourceSql`).
 */
export function childListFromSql(p: ChildListPlan, alias: string, parentId: string): string {
  if (!p.inheritsThrough) return `from ${p.table} ${alias} where ${childOfSql(p, alias, parentId)}`;
  return `from (${childListSourceSql(p, (column) => `${column} = ${parentId}`)}) ${alias}`;
}

/** The rows of a child list of the parents `parentIs` matches (see {@link childSourceSql}), as rows of its table. */
export function childListSourceSql(p: ChildListPlan, parentIs: (column: string) => string): string {
  const own = `select o.* from ${p.table} o where ${parentIs(`o.${p.foreignKey}`)}`;
  const via = p.inheritsThrough;
  if (!via) return own;
  const inherited = childSourceSql(via.children, parentIs, { inheritedOnly: true });
  return (
    `${own} union all select j.* from (${inherited}) h join ${p.table} r on r.id = h.${via.key}` +
    ` cross join lateral jsonb_populate_record(r, jsonb_build_object('${p.foreignKey}', h.${via.children.foreignKey})) j`
  );
}

/**
 * The DataLoader batch of a child page: each key's page in one `LATERAL`
 * statement. Parameters, in order: parent ids (uuid[]), after positions
 * (the key column's values, timestamptz[] or int[], and uuid[]; null for a
 * first page), limits (int[]). Rows
 * carry `k_idx`, the 1-based index of their key, and come in key order, then
 * in the plan's order. `columns(alias)` is the select list of a child.
 */
export function childPagesBatchSql(p: ChildPagePlan, columns: (alias: string) => string): string {
  return `select k.idx as k_idx, ${columns('m')}
  from unnest(?::uuid[], ?::${KEY_TYPES[p.order.columns[0]]}[], ?::uuid[], ?::int[]) with ordinality as k(pid, after_at, after_id, lim, idx)
  cross join lateral (${childRowsSql(p, 'c', 'k.pid', { limit: 'k.lim', after: ['k.after_at', 'k.after_id'] })}) m
 order by k.idx, ${orderSql(p, 'm')}`;
}

/**
 * The DataLoader batch of a child list: every listed parent's children in one
 * statement (`?` = the parent ids, uuid[]; twice for a plan that
 * `inheritsThrough`), ordered by parent, then in the plan's order. With
 * `concealedUnless`, the parent is joined (alias `p`) and `__visible` says
 * whether the rule holds for it.
 */
export function childListBatchSql(p: ChildListPlan, columns: (alias: string) => string): string {
  const rule = p.concealedUnless;
  const rows = p.inheritsThrough ? `(${childListSourceSql(p, (column) => `${column} = any(?::uuid[])`)}) x` : `${p.table} x`;
  const from = rule ? `${rows} join ${rule.table} p on p.id = x.${p.foreignKey}` : rows;
  const visible = rule ? `, ${rule.sql('p')} as "__visible"` : '';
  const order = `x.${p.foreignKey}, ${orderSql(p, 'x')}`;
  const where = p.inheritsThrough ? '' : ` where x.${p.foreignKey} = any(?::uuid[])`;
  return `select ${columns('x')}${visible} from ${from}${where} order by ${order}`;
}

/** The plain rows of a list page, the columns a cursor needs, and how to turn them into a page (see `readOwnedPage`). */
export interface OwnedPageQuery {
  sql: string;
  params: unknown[];
  limit: number;
  scope: string;
}

/**
 * One page of an owned list (`ownerId`'s rows), as SQL: `select` is the
 * select list over `alias`; BAD_USER_INPUT for a page size out of bounds or a
 * cursor this server did not sign for this list (`decode`).
 */
export function ownedPageSql(
  p: OwnedListPlan,
  opts: {
    alias: string;
    select: string;
    selectParams?: unknown[];
    ownerId: string;
    first: number | null | undefined;
    after: string | null | undefined;
    decode(scope: string, cursor: string): { createdAt: Date; id: string };
  },
): OwnedPageQuery {
  const limit = pageLimit(p, opts.first);
  const a = opts.alias;
  const scope = cursorScope(p, opts.ownerId);
  const params = [...(opts.selectParams ?? []), opts.ownerId];
  let where = ownerSql(p, a);
  if (opts.after) {
    const position = opts.decode(scope, opts.after);
    where += ` and ${afterSql(p, a)}`;
    params.push(position.createdAt, position.id);
  }
  params.push(limit + 1);
  return { sql: `select ${opts.select} from ${p.table} ${a} where ${where} order by ${orderSql(p, a)} limit ?`, params, limit, scope };
}

/** An extra select-list entry with its parameters (see `embeddedRows` in `db/plain.ts`). */
export interface ExtraColumn {
  sql: string;
  params: unknown[];
}

/** One page of the user's own rows of an owned list, as plain rows (`db/plain.ts`), with `extraColumns` selected beside them. */
export async function readOwnedPage<T extends CursorPosition>(
  em: EntityManager,
  p: OwnedListPlan,
  opts: {
    alias: string;
    ownerId: string;
    cursors: CursorCodec;
    first: number | null | undefined;
    after: string | null | undefined;
    extraColumns?: ExtraColumn[];
  },
): Promise<Page<T>> {
  const shape = plainShape<T>(em, { name: p.entity });
  const extra = opts.extraColumns ?? [];
  const query = ownedPageSql(p, {
    alias: opts.alias,
    select: [shape.columns(opts.alias), ...extra.map((c) => c.sql)].join(', '),
    selectParams: extra.flatMap((c) => c.params),
    ownerId: opts.ownerId,
    first: opts.first,
    after: opts.after,
    decode: (scope, cursor) => opts.cursors.decode(scope, cursor),
  });
  const rows: Array<Record<string, unknown>> = await em.getConnection('read').execute(query.sql, query.params);
  return toPage(rows.map(shape.map), query.limit, (row) => opts.cursors.encode(query.scope, row));
}

// ─── Derivations: visibility rules ─────────────────────────────────────────────

/** A fact about a row: one of its boolean columns, or whether a row of `table` has `foreignKey` = its id. */
type Fact = { column: string } | { exists: { table: string; foreignKey: string } };

type Predicate<F extends string> = { fact: F } | { not: Predicate<F> } | { anyOf: Array<Predicate<F>> } | { allOf: Array<Predicate<F>> };

export interface VisibilityRule<F extends string> {
  readonly name: string;
  readonly entity: string;
  readonly table: string;
  readonly facts: Readonly<Record<F, Fact>>;
  readonly holds: Predicate<F>;
  /** What the rows it governs (of `entity`) show while it does not hold: each field's hidden value from its own. */
  readonly conceals: { entity: string; fields: Readonly<Record<string, (value: unknown) => unknown>> };
  /** SQL predicate: whether the rule holds for the row under `alias`. */
  sql(alias: string): string;
  /** TypeScript check: whether the rule holds for a row with these facts. */
  check(facts: Readonly<Record<F, boolean>>): boolean;
  /** The governed row as a reader sees it: itself when the rule holds, else with the concealed fields replaced. */
  present<T extends object>(row: T, holds: boolean): T;
}

function visibilityRule<F extends string>(
  spec: Pick<VisibilityRule<F>, 'name' | 'entity' | 'table' | 'facts' | 'holds' | 'conceals'>,
): VisibilityRule<F> {
  identifier(spec.table, `rule ${spec.name} table`);
  for (const [name, fact] of Object.entries<Fact>(spec.facts)) {
    identifier(name, `rule ${spec.name} fact`);
    if ('column' in fact) identifier(fact.column, `rule ${spec.name} column`);
    else {
      identifier(fact.exists.table, `rule ${spec.name} table`);
      identifier(fact.exists.foreignKey, `rule ${spec.name} foreign key`);
    }
  }
  const factSql = (name: F, alias: string): string => {
    const fact: Fact = spec.facts[name];
    if ('column' in fact) return `${alias}.${fact.column}`;
    const e = `${name}_${alias}`;
    return `exists (select 1 from ${fact.exists.table} ${e} where ${e}.${fact.exists.foreignKey} = ${alias}.id)`;
  };
  const toSql = (p: Predicate<F>, alias: string): string => {
    if ('fact' in p) return factSql(p.fact, alias);
    if ('not' in p) return `not ${toSql(p.not, alias)}`;
    const parts = ('anyOf' in p ? p.anyOf : p.allOf).map((q) => toSql(q, alias));
    return `(${parts.join('anyOf' in p ? ' or ' : ' and ')})`;
  };
  const evaluate = (p: Predicate<F>, facts: Readonly<Record<F, boolean>>): boolean => {
    if ('fact' in p) {
      const value = facts[p.fact];
      if (typeof value !== 'boolean') throw new TypeError(`rule ${spec.name}: fact ${p.fact} must be a boolean, got ${typeof value}`);
      return value;
    }
    if ('not' in p) return !evaluate(p.not, facts);
    return 'anyOf' in p ? p.anyOf.some((q) => evaluate(q, facts)) : p.allOf.every((q) => evaluate(q, facts));
  };
  const hidden = Object.entries(spec.conceals.fields);
  return Object.freeze({
    ...spec,
    sql: (alias: string) => {
      const text = toSql(spec.holds, alias);
      return text.startsWith('(') ? text : `(${text})`;
    },
    check: (facts: Readonly<Record<F, boolean>>) => evaluate(spec.holds, facts),
    present<T extends object>(row: T, holds: boolean): T {
      if (holds) return row;
      const out = { ...row } as Record<string, unknown>;
      for (const [field, conceal] of hidden) out[field] = conceal(out[field]);
      return out as T;
    },
  });
}
