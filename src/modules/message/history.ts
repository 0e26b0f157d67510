/**
 * What each model sees of a conversation: every earlier prompt, and only its
 * own earlier answers (from `sendMessage` replies and from earlier comparisons),
 * never another model's. Two statements for any number of models.
 *
 * Histories are per endpoint (`endpointKey`: `provider:name[@label]`, label
 * left out when `default`): the same model through `@ollama` and `@vllm` in one
 * comparison sees only its own earlier comparison answers. `sendMessage`
 * replies store no label, so they belong to every endpoint of their model.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import { endpointKey, parseModelId } from '../../llm/model-id';
import type { ChatTurn } from '../../llm/stream-completion';
import { ComparisonResponse, ResponseKind, ResponseStatus } from '../comparison/comparison.entity';
import { Message, MessageRole } from './message.entity';

export interface HistoryCutoff {
  createdAt: Date;
  id: string;
}

export async function historiesByModel(
  em: EntityManager,
  conversationId: string,
  /** Endpoint keys (`endpointKey`); the map returned is keyed by them. */
  endpoints: readonly string[],
  /** Only messages strictly before this one (a comparison's own prompt, for retries). */
  before?: HistoryCutoff,
): Promise<Map<string, ChatTurn[]>> {
  const where = before
    ? {
        conversation: conversationId,
        $or: [{ createdAt: { $lt: before.createdAt } }, { createdAt: before.createdAt, id: { $lt: before.id } }],
      }
    : { conversation: conversationId };
  const messages = await em.find(Message, where, { orderBy: { createdAt: 'asc', id: 'asc' } });
  const comparisonIds = messages.flatMap((m) => (m.comparison ? [m.comparison.id] : []));
  const modelIdOf = new Map(endpoints.map((key) => [key, parseModelId(key).id]));
  const answers = comparisonIds.length
    ? await em.find(ComparisonResponse, {
        comparison: { $in: comparisonIds },
        model: { $in: [...new Set(modelIdOf.values())] },
        status: ResponseStatus.COMPLETED,
        // A model's history holds its own answers, not answers it fused from others.
        kind: ResponseKind.MODEL,
      })
    : [];
  const answerOf = new Map(answers.map((a) => [`${a.comparison.id}|${endpointKey({ id: a.model, label: a.keyLabel })}`, a.content]));

  const histories = new Map<string, ChatTurn[]>();
  for (const endpoint of endpoints) {
    const modelId = modelIdOf.get(endpoint)!;
    const turns: ChatTurn[] = [];
    for (const message of messages) {
      if (message.role === MessageRole.SYSTEM) turns.push({ role: 'system', content: message.content });
      else if (message.role === MessageRole.USER) {
        turns.push({ role: 'user', content: message.content });
        const answer = message.comparison ? answerOf.get(`${message.comparison.id}|${endpoint}`) : undefined;
        if (answer !== undefined) turns.push({ role: 'assistant', content: answer });
      } else if (message.model === modelId) turns.push({ role: 'assistant', content: message.content });
    }
    histories.set(endpoint, turns);
  }
  return histories;
}
