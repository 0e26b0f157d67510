/**
 * What a resolver receives (`@Ctx() ctx: Context`): the request's principal,
 * a lazily forked EntityManager, its DataLoaders and the services. Made per
 * request by `graphql/context.ts`; nothing per-request lives at module scope.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../auth/principal';
import type { Logger } from '../../observability/logger';
import type { Loaders, Services } from '../index';
import type { ResponseBudget } from './response-budget';

export interface Context {
  requestId: string;
  principal: Principal | null;
  em: EntityManager;
  loaders: Loaders;
  services: Services;
  logger: Logger;
  /** The client's address as rate limits key it (see `http/client-ip.ts`). */
  clientIp: string;
  /**
   * On an event stream (`graphql/sse.ts`): settles when the client can take
   * more (its socket buffer drained, or it left). A subscription waits on it
   * before taking its next batch, so what arrives meanwhile is joined, not queued.
   */
  streamReady?: () => Promise<void> | void;
  /** On `/graphql`: the response's byte budget (`graphql/response-bytes.ts`). */
  responseBytes?: ResponseBudget;
  /** On `/graphql`: the edge already spent this anonymous request's allowance of public reads (a share link's page). */
  publicReadAdmitted?: boolean;
  /**
   * On `/graphql`: a resolver whose answer must not be stored past a time (epoch ms: a share link's expiry) sets
   * `expiresAt` here. A holder, not a field: Apollo hands resolvers a shallow copy of the context.
   */
  publicEntryLimit?: { expiresAt?: number };
}
