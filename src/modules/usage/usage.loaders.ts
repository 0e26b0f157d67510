import type { EntityManager } from '@mikro-orm/postgresql';
import DataLoader from 'dataloader';
import type { SpendSummary, UsageService } from './usage.service';

export function createUsageLoaders(em: EntityManager, service: UsageService) {
  return {
    /** `User.spentTodayUsd` / `dailyBudgetUsd` / `remainingBudgetUsd`: one statement for every user in the response. */
    spendByUserIdLoader: new DataLoader<string, SpendSummary>((userIds) => service.summaries(em, userIds)),
  };
}
