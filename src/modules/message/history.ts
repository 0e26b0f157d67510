/**
 * What each model sees of a conversation: every earlier prompt, and only its
 * own earlier answers (from `sendMessage` replies and from earlier comparisons),
 * never another model's. Two statements for any number of models.
 *
 * The messages are the conversation's as it reads them (`conversationMessages`:
 * a fork's inherited turns, only the current version of a regenerated turn).
 * A comparison's prompt is followed by that model's answer from the
 * comparison, unless the conversation itself holds that model's answer right
 * after the prompt (`continueWith` or a fork at a chosen response stored it as
 * an assistant message, maybe regenerated since): then that message is the
 * turn, once.
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
import { MessageRole } from './message.entity';
import { conversationMessages } from './message.service';

export interface HistoryCutoff {
  createdAt: Date;
  id: string;
}

export async function historiesByModel(
  em: EntityManager,
  conversationId: string,
  /** Endpoint keys (`endpointKey`); the map returned is keyed by them. */
  endpoints: readonly string[],
  /** Only the turns strictly before this one (a comparison's own prompt for retries; a regenerated answer's turn). */
  before?: HistoryCutoff,
): Promise<Map<string, ChatTurn[]>> {
  const messages = await conversationMessages(em, conversationId, before);
  const comparisonIds = messages.flatMap((m) => (m.comparisonId ? [m.comparisonId] : []));
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
    messages.forEach((message, i) => {
      if (message.role === MessageRole.SYSTEM) turns.push({ role: 'system', content: message.content });
      else if (message.role === MessageRole.USER) {
        turns.push({ role: 'user', content: message.content });
        const next = messages[i + 1];
        const answeredHere = next?.role === MessageRole.ASSISTANT && next.model === modelId;
        const answer = message.comparisonId && !answeredHere ? answerOf.get(`${message.comparisonId}|${endpoint}`) : undefined;
        if (answer !== undefined) turns.push({ role: 'assistant', content: answer });
      } else if (message.model === modelId) turns.push({ role: 'assistant', content: message.content });
    });
    histories.set(endpoint, turns);
  }
  return histories;
}
