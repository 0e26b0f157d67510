/**
 * The per-user read cache, answered at the HTTP edge.
 *
 * A query whose root fields are all marked `perUser` (see `cache-policy.ts`)
 * is stored as the final response body bytes under
 *
 *   resp:<userId>:<generation>:t.<digest>     digest = sha256(document hash, operationName, variables)
 *
 * and a hit is one Redis round trip (a script reads the user's generation and
 * the entry keyed by it together) whose bytes are written to the socket as
 * they are: no resolver, no SQL, no JSON parse or stringify, no Apollo. The
 * ETag is derived from the key (same key, same bytes), so it costs no hashing.
 *
 * Guarantees, and where they come from:
 * - users are apart: the key starts with the verified token's user id;
 * - a write is visible to its author's next read on any instance: every
 *   mutation bumps the user's generation before its response is sent
 *   (`invalidation.ts`), and the generation is read with the entry;
 * - only validated documents are answered here: cacheability is learnt per
 *   document by the Apollo plugin after Apollo parsed and validated it (an
 *   unknown document goes through Apollo, which may still answer from the
 *   cache), and an entry only exists for a (user, document, variables) that
 *   executed without errors;
 * - fail open: a store failure is a miss, and then nothing is stored (the
 *   generation is unknown);
 * - `Cache-Control: no-cache` on a request skips the lookup (the answer is
 *   computed and stored again): a client's "reload", and the benchmark's
 *   cache-miss switch.
 */
import type { OperationDefinitionNode, GraphQLSchema } from 'graphql';
import { createHash } from 'node:crypto';
import type { CachePort } from '../cache/cache.port';
import { LruMap } from '../lru-map';
import { operationPolicy, type OperationPolicy } from './cache-policy';
import { sha256Hex } from './plugins/persisted-documents';

/** Documents (× operation names) whose policy is remembered. */
const POLICY_ENTRIES = 2_000;

export interface GraphqlParams {
  /** sha256 hex of the document (Apollo's `queryHash`; the APQ hash when only that was sent). */
  documentHash: string;
  operationName: string | null;
  variables: Record<string, unknown>;
}

/** A planned read: where the entry for this request lives. */
export interface ReadPlan {
  scope: string;
  digest: string;
}

/** What the edge and the Apollo plugin tell each other about one request (on the context). */
export interface ReadCacheState {
  /** The request asked not to be answered from the cache (`Cache-Control: no-cache`). */
  readonly bypass: boolean;
  /** The edge already looked this request up and missed; `generation` undefined: the store was unavailable. */
  looked?: ReadPlan & { generation: number | undefined };
  /** Set by the plugin when the response may be stored: the HTTP layer stores the bytes it sends. */
  storeAs?: ReadPlan & { generation: number };
  /**
   * Set by the plugin when it answered from a stored entry (a request the edge
   * steps aside for, or a document new to this process): the HTTP layer sends
   * that entry's validator, the one its miss and the edge's hits send.
   */
  answeredFrom?: ReadPlan & { generation: number };
}

export class ResponseCache {
  /** Bounded by entries and by estimated bytes (`policyBytes`, a share of `DOCUMENT_CACHE_MB`). */
  private readonly policies: LruMap<string, OperationPolicy>;
  /** sha256 of recent query texts: clients send the same few documents over and over. */
  private readonly hashes: LruMap<string, string>;

  constructor(
    private readonly opts: { cache: CachePort; schema: GraphQLSchema; ttlMs: number; policyBytes?: number },
  ) {
    const maxWeight = Math.floor((opts.policyBytes ?? 16 * 2 ** 20) / 2);
    this.policies = new LruMap(POLICY_ENTRIES, { maxWeight, weigh: (_policy, key) => 512 + 2 * key.length });
    this.hashes = new LruMap(POLICY_ENTRIES, { maxWeight, weigh: (_hash, text) => 200 + 2 * text.length });
  }

  /** The policy of a validated operation, computed once per (document, operation name). */
  learn(documentHash: string, operationName: string | null, operation: OperationDefinitionNode): OperationPolicy {
    const key = policyKey(documentHash, operationName);
    let policy = this.policies.get(key);
    if (!policy) {
      policy = operationPolicy(this.opts.schema, operation);
      this.policies.set(key, policy);
    }
    return policy;
  }

  /** sha256 hex of a query text (Apollo's `queryHash`), remembered for the documents clients repeat. */
  documentHash(query: string): string {
    let hash = this.hashes.get(query);
    if (hash === undefined) {
      hash = sha256Hex(query);
      if (query.length <= 16_384) this.hashes.set(query, hash);
    }
    return hash;
  }

  /** Where a request's entry lives, when its document is known to be cacheable for these variables. */
  plan(userId: string, params: GraphqlParams): ReadPlan | undefined {
    const policy = this.policies.get(policyKey(params.documentHash, params.operationName));
    if (!policy?.cacheable(params.variables)) return undefined;
    return { scope: userId, digest: this.digest(params) };
  }

  digest(params: GraphqlParams): string {
    return createHash('sha256')
      .update(JSON.stringify([params.documentHash, params.operationName, params.variables]))
      .digest('base64url');
  }

  lookup(plan: ReadPlan): Promise<{ generation: number; bytes: Buffer | undefined } | undefined> {
    return this.opts.cache.getVersioned(plan.scope, plan.digest);
  }

  /** Stores the bytes sent (best from {@link ResponseCache.encode}: then without a copy). */
  store(at: ReadPlan & { generation: number }, bytes: Buffer): Promise<void> {
    return this.opts.cache.setVersioned(at.scope, at.generation, at.digest, bytes, this.opts.ttlMs);
  }

  /** The bytes of a response about to be sent and stored: encoded once, stored without a copy (`CachePort.versionedBody`). */
  encode(body: string): Buffer {
    return this.opts.cache.versionedBody(body);
  }
}

/**
 * The weak validator of a stored entry: same key, same bytes. Every answer of
 * the entry sends it — the miss that stores it, the edge's hits, the plugin's
 * hits — so a client revalidating with any of them gets 304.
 */
export function entryEtag(at: ReadPlan & { generation: number }): string {
  return `W/"${at.generation}.${at.digest}"`;
}

function policyKey(documentHash: string, operationName: string | null): string {
  return operationName ? `${documentHash}:${operationName}` : documentHash;
}
