/**
 * `sendMessage`: store the user's message first (it is never lost), send the
 * conversation as this model sees it, store the reply with its measurements.
 * A provider failure answers PROVIDER_ERROR with `provider` and `reason`.
 *
 * `continueWith` and `regenerateMessage` go through the same admission (rate
 * limit, budget) and the same call:
 * - `continueWith`: the chosen comparison response is stored as the
 *   conversation's assistant turn (a message carrying `sourceResponseId`),
 *   then `content` as `sendMessage` does, sent to that response's model (same
 *   key label). Each model's history keeps only its own answers
 *   (`history.ts`), so the other answers stay in the comparison. With
 *   `conversationId` = a fork of the caller's that shows the comparison's
 *   prompt (inherited), both rows are the fork's own and the history is the
 *   fork's; the comparison's own conversation is unchanged.
 * - `regenerateMessage`: the turn's history (before it) goes to `model`; the
 *   answer is stored as a new version of the turn, current from then on, the
 *   others kept (`replacedAt` set). Concurrent regenerates of one turn are
 *   serialised on its first version's row: every version is kept, one is current.
 *   With `conversationId` = a fork that inherited the turn, the version is the
 *   fork's own row (at the turn's place): the fork reads it from then on, the
 *   conversation the turn came from is unchanged.
 */
import { insertThen } from '../../db/insert';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../auth/principal';
import { AppError, badInput, notFound } from '../../errors';
import { isUuid } from '../../db/pagination';
import { childSourceSql, MESSAGES } from '../../db/read-plan';
import { codePointLength } from '../../input/text-input';
import { costUsd, findCatalogEntry } from '../../llm/catalog';
import { endpointKey, type ModelId, parseModelId, toProvider } from '../../llm/model-id';
import { logProviderFailure } from '../../llm/provider-failure-log';
import { ProviderCallError } from '../../llm/provider-errors';
import type { Logger } from '../../observability/logger';
import { type ChatTurn, streamCompletion } from '../../llm/stream-completion';
import { Conversation, type ConversationView } from '../conversation/conversation.entity';
import type { Provider } from '../../llm/model-id';
import type { ModelAccess } from '../api-key/model-access';
import type { ConversationService } from '../conversation/conversation.service';
import { plannedCall, type ProviderCallAdmission } from '../usage/usage.service';
import { historiesByModel } from './history';
import { Message, MessageRole } from './message.entity';
import { lastMessageId, turnVersionsSql } from './message.service';
import { assertNothingHidden } from '../comparison/blind';
import { ComparisonResponse, ResponseStatus } from '../comparison/comparison.entity';

export const MAX_PROMPT_CHARS = 32_000;

export interface SendMessageArgs {
  conversationId: string;
  content: string;
  model: string;
}

export interface ContinueWithArgs {
  responseId: string;
  content: string;
  /** A fork of the caller's that inherited the comparison: the turn is written there (default: the comparison's own conversation). */
  conversationId?: string | null;
}

export interface RegenerateArgs {
  messageId: string;
  model: string;
  /** A fork that inherited the turn: the new version is the fork's own (default: the message's own conversation). */
  conversationId?: string | null;
}

export function validatePrompt(raw: string, field: string): string {
  const content = raw.trim();
  if (!content) throw badInput(`${field} must not be empty`, field);
  if (codePointLength(content) > MAX_PROMPT_CHARS) throw badInput(`${field} must be at most ${MAX_PROMPT_CHARS} characters`, field);
  return content;
}

export class ChatService {
  constructor(
    private readonly deps: {
      conversations: ConversationService;
      models: ModelAccess;
      /** Rate limit and spend budget, checked before anything is stored or sent. */
      usage: ProviderCallAdmission;
      requestTimeoutMs: number;
      /** A longer answer is cut and answers PROVIDER_ERROR (UNAVAILABLE) saying so. */
      maxOutputBytes: number;
      /** Where provider failures are logged. */
      logger?: Logger;
    },
  ) {}

  async send(em: EntityManager, principal: Principal, args: SendMessageArgs): Promise<Message> {
    const modelId = parseModelId(args.model);
    const content = validatePrompt(args.content, 'content');
    // A plain owned read with the blind check in the same statement: the rows below are written by id, so no entity is
    // needed (hydrating one cost more than the read).
    const conversation = await this.deps.conversations.getToContinue(em, principal, args.conversationId);
    const provider = toProvider(modelId.provider);

    const history = (await historiesByModel(em, conversation.id, [endpointKey(modelId)])).get(endpointKey(modelId)) ?? [];
    const release = await this.deps.usage.admit(principal, [plannedCall(modelId, [...history, { content }])]);
    try {
      return await this.call(em, principal, conversation, modelId, provider, history, content);
    } finally {
      // After the reply (and its cost) is stored, or the call failed.
      await release();
    }
  }

