import type { EntityManager } from '@mikro-orm/postgresql';
import { randomUUID } from 'node:crypto';
import type { Principal } from '../../auth/principal';
import { badInput, notFound } from '../../errors';
import { codePointLength, sliceCodePoints } from '../../input/text-input';
import { type CursorCodec, isUuid, type Page } from '../../db/pagination';
import {
  childSourceSql,
  CONVERSATION_BY_ID,
  CONVERSATIONS,
  type ExtraColumn,
  MESSAGES,
  ownedRowsSql,
  ownerSql,
  readOwnedPage,
  REVEALED,
} from '../../db/read-plan';
import { plainShape, selectPlain } from '../../db/plain';
import type { PreparedStatement, PreparedStatements } from '../../db/prepared';
import { pgArray } from '../../db/sql';
import { hiddenComparisonSql, refuseHidden } from '../comparison/blind';
import { ComparisonResponse, ComparisonResult, ResponseStatus } from '../comparison/comparison.entity';
import { Message, MessageRole } from '../message/message.entity';
import { ConversationAncestor } from './conversation-ancestor.entity';
import { Conversation, type ConversationView } from './conversation.entity';

export interface ForkArgs {
  messageId: string;
  title?: string | null;
  /** A response of the comparison whose prompt is `messageId`: the fork's history ends with that answer. */
  responseId?: string | null;
}

/** How many conversations a fork's history may come from (fork of a fork of …): each is a row it writes and a branch it reads. */
export const MAX_FORK_DEPTH = 32;

const MAX_TITLE = 200;

export class ConversationService {
  /** The conversation's INSERT, named once (`db/prepared.ts`). */
  private insertStatement?: PreparedStatement;

  constructor(
    private readonly cursors: CursorCodec,
    /** Named statements on the primary: createConversation's INSERT (without: the ORM's connection, unnamed). */
    private readonly writes?: PreparedStatements,
  ) {}

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
    return em.count(Conversation, { owner: principal.userId, deletedAt: null });
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

  /**
   * {@link get} for a new turn (sendMessage): owner-scoped, NOT_FOUND as `get`, then BAD_USER_INPUT while the
   * conversation holds a blind comparison not yet voted on (`comparison/blind.ts`); both in one statement.
   */
  async getToContinue(em: EntityManager, principal: Principal, id: string): Promise<ConversationView> {
    if (!isUuid(id)) throw notFound('Conversation');
    const shape = plainShape<ConversationView & { hiddenComparisonId: string | null }>(em, Conversation);
    const [row] = await em.getConnection().execute<Array<Record<string, unknown>>>(
      `select ${shape.columns('c')}, ${hiddenComparisonSql('c.id')} as "hiddenComparisonId"
           from conversations c where ${ownedRowsSql(CONVERSATION_BY_ID, 'c')}`,
      [pgArray([id]), principal.userId],
    );
    if (!row) throw notFound('Conversation');
    const { hiddenComparisonId, ...conversation } = shape.map(row);
    refuseHidden(hiddenComparisonId);
    return conversation;
  }

  /** Writes are entities: the managed conversation, owner-scoped, for a write in this `em`. */
  async getForWrite(em: EntityManager, principal: Principal, id: string): Promise<Conversation> {
    const conversation = isUuid(id) ? await em.findOne(Conversation, { id, owner: principal.userId, deletedAt: null }) : null;
    if (!conversation) throw notFound('Conversation');
    return conversation;
  }

  /**
   * One INSERT of a plain row (`db/plain.ts`: the columns come from the entity's mapping), a named statement: no
   * entity, no unit of work (a flush would wrap it in BEGIN … COMMIT), parsed once per connection. The row is answered
   * as reads answer a conversation.
   */
  async create(em: EntityManager, principal: Principal, title: string | null | undefined): Promise<ConversationView> {
    // The defaults of `BaseEntity` and `Conversation`: a random id, created and updated now.
    const now = new Date();
    const conversation: ConversationView = {
      id: randomUUID(),
      createdAt: now,
      updatedAt: now,
      ownerId: principal.userId,
      title: cleanTitle(title ?? 'New conversation'),
      forkedFromMessageId: null,
    };
    const shape = plainShape<ConversationView>(em, Conversation);
    const params = shape.insertParams(conversation);
    if (this.writes) await this.writes.query((this.insertStatement ??= this.writes.prepare(shape.insertSql)), params);
    else await em.getConnection('write').execute(shape.insertSql, params);
    return conversation;
  }

  async rename(em: EntityManager, principal: Principal, id: string, title: string): Promise<Conversation> {
    const conversation = await this.getForWrite(em, principal, id);
    conversation.title = cleanTitle(title);
    conversation.updatedAt = new Date();
    await em.flush();
    return conversation;
  }

