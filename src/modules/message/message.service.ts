import type { EntityManager } from '@mikro-orm/postgresql';
import { type CursorCodec, type CursorPosition, type Page, toPage } from '../../db/pagination';
import { embeddedRows, plainShape } from '../../db/plain';
import { childPagesBatchSql, childRowsSql, cursorScope, MESSAGES, orderSql, pageLimit } from '../../db/read-plan';
import { pgArray } from '../../db/sql';
import { Message, type MessageView } from './message.entity';

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
    const rows: Array<Record<string, unknown> & { k_idx: number }> = await em
      .getConnection()
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
      childQuery: childRowsSql(MESSAGES, 'm', `${parentAlias}.id`, { limit: '?' }),
      orderBy: orderSql(MESSAGES, 'x'),
      params: [first + 1],
    });
    return {
      column: embedded.column,
      pageOf: (row: Record<string, unknown> & { id: string }): { key: MessagePageKey; page: Page<MessageView> } => {
        const key = { conversationId: row.id, first, after: null };
        return { key, page: toPage(embedded.read(row), first, (m) => this.cursors.encode(this.cursorScope(row.id), m)) };
      },
    };
  }

  async counts(em: EntityManager, conversationIds: readonly string[]): Promise<Map<string, number>> {
    const rows: Array<{ conversation_id: string; n: string }> = await em
      .getConnection()
      .execute(`select conversation_id, count(*) as n from messages where conversation_id = any(?::uuid[]) group by conversation_id`, [
        pgArray([...conversationIds]),
      ]);
    return new Map(rows.map((r) => [r.conversation_id, Number(r.n)]));
  }

  async lastMessages(em: EntityManager, conversationIds: readonly string[]): Promise<MessageView[]> {
    const shape = plainShape<MessageView>(em, Message);
    const rows: Array<Record<string, unknown>> = await em.getConnection().execute(
      `select distinct on (m.conversation_id) ${shape.columns('m')} from messages m
        where m.conversation_id = any(?::uuid[])
        order by m.conversation_id, m.created_at desc, m.id desc`,
      [pgArray([...conversationIds])],
    );
    return rows.map(shape.map);
  }

  /** The whole history of one conversation, oldest first (for sending to a model). */
  history(em: EntityManager, conversationId: string): Promise<Message[]> {
    return em.find(Message, { conversation: conversationId }, { orderBy: { createdAt: 'asc', id: 'asc' } });
  }
}