  /** The chosen response as the conversation's assistant turn, then `content` to its model (see the module comment). */
  async continueWith(em: EntityManager, principal: Principal, args: ContinueWithArgs): Promise<Message> {
    if (!isUuid(args.responseId)) throw notFound('Comparison response');
    if (args.conversationId !== null && args.conversationId !== undefined && !isUuid(args.conversationId)) throw notFound('Conversation');
    const content = validatePrompt(args.content, 'content');
    const response = await em.findOne(
      ComparisonResponse,
      { id: args.responseId, comparison: { owner: principal.userId } },
      { populate: ['comparison'] },
    );
    if (!response) throw notFound('Comparison response');
    const comparison = response.comparison.getEntity();
    // Where the turn is written: the comparison's own conversation, or a fork of the caller's that shows its prompt.
    const own = comparison.conversation?.id ?? null;
    const target = args.conversationId ?? own;
    if (!target) throw notFound('Conversation');
    const conversation = await this.deps.conversations.getForWrite(em, principal, target);
    const inFork = target !== own;
    // The comparison's prompt as this conversation reads it (a fork's inherited turns included).
    const [prompt] = await em.execute<Array<{ id: string }>>(
      `select m.id from (${childSourceSql(MESSAGES, (c) => `${c} = ?::uuid`)}) m where m.comparison_id = ? and m.role = ? limit 1`,
      [conversation.id, conversation.id, comparison.id, MessageRole.USER],
    );
    if (!prompt) throw notFound(inFork ? 'Comparison response' : 'Conversation');
    if (response.status !== ResponseStatus.COMPLETED) {
      throw badInput(`Only a COMPLETED response can be continued (this one is ${response.status})`, 'responseId');
    }
    await assertNothingHidden(em, conversation.id);
    const modelId = parseModelId(`${response.model}@${response.keyLabel}`);
    const provider = toProvider(modelId.provider);
    // The prompt and this model's own answer to it: exactly what the chosen turn adds.
    const history = (await historiesByModel(em, conversation.id, [endpointKey(modelId)])).get(endpointKey(modelId)) ?? [];
    const release = await this.deps.usage.admit(principal, [plannedCall(modelId, [...history, { content }])]);
    try {
      const userMessage = await em.transactional(async (tx) => {
        // One continuation per comparison: the conversation is locked while its last turn is checked.
        await tx.execute('select id from conversations where id = ? for update', [conversation.id]);
        if ((await lastMessageId(tx, conversation.id)) !== prompt.id) {
          throw badInput(
            inFork
              ? 'This fork has moved on since the comparison it inherited: fork at the response ' +
                  '(forkConversation(messageId, responseId)) and continue that fork'
              : 'The conversation has moved on since this comparison: fork it at its prompt with this response ' +
                  '(forkConversation(messageId, responseId)) and continue the fork',
            'responseId',
          );
        }
        const at = Date.now();
        tx.create(Message, {
          conversation: conversation.id,
          role: MessageRole.ASSISTANT,
          content: response.content,
          provider: response.provider,
          model: response.model,
          sourceResponseId: response.id,
          createdAt: new Date(at),
        });
        const user = tx.create(Message, { conversation: conversation.id, role: MessageRole.USER, content, createdAt: new Date(at + 1) });
        await tx.nativeUpdate(Conversation, { id: conversation.id }, { updatedAt: new Date(at + 1) });
        return user;
      });
      const turns: ChatTurn[] = [...history, { role: 'user', content: userMessage.content }];
      return await this.answer(em, principal, conversation, modelId, provider, turns);
    } finally {
      await release();
    }
  }

  /** A new current version of an assistant turn, answered by `model` (see the module comment). */
  async regenerate(em: EntityManager, principal: Principal, args: RegenerateArgs): Promise<Message> {
    if (!isUuid(args.messageId)) throw notFound('Message');
    if (args.conversationId !== null && args.conversationId !== undefined && !isUuid(args.conversationId)) throw notFound('Conversation');
    const modelId = parseModelId(args.model);
    const message = await em.findOne(Message, { id: args.messageId, conversation: { owner: principal.userId } });
    if (!message) throw notFound('Message');
    // Where the turn is regenerated: its own conversation, or a fork of the viewer's that reads this version of it.
    const target = args.conversationId ?? message.conversation.id;
    const slot = message.versionOfId ?? message.id;
    const conversation = await this.deps.conversations.getForWrite(em, principal, target);
    if (target !== message.conversation.id) {
      const [visible] = await em.execute<Array<{ id: string }>>(
        `select v.id from (select ?::uuid as cid, ?::uuid as slot) t cross join lateral (${turnVersionsSql('t.cid', 't.slot')}) v
          where v.id = ?`,
        [target, slot, message.id],
      );
      if (!visible) throw notFound('Message');
    }
    if (message.role !== MessageRole.ASSISTANT)
      throw badInput(`Only an ASSISTANT message can be regenerated (this one is ${message.role})`, 'messageId');
    await assertNothingHidden(em, conversation.id);
    const provider = toProvider(modelId.provider);
    const before = { createdAt: message.createdAt, id: slot };
    const history = (await historiesByModel(em, conversation.id, [endpointKey(modelId)], before)).get(endpointKey(modelId)) ?? [];
    // The turn answers the last prompt: an answer of this model to it (from its comparison) is what is being redone.
    while (history.at(-1)?.role === 'assistant') history.pop();
    const release = await this.deps.usage.admit(principal, [plannedCall(modelId, history)]);
    try {
      return await this.answer(em, principal, conversation, modelId, provider, history, { slot, createdAt: message.createdAt });
    } finally {
      await release();
    }
  }

