import type { EntityManager } from '@mikro-orm/postgresql';
import { type CursorCodec, type CursorPosition, isUuid, type Page, toPage } from '../../db/pagination';
import { embeddedRows, plainShape, selectPlain } from '../../db/plain';
import {
  CURRENT_VERSION,
  childPagesBatchSql,
  childRowsSql,
  childSourceSql,
  cursorScope,
  FORK_ANCESTRY,
  MESSAGES,
  orderSql,
  pageLimit,
} from '../../db/read-plan';
import { pgArray } from '../../db/sql';
import { Message, type MessageView } from './message.entity';

/** A turn (its first version's id) as one conversation reads it. */
export interface TurnKey {
  conversationId: string;
  slot: string;
}

export interface MessagePageKey {
  conversationId: string;
  first: number;
  after: CursorPosition | null;
}

/**
 * Reads of messages for already owner-checked conversations. Each method
 * answers for many conversations in one statement (the loaders call them).
 * A conversation's pages follow the `MESSAGES` read plan (`db/read-plan.ts`).
 */
export class MessageService {
  constructor(private readonly cursors: CursorCodec) {}

  cursorScope(conversationId: string): string {
    return cursorScope(MESSAGES, conversationId);
  }

  /** Validates the paging args of `Conversation.messages` into a loader key. */
  pageKey(conversationId: string, first: number | null | undefined, after: string | null | undefined): MessagePageKey {
    return {
      conversationId,
      first: pageLimit(MESSAGES, first),
      after: after ? this.cursors.decode(this.cursorScope(conversationId), after) : null,
    };
  }

  /** One `LATERAL` statement: each conversation's page, oldest first, as plain rows. */
  async pages(em: EntityManager, keys: readonly MessagePageKey[]): Promise<Page<MessageView>[]> {
    const shape = plainShape<MessageView>(em, Message);
    // 'read': with read replicas, the request's route (`db/replicas.ts`); the primary otherwise.
    const rows: Array<Record<string, unknown> & { k_idx: number }> = await em
      .getConnection('read')
      .execute(childPagesBatchSql(MESSAGES, shape.columns), [
        pgArray(keys.map((k) => k.conversationId)),
        pgArray(keys.map((k) => k.after?.createdAt ?? null)),
        pgArray(keys.map((k) => k.after?.id ?? null)),
        pgArray(keys.map((k) => k.first + 1)),
      ]);
    const perKey: MessageView[][] = keys.map(() => []);
    for (const row of rows) perKey[Number(row.k_idx) - 1]!.push(shape.map(row));
    return keys.map((key, i) => toPage(perKey[i]!, key.first, (m) => this.cursors.encode(this.cursorScope(key.conversationId), m)));
  }

  /**
   * Each listed conversation's first page of messages, embedded in the list's
   * own statement (look-ahead, see `modules/common/lookahead.ts`): `column` joins the
   * conversations query aliased `parentAlias`; `pageOf` reads one of its rows.
   */
  embeddedFirstPages(em: EntityManager, parentAlias: string, first: number) {
    const embedded = embeddedRows<MessageView>(em, Message, {
      as: '__messages',
      // A literal (a validated page size): the limit appears twice in a page of a plan that inherits.
      childQuery: childRowsSql(MESSAGES, 'm', `${parentAlias}.id`, { limit: String(first + 1), parentRow: parentAlias }),
      orderBy: orderSql(MESSAGES, 'x'),
      params: [],
    });
    return {
      column: embedded.column,
      pageOf: (row: Record<string, unknown> & { id: string }): { key: MessagePageKey; page: Page<MessageView> } => {
        const key = { conversationId: row.id, first, after: null };
        return { key, page: toPage(embedded.read(row), first, (m) => this.cursors.encode(this.cursorScope(row.id), m)) };
      },
    };
  }

  /** Each conversation's number of messages as it reads them (a fork's inherited ones too, current versions only). */
  async counts(em: EntityManager, conversationIds: readonly string[]): Promise<Map<string, number>> {
    const rows: Array<{ conversation_id: string; n: string }> = await em.getConnection('read').execute(
      `select k.id as conversation_id, (select count(*) from (${childSourceSql(MESSAGES, (c) => `${c} = k.id`)}) m) as n
         from unnest(?::uuid[]) k(id)`,
      [pgArray([...conversationIds])],
    );
    return new Map(rows.map((r) => [r.conversation_id, Number(r.n)]));
  }

  async lastMessages(em: EntityManager, conversationIds: readonly string[]): Promise<MessageView[]> {
    const shape = plainShape<MessageView>(em, Message);
    const rows: Array<Record<string, unknown>> = await em.getConnection('read').execute(
      `select ${shape.columns('m')} from unnest(?::uuid[]) k(id)
        cross join lateral (${childRowsSql(MESSAGES, 'l', 'k.id', { limit: '1', last: true })}) m`,
      [pgArray([...conversationIds])],
    );
    return rows.map(shape.map);
  }

