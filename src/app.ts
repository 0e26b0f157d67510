/**
 * `buildApp(config)` wires everything from a Config object and never listens:
 * `main.ts` listens; tests build apps in-process with their own database,
 * cache prefix and fake provider URLs.
 *
 * One request, top to bottom: HTTP server (`http/server.ts`: request id, timer,
 * body limit, log line) → route (`http/routes.ts`) → GraphQL edge / Apollo →
 * context (em.fork, loaders, principal) → resolver → service → loader / cache /
 * ORM / provider → PostgreSQL / Redis / LLM.
 */
import 'reflect-metadata';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled } from '@apollo/server/plugin/disabled';
import {
  ApolloServerPluginLandingPageLocalDefault,
  ApolloServerPluginLandingPageProductionDefault,
} from '@apollo/server/plugin/landingPage/default';
import type { Server } from 'node:http';
import type { DestinationStream } from 'pino';
import { ENTITIES } from '../mikro-orm.config';
import type { CachePort } from './cache/cache.port';
import { createCache } from './cache/create-cache';
import { registerCacheMetrics } from './cache/metrics';
import { createPubSub } from './pubsub/create-pubsub';
import type { PubSub } from './pubsub/pubsub.port';
import type { Config } from './config';
import { startEmbeddedPostgres } from './db/embedded';
import { connectOrm, createOrmOptions, describeDatabaseUrl, migrate, type Orm, pingDatabase, poolStats } from './db/orm';
import { ReadRouter } from './db/replicas';
import { CursorCodec } from './db/pagination';
import { PreparedStatements } from './db/prepared';
import { QueryObserver, traceStatement } from './db/query-observer';
import { TokenService } from './auth/tokens';
import { PersonalTokenFormat, PersonalTokenVerifier } from './auth/personal-tokens';
import { TokenAccessPolicy } from './auth/token-scopes';
import { type GraphqlContext, createRequestContexts } from './graphql/context';
import { CompiledReads } from './graphql/compiled-read';
import { createGraphqlHandler } from './graphql/http';
import { createPublicEdge } from './graphql/public-edge';
import { createDocumentGuard } from './graphql/document-limits';
import { jitGateway } from './graphql/jit-executor';
import { DocumentCache } from './graphql/document-cache';
import { byteWeightedFields, countResponseBytes } from './graphql/response-bytes';
import { httpStatusPlugin } from './graphql/plugins/http-status';
import { tokenScopesPlugin } from './graphql/plugins/token-scopes';
import { classifyError } from './graphql/format-error';
import { observabilityPlugin } from './graphql/plugins/observability';
import { graphqlTracingPlugin } from './graphql/plugins/tracing';
import { compiledReadsPlugin } from './graphql/plugins/compiled-reads';
import { readRoutePlugin } from './graphql/plugins/read-route';
import { loadPersistedDocuments, persistedDocumentsPlugin, trustedDocumentsCache } from './graphql/plugins/persisted-documents';
import { getSchema } from './graphql/schema';
import { createSseHandler } from './graphql/sse';
import { CalmGate, TurnGate } from './turns';
import { Subscriptions } from './graphql/subscriptions';
import { attachGraphqlWs } from './graphql/ws';
import { createLoaders, PROVIDER_CALLING_MUTATIONS, type Services } from './modules';
import { ApiKeyService } from './modules/api-key/api-key.service';
import { ApiTokenService } from './modules/api-token/api-token.service';
import { CacheAdminService } from './modules/admin/cache-admin.service';
import { ModelService } from './modules/model/model.service';
import { createApqCache } from './cache/apq';
import { allowanceOf, createRateLimiters, type RateLimiter } from './cache/rate-limit';
import { UsageService } from './modules/usage/usage.service';
import { UsageAnalytics } from './modules/usage/usage-analytics.service';
import { createGuardedFetch } from './llm/egress';
import { ProviderThreads } from './llm/provider-threads';
import { ModelRegistry } from './llm/model-registry';
import { ModelAccess } from './modules/api-key/model-access';
import { SecretBox } from './modules/api-key/secret-box';
import { ArenaService } from './modules/comparison/arena.service';
import { BACKGROUND_SQL_TAG, ComparisonRunner } from './modules/comparison/comparison-runner';
import { ChatService } from './modules/message/chat.service';
import { ComparisonService } from './modules/comparison/comparison.service';
import { ConversationService } from './modules/conversation/conversation.service';
import { MessageService } from './modules/message/message.service';
import { UserService } from './modules/user/user.service';
import { VoteService } from './modules/vote/vote.service';
import { FitWorker } from './modules/leaderboard/fit-worker';
import { LeaderboardService } from './modules/leaderboard/leaderboard.service';
import { VoteIntegrity } from './modules/vote/vote-integrity';
import { JudgeService } from './modules/judge/judge.service';
import { SearchService } from './modules/search/search.service';
import { PromptSetService } from './modules/prompt-set/prompt-set.service';
import { JobQueue } from './db/job-queue';
import { EVAL_CELL_QUEUE, EVAL_JUDGE_QUEUE } from './modules/eval/eval-events';
import { EvalService } from './modules/eval/eval.service';
import { EvalWorker } from './modules/eval/eval-worker';
import { ExportService } from './modules/conversation/export.service';
import { healthReport } from './observability/health';
import { createLogger, type Logger, prettyStream } from './observability/logger';
import { countStatement, requestLogPlugin } from './observability/request-log';
import { loadExplorer } from './graphql/explorer';
import { CorsPolicy } from './http/cors';
import { createHttpServer } from './http/server';
import { createRoutes } from './http/routes';
import { graphqlRoutes } from './graphql/routes';
import { createMetrics, type Metrics } from './observability/metrics';
import { type SpanExporter, startTracing, type TracingHandle } from './observability/tracing';
import { OperationLabels } from './observability/operation-labels';
import { Generations } from './read-cache/generations';
import { ShareLinkService } from './modules/share-link/share-link.service';
import { GENERATION_NAMESPACE } from './read-cache/keys';
import { invalidationPlugin } from './read-cache/invalidation.plugin';
import { operationCachePlugin } from './read-cache/operation-cache.plugin';
import { ResponseCache } from './read-cache/response-cache';