  private async call(
    em: EntityManager,
    principal: Principal,
    conversation: ConversationView,
    modelId: ModelId,
    provider: Provider,
    history: ChatTurn[],
    content: string,
  ): Promise<Message> {
    const userMessage = em.create(Message, { conversation: conversation.id, role: MessageRole.USER, content }, { persist: false });
    await insertThen(em, userMessage, TOUCH_CONVERSATION, [userMessage.createdAt, conversation.id]);
    return this.answer(em, principal, conversation, modelId, provider, [...history, { role: 'user', content: userMessage.content }]);
  }

  /**
   * Sends `turns` to the model and stores its answer: a new message, or with
   * `version` a new current version of that turn (the others replaced, under
   * a lock on the turn's first version).
   */
  private async answer(
    em: EntityManager,
    principal: Principal,
    conversation: ConversationView,
    modelId: ModelId,
    provider: Provider,
    turns: ChatTurn[],
    version?: { slot: string; createdAt: Date },
  ): Promise<Message> {
    try {
      const model = await this.deps.models.languageModel(em, principal.userId, modelId);
      const result = await streamCompletion({
        provider: modelId.provider,
        model,
        messages: turns,
        timeoutMs: this.deps.requestTimeoutMs,
        maxOutputBytes: this.deps.maxOutputBytes,
      });
      const fields: ReplyFields = {
        conversation: conversation.id,
        role: MessageRole.ASSISTANT,
        content: result.text,
        provider,
        model: modelId.id,
        promptTokens: result.promptTokens,
        completionTokens: result.completionTokens,
        latencyMs: result.latencyMs,
        costUsd: costUsd(findCatalogEntry(modelId.provider, modelId.name), result.promptTokens, result.completionTokens),
        // What a personal token's daily cap counts (`usage.service.ts`).
        apiTokenId: principal.token?.id ?? null,
      };
      if (version) return await this.storeVersion(em, fields, version);
      const reply = em.create(Message, fields, { persist: false });
      await insertThen(em, reply, TOUCH_CONVERSATION, [reply.createdAt, conversation.id]);
      return reply;
    } catch (error) {
      if (error instanceof ProviderCallError) {
        if (this.deps.logger) logProviderFailure(this.deps.logger, modelId, error, { conversationId: conversation.id });
        throw new AppError('PROVIDER_ERROR', error.message, { provider, reason: error.reason });
      }
      throw error;
    }
  }

  private async storeVersion(em: EntityManager, fields: ReplyFields, version: { slot: string; createdAt: Date }): Promise<Message> {
    return em.transactional(async (tx) => {
      // Regenerates of one turn take turns here: each sees the versions before it (a statement after the lock: a fresh snapshot).
      await tx.execute('select id from messages where id = ? for update', [version.slot]);
      // The next number among the versions this conversation reads (a fork's inherited ones as of the fork, then its own).
      const at = fields.conversation;
      const [row] = await tx.execute<Array<{ next: number }>>(
        `select (coalesce(max(v.version), 0) + 1)::int as next
           from (select ?::uuid as cid, ?::uuid as slot) t cross join lateral (${turnVersionsSql('t.cid', 't.slot')}) v`,
        [at, version.slot],
      );
      const now = new Date();
      // Only this conversation's own current version is replaced: an inherited one stays as its conversation reads it.
      await tx.nativeUpdate(
        Message,
        { conversation: at, $or: [{ id: version.slot }, { versionOfId: version.slot }], replacedAt: null },
        { replacedAt: now },
      );
      const message = tx.create(Message, {
        ...fields,
        versionOfId: version.slot,
        version: row!.next,
        createdAt: version.createdAt,
        answeredAt: now,
      });
      await tx.nativeUpdate(Conversation, { id: fields.conversation }, { updatedAt: now });
      return message;
    });
  }
}

/** An answer's row, before it is a new message or a new version. */
/** A new message moves its conversation up the history (with the message, in its statement: `insertThen`). */
const TOUCH_CONVERSATION = 'update conversations set updated_at = ? where id = ?';

type ReplyFields = Pick<
  Message,
  'role' | 'content' | 'provider' | 'model' | 'promptTokens' | 'completionTokens' | 'latencyMs' | 'costUsd' | 'apiTokenId'
> & { /** The conversation's id. */ conversation: string };