  /**
   * Every version of each turn as a conversation reads it (keys: the conversation and the turn's first
   * version id), oldest version first; `replacedAt` is null on the one the conversation shows (see {@link turnVersionsSql}).
   */
  async versionsIn(em: EntityManager, keys: readonly TurnKey[]): Promise<Array<MessageView & { readIn: string }>> {
    const valid = keys.filter((k) => isUuid(k.conversationId) && isUuid(k.slot));
    if (!valid.length) return [];
    const shape = plainShape<MessageView>(em, Message);
    const rows: Array<Record<string, unknown> & { k_cid: string; seg_at: Date | null }> = await em.getConnection().execute(
      `select k.cid as k_cid, v.seg_at, ${shape.columns('v')}
         from unnest(?::uuid[], ?::uuid[]) k(cid, slot) cross join lateral (${turnVersionsSql('k.cid', 'k.slot')}) v
        order by k.cid, v.version, v.seg_at nulls last`,
      [pgArray(valid.map((k) => k.conversationId)), pgArray(valid.map((k) => k.slot))],
    );
    const byKey = new Map<string, Array<{ row: MessageView; segAt: Date | null }>>();
    for (const r of rows) {
      const row = shape.map(r);
      const key = `${r.k_cid}|${row.versionOfId ?? row.id}`;
      byKey.set(key, [...(byKey.get(key) ?? []), { row, segAt: r.seg_at === null ? null : new Date(r.seg_at) }]);
    }
    const out: Array<MessageView & { readIn: string }> = [];
    for (const [key, versions] of byKey) {
      const shown = currentOf(versions);
      const readIn = key.slice(0, key.indexOf('|'));
      for (const { row } of versions) {
        out.push({ ...row, readIn, replacedAt: row === shown ? null : (row.replacedAt ?? row.answeredAt ?? row.createdAt) });
      }
    }
    return out;
  }

  /** The messages as stored (their own conversation), of conversations that are not deleted: where a fork's turn comes from. */
  originsByIds(em: EntityManager, ids: readonly string[]): Promise<MessageView[]> {
    return selectPlain(
      em,
      Message,
      'm',
      'm.id = any(?::uuid[]) and exists (select 1 from conversations c where c.id = m.conversation_id and c.deleted_at is null)',
      [pgArray(ids.filter(isUuid))],
    );
  }

  /** The whole history of one conversation, oldest first, as it reads (plain rows). */
  history(em: EntityManager, conversationId: string): Promise<MessageView[]> {
    return conversationMessages(em, conversationId);
  }
}

/**
 * One conversation's messages as it reads them (`MESSAGES`: a fork's inherited
 * ones, current versions), oldest first, as plain rows; with `before`, only
 * the turns strictly before that turn (its first version's id).
 */
export async function conversationMessages(
  em: EntityManager,
  conversationId: string,
  before?: { createdAt: Date; id: string },
): Promise<MessageView[]> {
  const shape = plainShape<MessageView>(em, Message);
  const cut = before ? ' where (m.created_at, coalesce(m.version_of_id, m.id)) < (?::timestamptz, ?::uuid)' : '';
  const rows: Array<Record<string, unknown>> = await em.getConnection().execute(
    `select ${shape.columns('m')} from (${childSourceSql(MESSAGES, (c) => `${c} = ?::uuid`)}) m${cut}
      order by ${orderSql(MESSAGES, 'm')}`,
    [conversationId, conversationId, ...(before ? [before.createdAt, before.id] : [])],
  );
  return rows.map(shape.map);
}

/** The id of a conversation's last message as it reads (null: none). */
export async function lastMessageId(em: EntityManager, conversationId: string): Promise<string | null> {
  const [row] = await em.execute<Array<{ id: string }>>(
    `select m.id from (${childSourceSql(MESSAGES, (c) => `${c} = ?::uuid`)}) m order by m.created_at desc, m.id desc limit 1`,
    [conversationId, conversationId],
  );
  return row?.id ?? null;
}

/**
 * The versions of one turn (`slot`, its first version's id) a conversation (`conversationId`, both SQL expressions)
 * can list: its own rows of the turn, and, through each ancestry segment that reaches the turn, the ancestor's rows
 * written by the time the segment was made (`seg_at`; null on its own rows). Which one it shows is `MESSAGES`'s
 * rule ({@link currentOf} reads it from these rows): its own current one, else the nearest segment's as of then.
 */
export function turnVersionsSql(conversationId: string, slot: string): string {
  const a = FORK_ANCESTRY;
  const v = CURRENT_VERSION;
  return `select m.*, null::timestamptz as seg_at from messages m
           where m.conversation_id = ${conversationId} and (m.id = ${slot} or m.${v.slot} = ${slot})
          union all
          select m.*, x.${a.asOf} as seg_at from ${a.table} x join messages m on m.conversation_id = x.${a.ancestor}
             and (m.id = ${slot} or m.${v.slot} = ${slot}) and coalesce(m.${v.writtenAt}, m.created_at) <= x.${a.asOf}
             and (m.created_at, coalesce(m.${v.slot}, m.id)) <= (x.${a.upto[0]}, x.${a.upto[1]})
           where x.${a.child} = ${conversationId}`;
}

/** Of a turn's versions as {@link turnVersionsSql} lists them, the one the conversation shows (as `childSourceSql` does). */
function currentOf<T extends { replacedAt?: Date | null; answeredAt?: Date | null; createdAt: Date }>(
  versions: ReadonlyArray<{ row: T; segAt: Date | null }>,
): T | undefined {
  const own = versions.find((v) => v.segAt === null && (v.row.replacedAt === null || v.row.replacedAt === undefined));
  if (own) return own.row;
  const inherited = versions
    .filter((v): v is { row: T; segAt: Date } => v.segAt !== null)
    .filter(({ row, segAt }) => (row.replacedAt ?? null) === null || row.replacedAt!.getTime() > segAt.getTime())
    .sort((x, y) => y.segAt.getTime() - x.segAt.getTime());
  return inherited[0]?.row;
}