  /**
   * Messages go with it (FK cascade); comparisons are detached (FK set null).
   * While forks still read its messages it is hidden instead (`deletedAt`:
   * every owned read leaves it out, its comparisons are detached as well) and
   * removed with the last fork that reads from it: deleting a conversation
   * never changes what a fork shows.
   */
  async delete(em: EntityManager, principal: Principal, id: string): Promise<boolean> {
    if (!isUuid(id)) throw notFound('Conversation');
    await em.transactional(async (tx) => {
      const [row] = await tx.execute<Array<{ id: string }>>(
        `select c.id from conversations c where c.id = ? and ${ownerSql(CONVERSATION_BY_ID, 'c')} for update`,
        [id, principal.userId],
      );
      if (!row) throw notFound('Conversation');
      if (await tx.count(ConversationAncestor, { ancestor: id })) {
        await tx.nativeUpdate(Conversation, { id }, { deletedAt: new Date() });
        await tx.nativeUpdate(ComparisonResult, { conversation: id }, { conversation: null });
        return;
      }
      const ancestors = (await tx.find(ConversationAncestor, { conversation: id })).map((a) => a.ancestor.id);
      await tx.nativeDelete(Conversation, { id });
      // Hidden ancestors no fork reads from any more go too (one pass per generation: each frees the next).
      let removed = ancestors.length;
      while (removed > 0) {
        const result = (await tx.execute(
          `delete from conversations c where c.id = any(?::uuid[]) and c.deleted_at is not null
             and not exists (select 1 from conversation_ancestors x where x.ancestor_id = c.id)`,
          [pgArray(ancestors)],
          'run',
        )) as unknown as { affectedRows?: number };
        removed = result.affectedRows ?? 0;
      }
    });
    return true;
  }

  /**
   * A new conversation whose history is `source`'s up to and including the
   * message (then, with `responseId`, that comparison answer), then its own.
   * The history is shared by reference (`conversation_ancestors`, see
   * `FORK_ANCESTRY` in `db/read-plan.ts`): the conversation row, one
   * ancestry row per conversation the history comes from, and the chosen
   * answer's message, whatever the history's length. The message is found in
   * the viewer's conversations as they read (a fork's inherited message forks
   * that fork); a message of another user, of a deleted conversation, or not a
   * current version is NOT_FOUND / BAD_USER_INPUT before anything is written.
   */
  async fork(em: EntityManager, principal: Principal, args: ForkArgs): Promise<Conversation> {
    if (!isUuid(args.messageId)) throw notFound('Message');
    if (args.responseId !== null && args.responseId !== undefined && !isUuid(args.responseId)) throw notFound('Comparison response');
    const title = args.title === null || args.title === undefined ? null : cleanTitle(args.title);
    const mine = (col: string) => `${col} in (select c.id from conversations c where ${ownerSql(CONVERSATIONS, 'c')})`;
    // Where the viewer reads this message: its own conversation first, else the oldest fork that inherits it.
    const where: Array<{ conversation_id: string; own: boolean }> = await em.getConnection().execute(
      `select v.conversation_id, v.conversation_id = o.conversation_id as own
         from (${childSourceSql(MESSAGES, mine)}) v join messages o on o.id = v.id join conversations f on f.id = v.conversation_id
        where v.id = ? order by own desc, f.created_at, f.id limit 1`,
      [principal.userId, principal.userId, args.messageId],
    );
    const found = where[0];
    if (!found) throw notFound('Message');
    const message = await em.findOneOrFail(Message, { id: args.messageId });
    const source = await em.findOneOrFail(Conversation, { id: found.conversation_id });
    const slot = message.versionOfId ?? message.id;
    const cut = { createdAt: message.createdAt, id: slot };
    const chosen = args.responseId ? await this.chosenResponse(em, principal, message, args.responseId) : null;
    await this.assertNothingHiddenUpTo(em, source.id, cut);

    const segments = await em.find(ConversationAncestor, { conversation: source.id });
    // Conversations with rows of their own up to the cut: besides the one holding the message, a fork's own version of
    // a turn it inherited (`regenerateMessage` with `conversationId`) lives there, so that segment is kept too.
    const withRows = new Set(
      (
        await em.execute<Array<{ conversation_id: string }>>(
          `select distinct m.conversation_id from messages m where m.conversation_id = any(?::uuid[])
              and (m.created_at, coalesce(m.version_of_id, m.id)) <= (?::timestamptz, ?::uuid)`,
          [pgArray([source.id, ...segments.map((s) => s.ancestor.id)]), cut.createdAt, cut.id],
        )
      ).map((r) => r.conversation_id),
    );
    const inherited = segments.filter(
      (s) =>
        s.ancestor.id === message.conversation.id ||
        before(s.uptoCreatedAt, s.uptoId, cut.createdAt, cut.id) ||
        withRows.has(s.ancestor.id),
    );
    const ownSegment = found.own || withRows.has(source.id);
    if (inherited.length + (ownSegment ? 1 : 0) > MAX_FORK_DEPTH) {
      throw badInput(`A fork's history may come from at most ${MAX_FORK_DEPTH} conversations: fork an earlier one`, 'messageId');
    }
    const now = new Date();
    const fork = em.create(Conversation, {
      owner: principal.userId,
      title: title ?? cleanTitle(sliceCodePoints(`Fork of ${source.title}`, MAX_TITLE)),
      forkedFromMessageId: message.id,
      createdAt: now,
      updatedAt: now,
    });
    for (const s of inherited) {
      const containsCut = !before(s.uptoCreatedAt, s.uptoId, cut.createdAt, cut.id);
      em.create(ConversationAncestor, {
        conversation: fork,
        ancestor: s.ancestor.id,
        uptoCreatedAt: containsCut ? cut.createdAt : s.uptoCreatedAt,
        uptoId: containsCut ? cut.id : s.uptoId,
        // Versions as the source read them.
        createdAt: s.createdAt,
      });
    }
    if (ownSegment)
      em.create(ConversationAncestor, {
        conversation: fork,
        ancestor: source.id,
        uptoCreatedAt: cut.createdAt,
        uptoId: cut.id,
        createdAt: now,
      });
    if (chosen) {
      em.create(Message, {
        conversation: fork,
        role: MessageRole.ASSISTANT,
        content: chosen.content,
        provider: chosen.provider,
        model: chosen.model,
        sourceResponseId: chosen.id,
        createdAt: new Date(now.getTime() + 1),
      });
    }
    await em.flush();
    return fork;
  }

