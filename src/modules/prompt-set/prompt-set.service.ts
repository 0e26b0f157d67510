/**
 * Prompt sets: owner-scoped exactly like conversations (another user's set or
 * item answers as a missing one), read through the `PROMPT_SETS`,
 * `PROMPT_SET_BY_ID` and `PROMPT_ITEMS` read plans (`db/read-plan.ts`), written
 * as entities. Every write that adds items runs in one transaction holding the
 * set's row lock, so the 1,000-item bound holds under concurrent imports and an
 * import is written whole or not at all.
 */
import { LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../auth/principal';
import { badInput, notFound } from '../../errors';
import { type CursorCodec, isUuid, type Page, toPage } from '../../db/pagination';
import { plainShape, selectPlain } from '../../db/plain';
import {
  childPagesBatchSql,
  cursorScope,
  type ExtraColumn,
  ownedRowsSql,
  pageLimit,
  PROMPT_ITEMS,
  PROMPT_SET_BY_ID,
  PROMPT_SETS,
  readOwnedPage,
} from '../../db/read-plan';
import { pgArray } from '../../db/sql';
import { type AssertionSpec, limitSchemas } from './assertions';
import { type ImportFormat, parseImport } from './prompt-item-import';
import {
  assertionsOf,
  checkDescription,
  checkItem,
  checkName,
  type CleanItem,
  MAX_ITEMS_PER_SET,
  type PromptItemDraft,
} from './prompt-items';
import { PromptItem, type PromptItemView, PromptSet, type PromptSetView } from './prompt-set.entity';

export interface PromptSetDraft {
  name: string;
  description?: string | null;
  items?: readonly PromptItemDraft[] | null;
  defaultAssertions?: unknown;
}

export interface PromptItemPageKey {
  promptSetId: string;
  first: number;
  after: { position: number; id: string } | null;
}

/** A set's items with the assertions each is scored by: the set's defaults, then the item's own (what an eval run reads). */
export interface ItemsToRun {
  set: PromptSetView;
  items: Array<PromptItemView & { effectiveAssertions: AssertionSpec[] }>;
}

const INPUT = { label: 'input', extensions: {} };
const count = (n: number) => n.toLocaleString('en-US');

export class PromptSetService {
  constructor(private readonly cursors: CursorCodec) {}

  // ─── Reads (plain rows) ────────────────────────────────────────────────────

  /** The `PROMPT_SETS` read plan: newest first, keyset-paged on (created_at, id) with the owner index. */
  list(em: EntityManager, principal: Principal, first: number | null | undefined, after: string | null | undefined, extra?: ExtraColumn[]) {
    const ownerId = principal.userId;
    return readOwnedPage<PromptSetView>(em, PROMPT_SETS, { alias: 's', ownerId, cursors: this.cursors, first, after, extraColumns: extra });
  }

  count(em: EntityManager, principal: Principal): Promise<number> {
    return em.count(PromptSet, { owner: principal.userId });
  }

  /** Owner-scoped: another user's id behaves exactly like a missing one. */
  async findByIds(em: EntityManager, principal: Principal, ids: readonly string[]): Promise<PromptSetView[]> {
    const valid = ids.filter(isUuid);
    if (valid.length === 0) return [];
    return selectPlain(em, PromptSet, 's', ownedRowsSql(PROMPT_SET_BY_ID, 's'), [pgArray(valid), principal.userId]);
  }

  async get(em: EntityManager, principal: Principal, id: string): Promise<PromptSetView> {
    const [set] = await this.findByIds(em, principal, [id]);
    if (!set) throw notFound('Prompt set');
    return set;
  }

  /** Validates `PromptSet.items`' paging args into a loader key (for a set already owner-checked). */
  itemPageKey(promptSetId: string, first: number | null | undefined, after: string | null | undefined): PromptItemPageKey {
    return { promptSetId, first: pageLimit(PROMPT_ITEMS, first), after: after ? this.decodeItemCursor(promptSetId, after) : null };
  }

  /** Every key's page of items, in position order, in one `LATERAL` statement. */
  async itemPages(em: EntityManager, keys: readonly PromptItemPageKey[]): Promise<Page<PromptItemView>[]> {
    const shape = plainShape<PromptItemView>(em, PromptItem);
    const rows: Array<Record<string, unknown> & { k_idx: number }> = await em
      .getConnection()
      .execute(childPagesBatchSql(PROMPT_ITEMS, shape.columns), [
        pgArray(keys.map((k) => k.promptSetId)),
        pgArray(keys.map((k) => k.after?.position ?? null)),
        pgArray(keys.map((k) => k.after?.id ?? null)),
        pgArray(keys.map((k) => k.first + 1)),
      ]);
    const perKey: PromptItemView[][] = keys.map(() => []);
    for (const row of rows) perKey[Number(row.k_idx) - 1]!.push(shape.map(row));
    return keys.map((key, i) => toPage(perKey[i]!, key.first, (item) => this.encodeItemCursor(key.promptSetId, item)));
  }

  async itemCounts(em: EntityManager, setIds: readonly string[]): Promise<Map<string, number>> {
    const rows: Array<{ prompt_set_id: string; n: number }> = await em
      .getConnection()
      .execute(`select prompt_set_id, count(*)::int as n from prompt_items where prompt_set_id = any(?::uuid[]) group by prompt_set_id`, [
        pgArray([...setIds]),
      ]);
    return new Map(rows.map((r) => [r.prompt_set_id, Number(r.n)]));
  }

  /**
   * The whole set as an eval run reads it: every item in position order, each
   * with the assertions it is scored by (the set's defaults, then its own).
   * NOT_FOUND for another user's set.
   */
  async itemsToRun(em: EntityManager, principal: Principal, promptSetId: string): Promise<ItemsToRun> {
    const set = await this.get(em, principal, promptSetId);
    const items = await selectPlain<PromptItemView>(em, PromptItem, 'i', `i.prompt_set_id = ? order by i.position`, [set.id]);
    return { set, items: items.map((item) => ({ ...item, effectiveAssertions: [...set.defaultAssertions, ...item.assertions] })) };
  }

  // ─── Writes (entities) ─────────────────────────────────────────────────────

  /** The set and its items in one transaction; every item is checked before anything is written. */
  async create(em: EntityManager, principal: Principal, draft: PromptSetDraft): Promise<PromptSet> {
    const name = checkName(draft.name, INPUT);
    const description = checkDescription(draft.description, INPUT);
    const defaultAssertions = assertionsOf(draft.defaultAssertions, INPUT, 'defaultAssertions');
    const drafts = draft.items ?? [];
    if (drafts.length > MAX_ITEMS_PER_SET) {
      const message = `items: a set holds at most ${count(MAX_ITEMS_PER_SET)} items, got ${count(drafts.length)}: split them across sets`;
      throw badInput(message, 'items');
    }
    limitSchemas(drafts as Array<{ assertions?: unknown }>, defaultAssertions);
    const items = drafts.map((d, i) => checkItem(d, { label: `items[${i}]`, extensions: { index: i } }, defaultAssertions));
    return em.transactional(async (tx) => {
      const set = tx.create(PromptSet, { owner: principal.userId, name, description, defaultAssertions });
      this.addItems(tx, set, items, 0);
      await tx.flush();
      return set;
    });
  }

  /**
   * Appends the items of a JSONL or CSV file: all of them or none (one
   * transaction; the first bad line is named and nothing is written).
   */
  async importItems(em: EntityManager, principal: Principal, promptSetId: string, format: ImportFormat, data: string): Promise<PromptSet> {
    const drafts = parseImport(format, data, MAX_ITEMS_PER_SET);
    // Before the transaction: compiling schemas is synchronous work that must not hold the set's lock or a connection.
    limitSchemas(drafts.map((d) => d.draft as { assertions?: unknown }));
    return em.transactional(async (tx) => {
      const set = await this.lockForWrite(tx, principal, promptSetId);
      const place = (line: number) => ({ label: `line ${line}`, extensions: { line } });
      const items = drafts.map(({ line, draft }) => checkItem(draft, place(line), set.defaultAssertions));
      const { n, last } = await this.itemStats(tx, set.id);
      if (n + items.length > MAX_ITEMS_PER_SET) {
        throw badInput(
          `the set has ${count(n)} items and the file ${count(items.length)}: a set holds at most ${count(MAX_ITEMS_PER_SET)} items; ` +
            'nothing was imported: import fewer items or use another set',
          'data',
        );
      }
      this.addItems(tx, set, items, last);
      set.updatedAt = new Date();
      await tx.flush();
      return set;
    });
  }

  /** Replaces the item's prompt, system, reference, assertions and tags (an omitted optional field is cleared). */
  async updateItem(em: EntityManager, principal: Principal, id: string, draft: PromptItemDraft): Promise<PromptItem> {
    const item = await this.itemForWrite(em, principal, id);
    const set = item.promptSet.getEntity();
    const clean = checkItem(draft, { label: 'input', extensions: {} }, set.defaultAssertions);
    Object.assign(item, clean);
    set.updatedAt = new Date();
    await em.flush();
    return item;
  }

  async deleteItem(em: EntityManager, principal: Principal, id: string): Promise<boolean> {
    const item = await this.itemForWrite(em, principal, id);
    item.promptSet.getEntity().updatedAt = new Date();
    await em.remove(item).flush();
    return true;
  }

  /** Its items go with it (FK cascade). */
  async deleteSet(em: EntityManager, principal: Principal, id: string): Promise<boolean> {
    if (!isUuid(id)) throw notFound('Prompt set');
    const deleted = await em.nativeDelete(PromptSet, { id, owner: principal.userId });
    if (!deleted) throw notFound('Prompt set');
    return true;
  }

  // ─── Helpers ───────────────────────────────────────────────────────────────

  private addItems(em: EntityManager, set: PromptSet, items: readonly CleanItem[], lastPosition: number): void {
    items.forEach((item, i) => {
      em.create(PromptItem, { ...item, promptSet: set, position: lastPosition + i + 1 });
    });
  }

  /** The owner's set, its row locked until the transaction ends (writers that add items queue here). */
  private async lockForWrite(tx: EntityManager, principal: Principal, id: string): Promise<PromptSet> {
    const set = isUuid(id) ? await tx.findOne(PromptSet, { id, owner: principal.userId }, { lockMode: LockMode.PESSIMISTIC_WRITE }) : null;
    if (!set) throw notFound('Prompt set');
    return set;
  }

  private async itemStats(tx: EntityManager, setId: string): Promise<{ n: number; last: number }> {
    const sql = 'select count(*)::int as n, coalesce(max(position), 0)::int as last from prompt_items where prompt_set_id = ?';
    // `tx.execute` runs in the transaction (the connection's `execute` would take another connection from the pool).
    const [row] = await tx.execute<Array<{ n: number; last: number }>>(sql, [setId]);
    return { n: Number(row!.n), last: Number(row!.last) };
  }

  /** The item, with its set, when the set is the principal's; NOT_FOUND otherwise. */
  private async itemForWrite(em: EntityManager, principal: Principal, id: string): Promise<PromptItem> {
    const owned = { id, promptSet: { owner: principal.userId } };
    const item = isUuid(id) ? await em.findOne(PromptItem, owned, { populate: ['promptSet'] }) : null;
    if (!item) throw notFound('Prompt item');
    return item;
  }

  private encodeItemCursor(promptSetId: string, item: PromptItemView): string {
    return this.cursors.encode(cursorScope(PROMPT_ITEMS, promptSetId), item, String(item.position));
  }

  /** BAD_USER_INPUT for a cursor this server did not sign for this set's items. */
  private decodeItemCursor(promptSetId: string, cursor: string): { position: number; id: string } {
    const { id, extra } = this.cursors.decode(cursorScope(PROMPT_ITEMS, promptSetId), cursor);
    const position = Number(extra);
    if (extra === undefined || !Number.isSafeInteger(position)) {
      throw badInput('Invalid cursor: pass pageInfo.endCursor from the previous page of this list', 'after');
    }
    return { position, id };
  }
}
