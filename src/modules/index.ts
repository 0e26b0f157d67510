/**
 * Composition of the modules' services and per-request loaders. `app.ts`
 * builds the services once; `createContext` calls `createLoaders` per request.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { ReadCacheInvalidation } from '../read-cache/invalidation';
import type { Principal } from '../auth/principal';
import { createApiKeyLoaders } from './api-key/api-key.loaders';
import type { ApiKeyService } from './api-key/api-key.service';
import type { ApiTokenService } from './api-token/api-token.service';
import { createComparisonLoaders } from './comparison/comparison.loaders';
import type { ComparisonService } from './comparison/comparison.service';
import { createConversationLoaders } from './conversation/conversation.loaders';
import type { ConversationService } from './conversation/conversation.service';
import { createMessageLoaders } from './message/message.loaders';
import type { MessageService } from './message/message.service';
import type { UserService } from './user/user.service';
import type { ChatService } from './message/chat.service';
import type { ArenaService } from './comparison/arena.service';
import type { ComparisonRunner } from './comparison/comparison-runner';
import { createVoteLoaders } from './vote/vote.loaders';
import type { VoteService } from './vote/vote.service';
import type { LeaderboardService } from './leaderboard/leaderboard.service';
import type { SearchService } from './search/search.service';
import type { ModelService } from './model/model.service';
import type { CacheAdminService } from './admin/cache-admin.service';
import type { ExportService } from './conversation/export.service';
import { createUsageLoaders } from './usage/usage.loaders';
import type { UsageService } from './usage/usage.service';
import type { UsageAnalytics } from './usage/usage-analytics.service';
import type { VoteIntegrity } from './vote/vote-integrity';
import type { JudgeService } from './judge/judge.service';
import { createPromptSetLoaders } from './prompt-set/prompt-set.loaders';
import type { PromptSetService } from './prompt-set/prompt-set.service';
import type { ShareLinkService } from './share-link/share-link.service';
import type { EvalService } from './eval/eval.service';

/**
 * Root mutation fields that call an LLM provider (paid, on the user's key):
 * the document guard allows at most one per operation. Names that the schema
 * does not have yet (the arena) are harmless here.
 */
export const PROVIDER_CALLING_MUTATIONS: readonly string[] = [
  'startComparison',
  'runComparison',
  'retryComparisonResponse',
  'sendMessage',
  'startArenaBattle',
  'judgeComparison',
  'fuseComparison',
  'startEvalRun',
];

export interface Services {
  users: UserService;
  apiKeys: ApiKeyService;
  apiTokens: ApiTokenService;
  conversations: ConversationService;
  messages: MessageService;
  comparisons: ComparisonService;
  invalidation: ReadCacheInvalidation;
  votes: VoteService;
  voteIntegrity: VoteIntegrity;
  judges: JudgeService;
  leaderboard: LeaderboardService;
  chat: ChatService;
  runner: ComparisonRunner;
  arena: ArenaService;
  search: SearchService;
  exports: ExportService;
  models: ModelService;
  cacheAdmin: CacheAdminService;
  usage: UsageService;
  usageAnalytics: UsageAnalytics;
  promptSets: PromptSetService;
  shareLinks: ShareLinkService;
  evals: EvalService;
}

export function createLoaders(em: EntityManager, principal: Principal | null, services: Services) {
  return {
    ...createApiKeyLoaders(em, services.apiKeys),
    ...createConversationLoaders(em, principal, services.conversations),
    ...createMessageLoaders(em, services.messages),
    ...createComparisonLoaders(em, principal, services.comparisons),
    ...createVoteLoaders(em, principal),
    ...createUsageLoaders(em, services.usage),
    ...createPromptSetLoaders(em, principal, services.promptSets),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