export interface App {
  config: Config;
  httpServer: Server;
  orm: Orm;
  cache: CachePort;
  pubsub: PubSub;
  services: Services;
  /** Verified personal API tokens and their revocations (tests await a revocation arriving from another instance). */
  personalTokens: PersonalTokenVerifier;
  logger: Logger;
  metrics: Metrics;
  queryObserver: QueryObserver;
  /** With DATABASE_REPLICA_URLS: which pool serves each request's reads (tests poll it). */
  readRouter?: ReadRouter;
  /** OpenTelemetry traces (`enabled` false unless OTEL_EXPORTER_OTLP_ENDPOINT): tests flush it to read their spans. */
  tracing: TracingHandle;
  /** Stops accepting work, drains, and closes the pool, cache and embedded database. Idempotent. */
  close(): Promise<void>;
}

/** The per-IP limit of anonymous shared reads (`RATE_LIMIT_SHARED_PER_IP`): the service's limiter and the public edge's allowance. */
const SHARED_IP_LIMIT = 'shared_ip';

/** Registered APQ documents are kept a week (a re-registration costs one round trip). */
const APQ_TTL_SECONDS = 7 * 24 * 60 * 60;

export interface BuildAppOptions {
  /** Where logs go (tests capture them); default stdout. */
  logStream?: DestinationStream;
  /** Where spans go when tracing is on (tests read them from memory); default OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  spanExporter?: SpanExporter;
}

export async function buildApp(config: Config, options: BuildAppOptions = {}): Promise<App> {
  const logger = createLogger(config.logLevel, options.logStream ?? (config.env === 'development' ? prettyStream() : undefined));
  const cleanups: Array<() => Promise<void>> = [];
  const close = async () => {
    while (cleanups.length) {
      const cleanup = cleanups.pop()!;
      await cleanup().catch((err) => logger.error({ err }, 'error during shutdown'));
    }
  };

  try {
    // 0. Traces (off unless OTEL_EXPORTER_OTLP_ENDPOINT): flushed last, after everything that makes spans has stopped.
    const tracing = await startTracing(config.tracing, config.version, options.spanExporter);
    cleanups.push(() => tracing.shutdown());

    // 1. Database: the configured server, or the embedded one under dataDir.
    let databaseUrl = config.databaseUrl;
    if (!databaseUrl) {
      logger.info({ dataDir: config.dataDir }, 'DATABASE_URL not set: starting embedded PostgreSQL');
      const embedded = await startEmbeddedPostgres({
        dataDir: config.dataDir,
        port: config.embeddedPostgresPort,
        log: (line) => logger.debug({ line }, 'embedded postgres'),
        notice: (line) => logger.warn({ dataDir: config.dataDir }, `embedded postgres: ${line}`),
      });
      cleanups.push(() => embedded.stop());
      databaseUrl = embedded.url;
    }
    const queryObserver = new QueryObserver(logger, config.slowQueryMs);
    const orm = await connectOrm(
      createOrmOptions({
        clientUrl: databaseUrl,
        pool: config.pool,
        entities: ENTITIES,
        observer: queryObserver,
        timeouts: config.dbTimeouts,
        caFile: config.databaseCaFile,
        replicaUrls: config.databaseReplicas.urls,
      }),
    );
    cleanups.push(() => orm.close(true));
    if (config.migrateOnStart) {
      // Without the pool's statement and lock timeouts (`migrate`).
      const applied = await migrate(orm);
      if (applied.length) logger.info({ migrations: applied }, 'migrations applied');
    }

    // 2. Observability.
    const metrics = createMetrics({
      collectDefaults: config.env !== 'test',
      poolStats: () => poolStats(orm),
      providerLabels: config.metrics.providerLabels,
    });
    queryObserver.onQuery((_sql, tookMs, failed) => metrics.dbQueryDuration.observe({ outcome: failed ? 'error' : 'ok' }, tookMs / 1000));
    // Statements sent on a request's behalf, for its log line (the runner's own schedule left out).
    queryObserver.onQuery((sql) => sql.startsWith(BACKGROUND_SQL_TAG) || countStatement());
    // One span per statement, under the request's (or the background work's) span.
    if (tracing.enabled) queryObserver.onQuery(traceStatement);

    // 3. Cache and pub/sub (fail open; Redis when configured).
    const countLookup = registerCacheMetrics(metrics.registry);
    const cache = createCache({
      redisUrl: config.redisUrl,
      redisClusterNodes: config.redisClusterNodes,
      redisSentinel: config.redisSentinel,
      replicaAckMs: config.redisReplicaAckMs,
      prefix: config.cachePrefix,
      breakerCooldownMs: config.cache.breakerCooldownMs,
      operationTimeoutMs: config.cache.operationTimeoutMs,
      localCopiesMaxBytes: config.cache.localCopiesMb * 2 ** 20,
      logger,
      // `gen` lookups are invalidation bookkeeping (one per cached read), not a cache: not exported.
      onLookup: (namespace, hit) => {
        if (namespace !== GENERATION_NAMESPACE) countLookup(namespace, hit);
      },
    });
    cleanups.push(() => cache.close());
    const pubsub = createPubSub({
      redisUrl: config.redisUrl,
      redisClusterNodes: config.redisClusterNodes,
      redisSentinel: config.redisSentinel,
      prefix: config.cachePrefix,
      logger,
    });
    cleanups.push(() => pubsub.close());

    // Rate limits: Redis when configured (shared by instances), memory otherwise; fail open.
    const rateLimiters = createRateLimiters({
      redisUrl: config.redisUrl,
      redisClusterNodes: config.redisClusterNodes,
      redisSentinel: config.redisSentinel,
      prefix: config.cachePrefix,
      operationTimeoutMs: config.cache.operationTimeoutMs,
      logger,
      onFailOpen: (limit) => metrics.rateLimitFailOpen.inc({ limit }),
    });
    cleanups.push(() => rateLimiters.close());
    /** Counts its refusals under the limit's name. */
    const counted = (name: string, limiter: RateLimiter): RateLimiter => ({
      consume: async (key, points) => {
        const verdict = await limiter.consume(key, points);
        if (!verdict.allowed) metrics.usageRefusals.inc({ limit: name });
        return verdict;
      },
      refund: (key, points) => limiter.refund(key, points),
      reset: (key) => limiter.reset(key),
    });