  /** The COMPLETED response of the comparison whose prompt `message` is, owned by the viewer. */
  async chosenResponse(em: EntityManager, principal: Principal, message: Message, responseId: string): Promise<ComparisonResponse> {
    const response = await em.findOne(ComparisonResponse, { id: responseId, comparison: { owner: principal.userId } });
    if (!response) throw notFound('Comparison response');
    if (message.role !== MessageRole.USER || message.comparison?.id !== response.comparison.id) {
      throw badInput('responseId must be a response of the comparison whose prompt is messageId', 'responseId');
    }
    if (response.status !== ResponseStatus.COMPLETED) {
      throw badInput(`Only a COMPLETED response can be chosen (this one is ${response.status})`, 'responseId');
    }
    return response;
  }

  /**
   * BAD_USER_INPUT when the history up to `cut` holds a blind comparison not
   * yet voted on: a fork would let the models' own earlier answers (or its
   * chosen answer's model) tell who wrote which (see `comparison/blind.ts`).
   */
  private async assertNothingHiddenUpTo(em: EntityManager, conversationId: string, cut: { createdAt: Date; id: string }): Promise<void> {
    const [hidden] = await em.getConnection().execute<Array<{ id: string }>>(
      `select r.id from (${childSourceSql(MESSAGES, (c) => `${c} = ?::uuid`)}) m join comparison_results r on r.id = m.comparison_id
        where (m.created_at, coalesce(m.version_of_id, m.id)) <= (?::timestamptz, ?::uuid) and not ${REVEALED.sql('r')} limit 1`,
      [conversationId, conversationId, cut.createdAt, cut.id],
    );
    if (hidden) {
      throw badInput(
        `This history has a blind comparison you have not voted on (${hidden.id}): vote on it first. ` +
          'A fork would let the models tell who wrote which.',
        'messageId',
      );
    }
  }

  /** Marks activity (a new message or comparison) so `updatedAt` reflects it. */
  async touch(em: EntityManager, id: string): Promise<void> {
    await em.nativeUpdate(Conversation, { id }, { updatedAt: new Date() });
  }
}

/** Whether `(at, id)` comes before `(cutAt, cutId)` in the messages' order. */
function before(at: Date, id: string, cutAt: Date, cutId: string): boolean {
  return at.getTime() < cutAt.getTime() || (at.getTime() === cutAt.getTime() && id < cutId);
}

/** A title as stored: trimmed, not empty, at most {@link MAX_TITLE} characters (BAD_USER_INPUT otherwise). */
export function cleanTitle(raw: string): string {
  const title = raw.trim();
  if (!title) throw badInput('title must not be empty', 'title');
  if (codePointLength(title) > MAX_TITLE) throw badInput(`title must be at most ${MAX_TITLE} characters`, 'title');
  return title;
}
