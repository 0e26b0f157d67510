/**
 * Prometheus metrics, on a registry per app (tests build several apps in one
 * process, so nothing registers on prom-client's global registry).
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export interface Metrics {
  registry: Registry;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  graphqlOperations: Counter<'operation' | 'type' | 'outcome'>;
  graphqlErrors: Counter<'code'>;
  dbQueryDuration: Histogram<'outcome'>;
  llmCalls: Counter<'provider' | 'status'>;
  llmLatency: Histogram<'provider'>;
  /** Requests refused by a rate limit or the spend budget. */
  usageRefusals: Counter<'limit'>;
  /** Calls a rate limit allowed because its store (Redis) failed. */
  rateLimitFailOpen: Counter<'limit'>;
  compiledReads: Counter<'outcome'>;
  /** With read replicas: requests by where their reads went (`replica` / `primary`) and why (`db/replicas.ts`). */
  readRoutes: Counter<'target' | 'reason'>;
  /**
   * The `provider` label value of the LLM call series: the provider, or
   * `hidden` when provider labels are off (production without METRICS_TOKEN:
   * a public `/metrics` must not show which providers a blind battle calls).
   */
  providerLabel(provider: string): string;
}

export function createMetrics(opts: {
  collectDefaults: boolean;
  poolStats?: () => { size: number; used: number; free: number; pending: number; max: number };
  /** Real provider names on the LLM call series (default true); false: `hidden`. */
  providerLabels?: boolean;
}): Metrics {
  const providerLabels = opts.providerLabels ?? true;
  const registry = new Registry();
  if (opts.collectDefaults) collectDefaultMetrics({ register: registry, prefix: 'llmselect_' });
  const poolStats = opts.poolStats;
  if (poolStats) {
    new Gauge({
      name: 'llmselect_db_pool_connections',
      help: 'Database pool connections by state',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        const stats = poolStats();
        for (const state of ['size', 'used', 'free', 'pending', 'max'] as const) this.set({ state }, stats[state]);
      },
    });
  }
  return {
    registry,
    providerLabel: (provider) => (providerLabels ? provider : 'hidden'),
    httpDuration: new Histogram({
      name: 'llmselect_http_request_duration_seconds',
      help: 'HTTP request duration',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    graphqlOperations: new Counter({
      name: 'llmselect_graphql_operations_total',
      help: 'GraphQL operations by name, type and outcome',
      labelNames: ['operation', 'type', 'outcome'],
      registers: [registry],
    }),
    graphqlErrors: new Counter({
      name: 'llmselect_graphql_errors_total',
      help: 'GraphQL errors sent to clients, by code',
      labelNames: ['code'],
      registers: [registry],
    }),
    dbQueryDuration: new Histogram({
      name: 'llmselect_db_query_duration_seconds',
      help: 'SQL statement duration',
      labelNames: ['outcome'],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    llmCalls: new Counter({
      name: 'llmselect_llm_calls_total',
      help: 'LLM calls by provider and final status',
      labelNames: ['provider', 'status'],
      registers: [registry],
    }),
    llmLatency: new Histogram({
      name: 'llmselect_llm_latency_seconds',
      help: 'LLM call latency',
      labelNames: ['provider'],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers: [registry],
    }),
    usageRefusals: new Counter({
      name: 'llmselect_usage_refusals_total',
      help: 'Requests refused by a rate limit (provider_calls, login_account, auth_ip) or the spend budget (budget)',
      labelNames: ['limit'],
      registers: [registry],
    }),
    rateLimitFailOpen: new Counter({
      name: 'llmselect_rate_limit_fail_open_total',
      help: 'Rate-limit checks allowed because the rate-limit store (Redis) failed or timed out',
      labelNames: ['limit'],
      registers: [registry],
    }),
    compiledReads: new Counter({
      name: 'llmselect_compiled_reads_total',
      help:
        'Queries answered at the edge from SQL-built JSON (served), or sent back to the ordinary path (fallback: a ' +
        'refused argument, or an error)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    readRoutes: new Counter({
      name: 'llmselect_db_read_routes_total',
      help:
        'Requests by where their reads were routed (replica, primary) and why (anonymous, no_writes, caught_up, behind, ' +
        'unknown_mark, no_replica, write); replica_failed: moved to the primary mid-request. Only with DATABASE_REPLICA_URLS',
      labelNames: ['target', 'reason'],
      registers: [registry],
    }),
  };
}