    // 4. Services: stateless, shared by every request.
    // Personal API tokens: rows in the api-token module, verified (and their revocations heard) in auth/.
    // Tokens carry a tag under a key derived from JWT_SECRET: a made-up token is refused without a database read.
    const tokenFormat = new PersonalTokenFormat(config.jwtSecret);
    const personalTokens: PersonalTokenVerifier = new PersonalTokenVerifier({
      store: { findByHash: (hash) => apiTokens.findByHash(hash), touch: (id) => apiTokens.touch(id) },
      format: tokenFormat,
      pubsub,
      logger,
    });
    const apiTokens = new ApiTokenService({ orm, revocations: personalTokens, format: tokenFormat });
    await personalTokens.start();
    cleanups.push(() => personalTokens.close());
    const tokens = new TokenService(config.jwtSecret, config.jwtExpiresIn, personalTokens);
    const cursors = new CursorCodec(config.jwtSecret);
    // Read replicas (DATABASE_REPLICA_URLS): which pool serves each request's reads (`db/replicas.ts`).
    const readRouter = config.databaseReplicas.urls.length
      ? new ReadRouter({
          orm,
          cache,
          logger,
          pollMs: config.databaseReplicas.pollMs,
          names: config.databaseReplicas.urls.map(describeDatabaseUrl),
          onRoute: (target, reason) => metrics.readRoutes.inc({ target, reason }),
        })
      : undefined;
    if (readRouter) {
      await readRouter.start();
      cleanups.push(async () => readRouter.close());
    }
    const generations = new Generations(cache, readRouter);
    const apiKeys = new ApiKeyService(new SecretBox(config.encryptionKeys), config.egress);
    // Named statements sent outside the unit of work: createConversation's and the comparison start's writes (the primary).
    const prepared = new PreparedStatements(orm.em, queryObserver, config.preparedStatements, undefined, 'write');
    const conversations = new ConversationService(cursors, prepared);
    const comparisons = new ComparisonService(cursors);
    const messages = new MessageService(cursors);
    // Calls to a key's own baseUrl obey the egress policy at connect time (redirects and DNS included).
    const userFetch = createGuardedFetch(config.egress);
    cleanups.push(() => userFetch.close());
    const transport = { userFetch };
    const modelAccess = new ModelAccess(apiKeys, config.providerBaseUrls, transport, config.operatorEndpoints);
    // Comparison answers are read off the main loop (worker threads), unless PROVIDER_THREADS=0.
    const providerStreams = new ProviderThreads({
      threads: config.llm.providerThreads,
      batchMs: config.llm.providerThreadBatchMs,
      egress: config.egress,
      transport,
      onThreadLost: (err, calls) => logger.error({ err, calls }, 'a provider thread stopped; its calls failed as UNAVAILABLE'),
    });
    cleanups.push(() => providerStreams.close());
    // A burst of starts, subscription opens and provider calls takes turns with the running streams' deltas.
    const burstTurns = config.llm.burstTurns ? new TurnGate() : undefined;
    // Under load, new answers' provider calls wait for the loop to keep up, so the answers already streaming do not.
    const callGate = config.llm.paceProviderCalls ? new CalmGate() : undefined;
    const usage = new UsageService({
      orm,
      providerCalls: rateLimiters.limiter('provider_calls', config.rateLimits.providerCalls),
      invalidation: generations,
      defaultDailyBudgetUsd: config.userDailyBudgetUsd,
      maxOutputBytes: config.llm.maxOutputBytes,
      // A reservation outlives its calls (timeout, final write retries) unless its instance died.
      reservationTtlMs: 2 * config.llm.requestTimeoutMs + config.comparisonLeaseMs,
      logger,
      onRefused: (kind) => metrics.usageRefusals.inc({ limit: kind === 'budget' ? 'budget' : 'provider_calls' }),
    });
    const runner = new ComparisonRunner({
      orm,
      prepared,
      cache,
      pubsub,
      invalidation: generations,
      conversations,
      models: modelAccess,
      usage,
      providerStreams,
      requestTimeoutMs: config.llm.requestTimeoutMs,
      leaseMs: config.comparisonLeaseMs,
      maxOutputBytes: config.llm.maxOutputBytes,
      logger,
      metrics,
      startConcurrency: Math.max(1, Math.floor(config.pool.max / 2)),
      turns: burstTurns,
      callGate,
    });
    await runner.start();
    cleanups.push(() => runner.close());
    // Eval runs: pg-boss in its own schema of this database; workers unless EVAL_WORKERS=off (`modules/eval/eval-worker.ts`).
    // A job fetched by an instance that died before claiming its cell comes back after one lease (plus maintenance).
    const leaseSeconds = Math.max(1, Math.ceil(config.evals.leaseMs / 1000));
    const jobQueue = new JobQueue({
      orm,
      logger,
      queues: [EVAL_CELL_QUEUE, EVAL_JUDGE_QUEUE],
      expireInSeconds: leaseSeconds,
      maintenanceIntervalSeconds: Math.max(1, Math.ceil(leaseSeconds / 2)),
    });
    await jobQueue.start();
    cleanups.push(() => jobQueue.stop());
    const evalWorker = config.evals.workers
      ? new EvalWorker({
          orm,
          queue: jobQueue,
          usage,
          models: modelAccess,
          pubsub,
          invalidation: generations,
          logger,
          concurrency: config.evals.concurrency,
          prefetch: config.evals.prefetch,
          concurrencyPerUser: config.evals.concurrencyPerUser,
          leaseMs: config.evals.leaseMs,
          pollMs: config.evals.pollMs,
          requestTimeoutMs: config.llm.requestTimeoutMs,
          maxOutputBytes: config.llm.maxOutputBytes,
        })
      : undefined;
    if (evalWorker) {
      await evalWorker.start();
      cleanups.push(() => evalWorker.close(config.shutdownGraceMs));
    }
    const modelRegistry = new ModelRegistry({
      cache,
      baseUrls: config.providerBaseUrls,
      listTimeoutMs: config.llm.listTimeoutMs,
      maxListedModels: config.llm.maxListedModels,
      transport,
      freshMs: config.cache.registryTtlMs,
      logger,
    });
    // Leaderboard fits run in a worker thread, off the event loop.
    const fitWorker = new FitWorker();
    cleanups.push(() => fitWorker.close());
    const leaderboard = new LeaderboardService(orm, cache, generations, fitWorker, config.leaderboard, logger);
    // Refits finish (or fail) before the worker and the pool close.
    cleanups.push(() => leaderboard.close());
    const voteIntegrity = new VoteIntegrity(
      config.votes,
      () => leaderboard.consensus(),
      logger,
      async (userId) => {
        await generations.invalidateUser(userId);
        await leaderboard.invalidateGlobal();
      },
    );
    // Share links: anonymous reads limited per IP, snapshots in the shared cache, revocations heard from every instance.
    const shareLinks = new ShareLinkService({
      orm,
      cache,
      pubsub,
      invalidation: generations,
      cursors,
      perIp: counted(SHARED_IP_LIMIT, rateLimiters.limiter(SHARED_IP_LIMIT, config.rateLimits.sharedPerIp)),
      logger,
      baseUrl: config.shareLinks.baseUrl,
      cacheTtlMs: config.shareLinks.cacheTtlMs,
      viewFlushMs: config.shareLinks.viewFlushMs,
    });
    await shareLinks.start();
    cleanups.push(() => shareLinks.close());
    const promptSets = new PromptSetService(cursors);
    const services: Services = {
      users: new UserService(tokens, config.adminEmails, config.passwordHashing, {
        perAccount: counted('login_account', rateLimiters.limiter('login_account', config.rateLimits.loginFailuresPerAccount)),
        perIp: counted('auth_ip', rateLimiters.limiter('auth_ip', config.rateLimits.authPerIp)),
      }),
      apiKeys,
      apiTokens,
      conversations,
      messages,
      comparisons,
      votes: new VoteService(comparisons, config.votes, voteIntegrity),
      voteIntegrity,
      judges: new JudgeService({
        comparisons,
        models: modelAccess,
        usage,
        requestTimeoutMs: config.llm.requestTimeoutMs,
        maxOutputBytes: config.llm.maxOutputBytes,
        logger,
        onVerdicts: () => leaderboard.invalidateGlobal(),
      }),
      leaderboard,
      invalidation: generations,
      chat: new ChatService({
        conversations,
        models: modelAccess,
        usage,
        requestTimeoutMs: config.llm.requestTimeoutMs,
        maxOutputBytes: config.llm.maxOutputBytes,
        logger,
      }),
      runner,
      arena: new ArenaService(cache, config.arena.models),
      search: new SearchService(cursors),
      promptSets,
      evals: new EvalService({
        orm,
        queue: jobQueue,
        promptSets,
        apiKeys,
        usage,
        pubsub,
        cursors,
        onQueued: () => evalWorker?.wake(),
      }),
      exports: new ExportService({ conversations, messages, comparisons }),
      models: new ModelService(apiKeys, modelRegistry),
      cacheAdmin: new CacheAdminService(cache, modelRegistry),
      usage,
      usageAnalytics: new UsageAnalytics(),
      shareLinks,
    };

