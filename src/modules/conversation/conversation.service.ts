import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../auth/principal';
import { badInput, notFound } from '../../errors';
import { codePointLength } from '../../input/text-input';
import { type CursorCodec, isUuid, type Page } from '../../db/pagination';
import { CONVERSATION_BY_ID, CONVERSATIONS, type ExtraColumn, ownedRowsSql, readOwnedPage } from '../../db/read-plan';
import { selectPlain } from '../../db/plain';
import { pgArray } from '../../db/sql';
import { Conversation, type ConversationView } from './conversation.entity';

const MAX_TITLE = 200;

export class ConversationService {
  constructor(private readonly cursors: CursorCodec) {}

  /** The `CONVERSATIONS` read plan (newest first, keyset-paged on (created_at, id) with the owner index). Plain rows. */
  list(
    em: EntityManager,
    principal: Principal,
    first: number | null | undefined,
    after: string | null | undefined,
    extraColumns?: ExtraColumn[],
  ): Promise<Page<ConversationView>> {
    return readOwnedPage(em, CONVERSATIONS, { alias: 'c', ownerId: principal.userId, cursors: this.cursors, first, after, extraColumns });
  }

  count(em: EntityManager, principal: Principal): Promise<number> {
    return em.count(Conversation, { owner: principal.userId });
  }

  /** Owner-scoped: another user's id behaves exactly like a missing one. Plain rows. */
  async findByIds(em: EntityManager, principal: Principal, ids: readonly string[]): Promise<ConversationView[]> {
    const valid = ids.filter(isUuid);
    if (valid.length === 0) return [];
    return selectPlain(em, Conversation, 'c', ownedRowsSql(CONVERSATION_BY_ID, 'c'), [pgArray(valid), principal.userId]);
  }

  async get(em: EntityManager, principal: Principal, id: string): Promise<ConversationView> {
    const [conversation] = await this.findByIds(em, principal, [id]);
    if (!conversation) throw notFound('Conversation');
    return conversation;
  }

  /** Writes are entities: the managed conversation, owner-scoped, for a write in this `em`. */
  async getForWrite(em: EntityManager, principal: Principal, id: string): Promise<Conversation> {
    const conversation = isUuid(id) ? await em.findOne(Conversation, { id, owner: principal.userId }) : null;
    if (!conversation) throw notFound('Conversation');
    return conversation;
  }

  async create(em: EntityManager, principal: Principal, title: string | null | undefined): Promise<Conversation> {
    const conversation = this.draft(em, principal, title);
    await em.flush();
    return conversation;
  }

  /** A new conversation persisted with the caller's next flush (a comparison's start writes it in its own transaction). */
  draft(em: EntityManager, principal: Principal, title: string | null | undefined): Conversation {
    return em.create(Conversation, { owner: principal.userId, title: cleanTitle(title ?? 'New conversation') });
  }

  async rename(em: EntityManager, principal: Principal, id: string, title: string): Promise<Conversation> {
    const conversation = await this.getForWrite(em, principal, id);
    conversation.title = cleanTitle(title);
    conversation.updatedAt = new Date();
    await em.flush();
    return conversation;
  }

  /** Messages go with it (FK cascade); comparisons are detached (FK set null). */
  async delete(em: EntityManager, principal: Principal, id: string): Promise<boolean> {
    if (!isUuid(id)) throw notFound('Conversation');
    const deleted = await em.nativeDelete(Conversation, { id, owner: principal.userId });
    if (!deleted) throw notFound('Conversation');
    return true;
  }

  /** Marks activity (a new message or comparison) so `updatedAt` reflects it. */
  async touch(em: EntityManager, id: string): Promise<void> {
    await em.nativeUpdate(Conversation, { id }, { updatedAt: new Date() });
  }
}

function cleanTitle(raw: string): string {
  const title = raw.trim();
  if (!title) throw badInput('title must not be empty', 'title');
  if (codePointLength(title) > MAX_TITLE) throw badInput(`title must be at most ${MAX_TITLE} characters`, 'title');
  return title;
}
