/**
 * Memory per distinct document, bounded by bytes (`DOCUMENT_CACHE_MB`).
 *
 * Everything the server keeps per document lives under one budget, each part
 * an {@link LruMap} bounded by the estimated bytes it holds (part: share of
 * the budget):
 *
 * - parsed + validated documents (Apollo's `documentStore`) and the
 *   graphql-jit executors compiled for them, one entry per document: 3/4 (of
 *   which anonymous: 1/32)
 * - compiled reads (`compiled-read.ts`): 1/8
 * - compiled subscription documents (`jit-executor.ts`, signed-in callers
 *   only): 1/32 (taken from the documents' 3/4)
 * - read-cache policies and query-text hashes (`read-cache/response-cache.ts`):
 *   1/8
 *
 * A compiled executor is kept in its document's entry and weighs on it, so it
 * goes when the document goes (it used to hang off Apollo's store, which was
 * sized by documents: 20,000 tiny anonymous documents kept 1.1 GB of compiled
 * code). Anonymous requests (no token) may add documents only to a small
 * allowance of their own (1/32 of the budget, least recently used out): they
 * never evict a signed-in user's document, and their documents are never
 * compiled by graphql-jit (graphql-js runs them; compiled code is the bulk of
 * a document's memory). Documents of the trusted manifest
 * (`PERSISTED_DOCUMENTS_PATH`) count as signed in's, whoever sends them.
 *
 * The weights are estimates measured on this server (`bench/limits/documents.ts`):
 * a parsed document with its tokens is ~100 bytes per character of its text,
 * a compiled executor ~40 KB plus ~1 KB per character.
 */
import type { KeyValueCache } from '@apollo/utils.keyvaluecache';
import { ScopeSlot } from '../request-scope';
import type { DocumentNode } from 'graphql';
import type { CompiledQuery } from 'graphql-jit';
import { LruMap } from '../lru-map';

interface Entry {
  document: DocumentNode;
  /** The document's own weight. */
  base: number;
  /** Compiled executors by operation name ('' for the only one), with their weights. */
  compiled: Map<string, { query: CompiledQuery; weight: number }>;
  anonymous: boolean;
}

/** Who is asking, for the duration of one request (set by `http.ts` around Apollo). */
export interface DocumentScope {
  signedIn: boolean;
}

const ENTRY_OVERHEAD = 512;
const DOCUMENT_BYTES_PER_CHAR = 100;
const COMPILED_BASE = 40 * 1024;
const COMPILED_BYTES_PER_CHAR = 1024;

/** Estimated bytes of a parsed document of this text length. */
export const documentWeight = (length: number): number => ENTRY_OVERHEAD + DOCUMENT_BYTES_PER_CHAR * length;
/** Estimated bytes of a graphql-jit executor compiled for a document of this text length. */
export const compiledWeight = (length: number): number => COMPILED_BASE + COMPILED_BYTES_PER_CHAR * length;

const weigh = (entry: Entry): number => {
  let weight = entry.base;
  for (const c of entry.compiled.values()) weight += c.weight;
  return weight;
};

export interface DocumentCacheOptions {
  /** `DOCUMENT_CACHE_MB` in bytes: the whole budget (this class holds 3/4 of it). */
  maxBytes: number;
  /** sha256 of the trusted documents: cached and compiled whoever sends them. */
  trusted?: ReadonlySet<string> | ReadonlyMap<string, unknown>;
}

export class DocumentCache implements KeyValueCache<DocumentNode> {
  private readonly scope = new ScopeSlot<DocumentScope>('document scope');
  private readonly shared: LruMap<string, Entry>;
  private readonly anonymous: LruMap<string, Entry>;

  constructor(private readonly opts: DocumentCacheOptions) {
    this.shared = new LruMap(Number.MAX_SAFE_INTEGER, { maxWeight: Math.floor((opts.maxBytes * 3) / 4 - (2 * opts.maxBytes) / 32), weigh });
    this.anonymous = new LruMap(Number.MAX_SAFE_INTEGER, { maxWeight: Math.floor(opts.maxBytes / 32), weigh });
  }

  /** The share of the budget for compiled reads, for policies and hashes, and for compiled subscription documents. */
  static shareOf(maxBytes: number, part: 'compiledReads' | 'policies' | 'subscriptions'): number {
    if (part === 'subscriptions') return Math.floor(maxBytes / 32);
    return Math.floor(maxBytes / 8 / (part === 'policies' ? 2 : 1));
  }

  /** Runs `fn` (one request through Apollo) as `scope`. */
  within<T>(scope: DocumentScope, fn: () => Promise<T>): Promise<T> {
    return this.scope.run(scope, fn);
  }

  /** Bytes held (estimated) and entries, for `/health` and the tests. */
  stats(): { bytes: number; documents: number; anonymousDocuments: number; maxBytes: number } {
    return {
      bytes: this.shared.totalWeight + this.anonymous.totalWeight,
      documents: this.shared.size + this.anonymous.size,
      anonymousDocuments: this.anonymous.size,
      maxBytes: Math.floor((this.opts.maxBytes * 3) / 4),
    };
  }

  // Apollo's documentStore (keys are `<schema hash>:<sha256 of the text>`).
  async get(key: string): Promise<DocumentNode | undefined> {
    const hash = hashOf(key);
    return (this.shared.get(hash) ?? this.anonymous.get(hash))?.document;
  }

  async set(key: string, document: DocumentNode): Promise<void> {
    const hash = hashOf(key);
    const anonymous = !this.scope.get()?.signedIn && !this.opts.trusted?.has(hash);
    // A document first sent anonymously, now by a signed-in user, moves to the shared part.
    if (!anonymous) this.anonymous.delete(hash);
    else if (this.shared.has(hash)) return;
    const entry: Entry = { document, base: documentWeight(document.loc?.end ?? 1000), compiled: new Map(), anonymous };
    (anonymous ? this.anonymous : this.shared).set(hash, entry);
  }

  async delete(key: string): Promise<boolean> {
    const hash = hashOf(key);
    return this.shared.delete(hash) || this.anonymous.delete(hash);
  }

  /**
   * The executor compiled for this document and operation: kept in its entry,
   * compiled once by `compile`. Undefined when the document is not cached in
   * the shared part (anonymous, or already evicted): run it with graphql-js.
   */
  compiled(queryHash: string, operationName: string, compile: () => CompiledQuery | undefined): CompiledQuery | undefined {
    const entry = this.shared.peek(queryHash);
    if (!entry) return undefined;
    const known = entry.compiled.get(operationName);
    if (known) return known.query;
    const query = compile();
    if (!query) return undefined;
    // Re-set so the LRU weighs the entry with its executor (and evicts what no longer fits).
    this.shared.delete(queryHash);
    entry.compiled.set(operationName, { query, weight: compiledWeight(entry.document.loc?.end ?? 1000) });
    this.shared.set(queryHash, entry);
    return query;
  }
}

function hashOf(key: string): string {
  const at = key.lastIndexOf(':');
  return at < 0 ? key : key.slice(at + 1);
}
