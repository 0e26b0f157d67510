/**
 * MikroORM configuration for the CLI (`npx mikro-orm migration:up|pending|create`)
 * and the entity registration list the app uses.
 *
 * The CLI connects to DATABASE_URL, or, when unset, to the embedded PostgreSQL
 * that `npm start` runs (EMBEDDED_POSTGRES_PORT, 54329 by default; start the server once first).
 */
import 'reflect-metadata';
import type * as Migrations from '@mikro-orm/migrations';
import { loadConfig } from './src/config';
import { createOrmOptions, settleSsl } from './src/db/orm';
import { ApiKey } from './src/modules/api-key/api-key.entity';
import { ApiToken } from './src/modules/api-token/api-token.entity';
import { ComparisonResponse, ComparisonResult } from './src/modules/comparison/comparison.entity';
import { Conversation } from './src/modules/conversation/conversation.entity';
import { ConversationAncestor } from './src/modules/conversation/conversation-ancestor.entity';
import { Message } from './src/modules/message/message.entity';
import { User } from './src/modules/user/user.entity';
import { Vote } from './src/modules/vote/vote.entity';
import { SpendReservation } from './src/modules/usage/spend-reservation.entity';
import { VoteExclusion } from './src/modules/vote/vote-exclusion.entity';
import { JudgeVerdictEntity } from './src/modules/judge/judge-verdict.entity';
import { BaseEntity } from './src/db/base.entity';
import { ModelCallEntity } from './src/db/model-call.entity';
import { PromptItem, PromptSet } from './src/modules/prompt-set/prompt-set.entity';
import { ShareLinkComparison, ShareLinkEntity } from './src/modules/share-link/share-link.entity';
import { EvalCell, EvalPairVerdict, EvalRun } from './src/modules/eval/eval.entity';

export const ENTITIES: Function[] = [
  BaseEntity,
  ModelCallEntity,
  User,
  ApiKey,
  Conversation,
  ConversationAncestor,
  Message,
  ComparisonResult,
  ComparisonResponse,
  Vote,
  SpendReservation,
  VoteExclusion,
  JudgeVerdictEntity,
  ApiToken,
  PromptSet,
  PromptItem,
  ShareLinkEntity,
  ShareLinkComparison,
  EvalRun,
  EvalCell,
  EvalPairVerdict,
];

export default async () => {
  const config = loadConfig();
  const options = createOrmOptions({
    clientUrl: config.databaseUrl ?? `postgres://postgres:postgres@127.0.0.1:${config.embeddedPostgresPort}/llmselect`,
    pool: { ...config.pool, min: 0, max: 2 },
    entities: ENTITIES,
    // TLS as DATABASE_URL's sslmode asks; no statement or lock timeout: a migration may run long or wait for a lock.
    caFile: config.databaseCaFile,
  });
  await settleSsl(options);
  // The CLI's commands are migrations. Required here, not imported: the app imports this file for ENTITIES
  // and loads the migrator only when it migrates (`migratorOf` in src/db/orm.ts).
  options.extensions = [(require('@mikro-orm/migrations') as typeof Migrations).Migrator];
  return options;
};
