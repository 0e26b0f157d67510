import type { EntityManager } from '@mikro-orm/postgresql';
import DataLoader from 'dataloader';
import { indexByKey } from '../../db/loader-utils';
import type { Page } from '../../db/pagination';
import type { MessageView } from './message.entity';
import type { MessagePageKey, MessageService, TurnKey } from './message.service';

export function createMessageLoaders(em: EntityManager, service: MessageService) {
  return {
    messageCountByConversationIdLoader: new DataLoader<string, number>(async (ids) => {
      const counts = await service.counts(em, ids);
      return ids.map((id) => counts.get(id) ?? 0);
    }),
    lastMessageByConversationIdLoader: new DataLoader<string, MessageView | null>(async (ids) =>
      indexByKey(ids, await service.lastMessages(em, ids), (m) => m.conversationId),
    ),
    /** Every version of a turn as a conversation reads it (`conversationId|slot`). */
    messageVersionsByTurnLoader: new DataLoader<TurnKey, MessageView[], string>(
      async (keys) => {
        const rows = await service.versionsIn(em, keys);
        return keys.map((k) =>
          rows.filter((m) => m.readIn === k.conversationId && (m.versionOfId ?? m.id) === k.slot).map(({ readIn: _in, ...m }) => m),
        );
      },
      { cacheKeyFn: (k) => `${k.conversationId}|${k.slot}` },
    ),
    /** A message as stored in its own conversation (null when that conversation is deleted). */
    messageOriginByIdLoader: new DataLoader<string, MessageView | null>(async (ids) =>
      indexByKey(ids, await service.originsByIds(em, ids), (m) => m.id),
    ),
    /** Keys differ by page args too; all of a request's pages load in one LATERAL statement. */
    messagePageByConversationLoader: new DataLoader<MessagePageKey, Page<MessageView>, string>((keys) => service.pages(em, keys), {
      cacheKeyFn: (k) => `${k.conversationId}|${k.first}|${k.after?.createdAt.toISOString() ?? ''}|${k.after?.id ?? ''}`,
    }),
  };
}
