/**
 * The per-user read cache of `/graphql` answers.
 *
 * A query whose root fields are all marked `perUser` (see `cache-policy.ts`)
 * is stored as the final response body bytes under its entry key
 * (`keys.ts`: the viewer, their generation, a digest of the document hash,
 * operation name and variables), and a hit is one Redis round trip (a script
 * reads the generation and the entry keyed by it together) whose bytes are
 * written to the socket as they are: no resolver, no SQL, no JSON parse or
 * stringify, no Apollo. The ETag is derived from the key (same key, same
 * bytes), so it costs no hashing.
 *
 * Guarantees, and where they come from:
 * - users are apart: the key starts with the verified token's user id;
 * - a write is visible to its author's next read on any instance: every
 *   mutation bumps the user's generation before its response is sent
 *   (`invalidation.plugin.ts`), and the generation is read with the entry;
 * - only validated documents are answered at the edge: cacheability is learnt
 *   per document by the Apollo plugin (`operation-cache.plugin.ts`) after
 *   Apollo parsed and validated it (an unknown document goes through Apollo,
 *   which may still answer from the cache), and an entry only exists for a
 *   (user, document, variables) that executed without errors;
 * - fail open: a store failure is a miss, and then nothing is stored (the
 *   generation is unknown);
 * - `Cache-Control: no-cache` on a request skips the lookup's hit (the answer
 *   is computed and stored again): a client's "reload", and the benchmark's
 *   cache-miss switch.
 *
 * One request's steps (edge, plugin, edge) are `request.ts`'s.
 */
import type { OperationDefinitionNode, GraphQLSchema } from 'graphql';
import { createHash } from 'node:crypto';
import type { Allowance, CachePort } from '../cache/cache.port';
import { LruMap } from '../lru-map';
import { operationPolicy, type OperationPolicy } from './cache-policy';
import { readCacheKeys } from './keys';
import { type EntryRef, type GraphqlParams, ReadCacheRequest, type ResponseEntries } from './request';

/** Documents (× operation names) whose policy is remembered. */
const POLICY_ENTRIES = 2_000;

export class ResponseCache implements ResponseEntries {
  /** Bounded by entries and by estimated bytes (`policyBytes`, a share of `DOCUMENT_CACHE_MB`). */
  private readonly policies: LruMap<string, OperationPolicy>;
  /** sha256 of recent query texts: clients send the same few documents over and over. */
  private readonly hashes: LruMap<string, string>;

  constructor(private readonly opts: { cache: CachePort; schema: GraphQLSchema; ttlMs: number; policyBytes?: number }) {
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
      hash = createHash('sha256').update(query).digest('hex');
      if (query.length <= 16_384) this.hashes.set(query, hash);
    }
    return hash;
  }

  /** A signed-in request's read-cache state (`request.ts`); `cacheControl`: the request's `Cache-Control` header. */
  begin(userId: string, cacheControl: string | undefined): ReadCacheRequest {
    return new ReadCacheRequest(this, userId, /\bno-cache\b/i.test(cacheControl ?? ''));
  }

  /**
   * An anonymous request's read-cache state: only documents whose every root
   * field declares a `publicEntry` (a share link's page) are looked up and
   * stored, under the scope their argument names, never under a user.
   */
  beginPublic(cacheControl: string | undefined): ReadCacheRequest {
    return new ReadCacheRequest(this.publicEntries, '', /\bno-cache\b/i.test(cacheControl ?? ''));
  }

  private readonly publicEntries: ResponseEntries = {
    entryOf: (_anonymous, params) => {
      const policy = this.policies.get(policyKey(params.documentHash, params.operationName));
      const entry = policy?.publicEntry(params.variables);
      return entry && { scope: entry.scope, digest: digest(params), ttlMs: entry.ttlMs, publicMaxAge: policy!.publicMaxAge };
    },
    lookup: (entry) => this.lookup(entry),
    store: (entry, generation, bytes) => this.store(entry, generation, bytes),
    encode: (text) => this.encode(text),
  };

  /** The public entry of an anonymous request (`beginPublic`'s), when its document declares one for these variables. */
  publicEntryOf(params: GraphqlParams): EntryRef | undefined {
    return this.publicEntries.entryOf('', params);
  }

  /**
   * A public entry's bytes after one point of the client's allowance is spent, in one round trip
   * (`CachePort.getVersionedSpending`): 'refused' over the limit, undefined when Redis cannot say (not Redis,
   * unavailable): then the ordinary steps decide (the limiter, then the lookup).
   */
  lookupSpending(
    entry: EntryRef,
    allowance: Allowance | undefined,
  ): Promise<{ version: number; bytes: Buffer | undefined } | 'refused' | undefined> {
    const key = readCacheKeys.response(entry.scope, entry.digest);
    return allowance ? this.opts.cache.getVersionedSpending(key, allowance) : this.opts.cache.getVersioned(key);
  }

  entryOf(userId: string, params: GraphqlParams): EntryRef | undefined {
    const policy = this.policies.get(policyKey(params.documentHash, params.operationName));
    if (!policy?.cacheable(params.variables)) return undefined;
    return { scope: userId, digest: digest(params) };
  }

  lookup(entry: EntryRef): Promise<{ version: number; bytes: Buffer | undefined } | undefined> {
    return this.opts.cache.getVersioned(readCacheKeys.response(entry.scope, entry.digest));
  }

  /** Stores the bytes sent (best from {@link ResponseCache.encode}: then without a copy). */
  store(entry: EntryRef, generation: number, bytes: Buffer): Promise<void> {
    const ttlMs = Math.min(entry.ttlMs ?? this.opts.ttlMs, this.opts.ttlMs);
    if (!(ttlMs > 0)) return Promise.resolve();
    return this.opts.cache.setVersioned(readCacheKeys.response(entry.scope, entry.digest), generation, bytes, ttlMs);
  }

  /** The bytes of a response about to be sent and stored: encoded once, stored without a copy (`CachePort.versionedBody`). */
  encode(body: string): Buffer {
    return this.opts.cache.versionedBody(body);
  }
}

function digest(params: GraphqlParams): string {
  return createHash('sha256')
    .update(JSON.stringify([params.documentHash, params.operationName, params.variables]))
    .digest('base64url');
}

function policyKey(documentHash: string, operationName: string | null): string {
  return operationName ? `${documentHash}:${operationName}` : documentHash;
}
