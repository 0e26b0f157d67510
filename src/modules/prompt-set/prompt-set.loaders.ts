import type { EntityManager } from '@mikro-orm/postgresql';
import DataLoader from 'dataloader';
import type { Principal } from '../../auth/principal';
import { indexByKey } from '../../db/loader-utils';
import type { Page } from '../../db/pagination';
import type { PromptItemView, PromptSetView } from './prompt-set.entity';
import type { PromptItemPageKey, PromptSetService } from './prompt-set.service';

export function createPromptSetLoaders(em: EntityManager, principal: Principal | null, service: PromptSetService) {
  return {
    /** Owner-scoped: a foreign id loads as null, exactly like a missing one. */
    promptSetByIdLoader: new DataLoader<string, PromptSetView | null>(async (ids) =>
      principal ? indexByKey(ids, await service.findByIds(em, principal, ids), (s) => s.id) : ids.map(() => null),
    ),
    promptItemCountBySetIdLoader: new DataLoader<string, number>(async (ids) => {
      const counts = await service.itemCounts(em, ids);
      return ids.map((id) => counts.get(id) ?? 0);
    }),
    /** Keys differ by page args too; all of a request's pages load in one LATERAL statement. */
    promptItemPageBySetLoader: new DataLoader<PromptItemPageKey, Page<PromptItemView>, string>((keys) => service.itemPages(em, keys), {
      cacheKeyFn: (k) => `${k.promptSetId}|${k.first}|${k.after?.position ?? ''}|${k.after?.id ?? ''}`,
    }),
  };
}
