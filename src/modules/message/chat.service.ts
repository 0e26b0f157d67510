/**
 * `sendMessage`: store the user's message first (it is never lost), send the
 * conversation as this model sees it, store the reply with its measurements.
 * A provider failure answers PROVIDER_ERROR with `provider` and `reason`.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../auth/principal';
import { AppError, badInput } from '../../errors';
import { codePointLength } from '../../input/text-input';
import { costUsd, findCatalogEntry } from '../../llm/catalog';
import { endpointKey, type ModelId, parseModelId, toProvider } from '../../llm/model-id';
import { logProviderFailure } from '../../llm/provider-failure-log';
import { ProviderCallError } from '../../llm/provider-errors';
import type { Logger } from '../../observability/logger';
import { type ChatTurn, streamCompletion } from '../../llm/stream-completion';
import type { Conversation } from '../conversation/conversation.entity';
import type { Provider } from '../../llm/model-id';
import type { ModelAccess } from '../api-key/model-access';
import type { ConversationService } from '../conversation/conversation.service';
import { plannedCall, type ProviderCallAdmission } from '../usage/usage.service';
import { historiesByModel } from './history';
import { Message, MessageRole } from './message.entity';
import { assertNothingHidden } from '../comparison/blind';

export const MAX_PROMPT_CHARS = 32_000;

export interface SendMessageArgs {
  conversationId: string;
  content: string;
  model: string;
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
    const conversation = await this.deps.conversations.getForWrite(em, principal, args.conversationId);
    await assertNothingHidden(em, conversation.id);
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

  private async call(
    em: EntityManager,
    principal: Principal,
    conversation: Conversation,
    modelId: ModelId,
    provider: Provider,
    history: ChatTurn[],
    content: string,
  ): Promise<Message> {
    const userMessage = em.create(Message, { conversation, role: MessageRole.USER, content });
    conversation.updatedAt = new Date();
    await em.flush();

    try {
      const model = await this.deps.models.languageModel(em, principal.userId, modelId);
      const result = await streamCompletion({
        provider: modelId.provider,
        model,
        messages: [...history, { role: 'user', content: userMessage.content }],
        timeoutMs: this.deps.requestTimeoutMs,
        maxOutputBytes: this.deps.maxOutputBytes,
      });
      const reply = em.create(Message, {
        conversation,
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
      });
      conversation.updatedAt = new Date();
      await em.flush();
      return reply;
    } catch (error) {
      if (error instanceof ProviderCallError) {
        if (this.deps.logger) logProviderFailure(this.deps.logger, modelId, error, { conversationId: conversation.id });
        throw new AppError('PROVIDER_ERROR', error.message, { provider, reason: error.reason });
      }
      throw error;
    }
  }
}