    // 5. GraphQL.
    const production = config.env === 'production';
    // APQ documents live in the shared cache (namespace `apq`), behind the trusted-documents manifest if any.
    const trustedDocuments = config.apq.manifestPath ? loadPersistedDocuments(config.apq.manifestPath) : new Map<string, string>();
    const schema = await getSchema();
    // The byte budget of a response: large fields weigh on the cost rule and are counted as they resolve.
    const byteWeights = byteWeightedFields({ maxOutputBytes: config.llm.maxOutputBytes, maxResponseBytes: config.limits.maxResponseBytes });
    countResponseBytes(schema, ['ComparisonResponse.content', 'Message.content']);
    // Every per-document cache shares DOCUMENT_CACHE_MB (see `graphql/document-cache.ts`).
    const documentCacheBytes = config.limits.documentCacheBytes;
    const documents = new DocumentCache({ maxBytes: documentCacheBytes, trusted: trustedDocuments });
    const responseCache = new ResponseCache({
      cache,
      schema,
      ttlMs: config.cache.responseTtlMs,
      policyBytes: DocumentCache.shareOf(documentCacheBytes, 'policies') * 2,
    });
    const compiledReads = config.compiledReads
      ? new CompiledReads(
          {
            schema,
            em: orm.em,
            prepared: new PreparedStatements(orm.em, queryObserver, config.preparedStatements, readRouter),
            cursors,
            maxResponseBytes: config.limits.maxResponseBytes,
            checkOperation: (document, operationName, variables) => guard.checkOperation(schema, document, operationName, variables),
          },
          DocumentCache.shareOf(documentCacheBytes, 'compiledReads'),
        )
      : undefined;
    // Metric labels: the manifest's operation names, plus a bounded number of others.
    const operationLabels = OperationLabels.fromDocuments(trustedDocuments.values(), config.metrics.maxOperationLabels);
    // What a personal token may run, per document (`auth/token-scopes.ts`): Apollo, the edge and SSE ask it.
    const tokenScopes = new TokenAccessPolicy(schema);
    const guard = createDocumentGuard({
      limits: config.limits,
      production,
      providerCallingFields: PROVIDER_CALLING_MUTATIONS,
      byteWeights,
    });
    const apollo = new ApolloServer<GraphqlContext>({
      ...(config.graphqlExecutor === 'jit' ? { gateway: jitGateway(schema, documents) } : { schema }),
      // Parsed and validated documents, bounded in bytes with the executors compiled for them.
      documentStore: documents,
      introspection: !production,
      includeStacktraceInErrorResponses: false,
      // main.ts owns SIGTERM/SIGINT: a second handler would stop Apollo twice and race the drain.
      stopOnTerminationSignals: false,
      parseOptions: guard.parseOptions,
      validationRules: guard.validationRules,
      validationOptions: guard.validationOptions,
      formatError: (formatted, error) => classifyError(formatted, error, production).formatted,
      persistedQueries: {
        cache: trustedDocumentsCache(createApqCache(cache, { logger }), trustedDocuments, config.apq.trustedDocumentsOnly),
        ttl: APQ_TTL_SECONDS,
      },
      plugins: [
        // Apollo would otherwise install its cache-control plugin, which wraps every resolved field;
        // cache policy here is static, per document (`read-cache/cache-policy.ts`).
        ApolloServerPluginCacheControlDisabled(),
        // Trusted-documents refusal (FORBIDDEN) first, then the checks that read variables.
        persistedDocumentsPlugin({ documents: trustedDocuments, trustedOnly: config.apq.trustedDocumentsOnly }),
        guard.plugin,
        requestLogPlugin(),
        observabilityPlugin({ metrics, slowRequestMs: config.slowRequestMs, production, operationLabels }),
        ...(tracing.enabled ? [graphqlTracingPlugin()] : []),
        httpStatusPlugin(),
        // Before the read cache's plugin: a personal token outside its scopes is refused before any lookup.
        tokenScopesPlugin(tokenScopes),
        invalidationPlugin(generations),
        ...(readRouter ? [readRoutePlugin(readRouter)] : []),
        operationCachePlugin(responseCache),
        ...(compiledReads ? [compiledReadsPlugin(compiledReads)] : []),
        production
          ? ApolloServerPluginLandingPageProductionDefault({ footer: false })
          : ApolloServerPluginLandingPageLocalDefault({ footer: false, includeCookies: false }),
      ],
    });
    await apollo.start();
    cleanups.push(() => apollo.stop());

    // One context factory for /graphql, /graphql/stream and /graphql/ws (same token check, same context).
    // Subscriptions over SSE and WebSocket: one set of checks, one compiled-document cache.
    const subscriptions = new Subscriptions({
      schema,
      production,
      guard,
      tokenScopes,
      executor: config.graphqlExecutor,
      compiledSubscriptionBytes: DocumentCache.shareOf(documentCacheBytes, 'subscriptions'),
      trusted: { documents: trustedDocuments, trustedOnly: config.apq.trustedDocumentsOnly },
    });
    const contexts = createRequestContexts({ em: orm.em, services, logger, createLoaders, tokens, trustProxy: config.trustProxy });
    const startedAt = Date.now();

    const corsPolicy = new CorsPolicy(config.cors.origins);
    // A share link's hot page, asked anonymously, answered before the general machinery (one Redis round trip for the
    // per-IP allowance and the entry). With one Redis master (REDIS_URL or REDIS_SENTINELS) only: without it there is
    // nothing to save, and on a cluster its script's two keys (the IP's allowance, the page's generation) live in
    // different slots (CROSSSLOT), so shared pages take the ordinary path there.
    const publicEdge =
      config.redisUrl || config.redisSentinel
        ? createPublicEdge({
            responseCache,
            allowance: (ip) => allowanceOf(SHARED_IP_LIMIT, config.rateLimits.sharedPerIp, ip),
            clientIp: (req) => contexts.clientIp(req),
            answered: (scope) => shareLinks.answeredFromCache(scope),
            maxBodyBytes: config.limits.maxBodyBytes,
            logger,
          })
        : undefined;
    if (publicEdge) cleanups.push(async () => publicEdge.close());
    // 6. HTTP: what each path answers (`http/routes.ts`, with the API's paths from `graphql/routes.ts`),
    // served by one entry (`http/server.ts`).
    const http = createHttpServer({
      logger,
      metrics,
      maxBodyBytes: config.limits.maxBodyBytes,
      // Only a /graphql request with a token may be larger (that route checks the token before reading the body).
      bodyLimit: (req) =>
        req.headers.authorization && req.url?.split('?')[0] === '/graphql'
          ? config.limits.maxSignedInBodyBytes
          : config.limits.maxBodyBytes,
      // Which browser origins may call /graphql and /graphql/stream (CORS_ORIGINS).
      cors: corsPolicy,
      shortcut: publicEdge?.shortcut,
      route: createRoutes({
        health: () => healthReport({ orm, cache, startedAt, version: config.version, ping: () => pingDatabase(orm) }),
        metrics: { registry: metrics.registry, token: config.metrics.token },
        mounted: [
          graphqlRoutes({
            // The local explorer (GraphiQL from node_modules) outside production; Apollo's landing page otherwise.
            explorer: production ? undefined : loadExplorer(),
            graphql: createGraphqlHandler({
              apollo,
              contexts,
              responseCache,
              tokenScopes,
              compiledReads,
              onCompiledRead: (outcome, error) => {
                metrics.compiledReads.inc({ outcome });
                if (error) logger.warn({ err: error }, 'compiled read failed; answered the ordinary way');
              },
              maxBodyBytes: config.limits.maxBodyBytes,
              maxSignedInBodyBytes: config.limits.maxSignedInBodyBytes,
              maxResponseBytes: config.limits.maxResponseBytes,
              documents,
              requestDeadlineMs: config.requestDeadlineMs,
              readRouter,
              // Share links' pages are the only public entries (scope `share:<hash>`).
              publicReads: {
                admit: (_scope, ip) => shareLinks.admitRead(ip),
                answered: (scope) => shareLinks.answeredFromCache(scope),
              },
            }),
            stream: createSseHandler({
              subscriptions,
              production,
              maxBodyBytes: config.limits.maxBodyBytes,
              contexts,
              onTokenRevoked: (listener) => personalTokens.onRevoked(listener),
              turns: burstTurns,
            }),
          }),
        ],
      }),
    });
    const httpServer = http.server;
    // Shutdown, in order: stop accepting, let running comparisons finish or settle them and
    // end event streams with their final events, let the requests still open answer, then
    // (the cleanups registered earlier) Apollo, runner, pub/sub, cache, pool and
    // the embedded PostgreSQL last.
    // Subscriptions over WebSocket on the same server (upgrades to /graphql/ws).
    const graphqlWs = attachGraphqlWs(httpServer, {
      subscriptions,
      contexts,
      allowsOrigin: (origin) => corsPolicy.allowsOrigin(origin),
      maxMessageBytes: config.limits.maxBodyBytes,
      idleMs: config.llm.wsIdleMs,
      onTokenRevoked: (listener) => personalTokens.onRevoked(listener),
      onError: (err) => logger.error({ err }, 'could not authenticate a WebSocket'),
    });
    // Sockets end (1001) once the comparisons have settled, so their streams send their final events first.
    cleanups.push(() => http.stop(() => runner.close(config.shutdownGraceMs).finally(() => graphqlWs.close())));
    let closing: Promise<void> | undefined;
    return {
      config,
      httpServer,
      orm,
      cache,
      pubsub,
      services,
      personalTokens,
      logger,
      metrics,
      queryObserver,
      readRouter,
      tracing,
      close: () => (closing ??= close()),
    };
  } catch (error) {
    await close();
    throw error;
  }
}
