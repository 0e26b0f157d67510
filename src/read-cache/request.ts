/**
 * One signed-in `/graphql` request's dealings with the read cache: the only
 * state the HTTP edge and the Apollo plugin share. The edge makes it
 * (`ResponseCache.begin`) and puts it on the context; each step is a verb,
 * called at most once, by one side:
 *
 * | step | who | verb |
 * | --- | --- | --- |
 * | 1. look up a document known to be cacheable: a hit is sent as stored | edge | {@link ReadCacheRequest.atEdge} |
 * | 2. look up a document the edge did not know yet (policy learnt just now) | plugin | {@link ReadCacheRequest.inApollo} |
 * | 3. Apollo's answer completed without errors: it may be stored | plugin | {@link ReadCacheRequest.keepApolloAnswer} |
 * | 4. the bytes to send, stored when the answer may be | edge | {@link ReadCacheRequest.outgoing} |
 *
 * A lookup that misses remembers where the answer goes: the entry at the
 * generation read *before* the answer was computed, so a write meanwhile
 * leaves it unreachable, never stale. A store failure (generation unknown)
 * means nothing is stored. `Cache-Control: no-cache` (`bypass`) skips hits
 * but still stores.
 */

/** What identifies a request's answer: the document, the operation and the variables. */
export interface GraphqlParams {
  /** sha256 hex of the document (Apollo's `queryHash`; the APQ hash when only that was sent). */
  documentHash: string;
  operationName: string | null;
  variables: Record<string, unknown>;
}

/** Where one answer's entry lives: the viewer's scope (or a public one) and the digest of its params. */
export interface EntryRef {
  scope: string;
  digest: string;
  /** A public entry's lifetime (else the read cache's TTL) and its `Cache-Control: public, max-age`. */
  ttlMs?: number;
  publicMaxAge?: number;
}

/** The stored answers, as the request sees them (`ResponseCache`). */
export interface ResponseEntries {
  /** The entry of `params` for `userId` when the document is known to be cacheable with these variables. */
  entryOf(userId: string, params: GraphqlParams): EntryRef | undefined;
  /** The entry's bytes and its scope's generation (`version`); undefined when the store is unavailable. */
  lookup(entry: EntryRef): Promise<{ version: number; bytes: Buffer | undefined } | undefined>;
  store(entry: EntryRef, generation: number, bytes: Buffer): Promise<void>;
  /** The bytes of `text`, laid out to be sent and stored without a copy. */
  encode(text: string): Buffer;
}

/** A stored answer, as the socket gets it. */
export interface StoredAnswer {
  bytes: Buffer;
  /** The entry's weak validator: same key, same bytes. */
  etag: string;
}

/** The bytes of an answer about to be sent, and what the read cache does with them. */
export interface OutgoingAnswer {
  bytes: Buffer;
  /** Present when the answer is (or came from) a stored entry: the entry's validator, whichever path answered it. */
  etag?: string;
  /** Present when the answer is stored: settles once the store acknowledged (the response does not wait). */
  stored?: Promise<void>;
}

/** A weak validator of a stored entry: same key, same bytes. */
export function entryEtag(entry: EntryRef, generation: number): string {
  return `W/"${generation}.${entry.digest}"`;
}

export class ReadCacheRequest {
  /** Where a computed answer is stored: set by a lookup that missed with the generation known. */
  private slot: { entry: EntryRef; generation: number } | undefined;
  /** One lookup per request: the plugin reuses the edge's. */
  private looked = false;
  /** Apollo's answer may be stored. */
  private kept = false;
  /** The stored entry the plugin answered from (step 2's hit): its answer carries that entry's validator. */
  private answered: { entry: EntryRef; generation: number } | undefined;

  constructor(
    private readonly entries: ResponseEntries,
    private readonly userId: string,
    /** `Cache-Control: no-cache`: never answered from the cache (the answer is still stored). */
    readonly bypass: boolean,
  ) {}

  /** Where this request's answer is stored, when its document is known to be cacheable with these params. */
  entry(params: GraphqlParams): EntryRef | undefined {
    return this.entries.entryOf(this.userId, params);
  }

  /** Step 1, the edge: the stored answer of a document known to be cacheable (one Redis round trip). */
  async atEdge(params: GraphqlParams): Promise<StoredAnswer | undefined> {
    const entry = this.entries.entryOf(this.userId, params);
    if (!entry) return undefined;
    const found = await this.lookup(entry);
    return found && { bytes: found.bytes, etag: entryEtag(entry, found.generation) };
  }

  /**
   * Step 2, the plugin, after Apollo validated the document and its policy was
   * learnt: the stored bytes, when the edge could not look (the document was
   * new to this process). Runs once per document per process.
   */
  async inApollo(params: GraphqlParams): Promise<Buffer | undefined> {
    if (this.looked) return undefined;
    const entry = this.entries.entryOf(this.userId, params);
    const found = entry && (await this.lookup(entry));
    if (found) this.answered = { entry: entry!, generation: found.generation };
    return found?.bytes;
  }

  /** The answer may not be stored for longer than `ms` (a share link's expiry); ≤ 0: not stored at all. */
  limitLifetime(ms: number): void {
    if (!this.slot) return;
    if (!(ms > 0)) this.slot = undefined;
    else this.slot = { ...this.slot, entry: { ...this.slot.entry, ttlMs: Math.min(this.slot.entry.ttlMs ?? Infinity, ms) } };
  }

  /** Step 3, the plugin: Apollo computed its answer (not a hit) without errors. */
  keepApolloAnswer(): void {
    this.kept = true;
  }

  /**
   * Step 4, the edge: the bytes to send for `text`. A compiled read's answer
   * (never one with errors) or a kept Apollo answer is stored when a lookup
   * missed: the SET is issued before the bytes are sent, so on the cache's one
   * connection it precedes the client's next lookup.
   */
  outgoing(text: string, from: 'compiled' | 'apollo'): OutgoingAnswer {
    const slot = this.slot;
    // A hit answered inside Apollo: not stored again, but sent with its entry's validator, as its miss and the edge's hits are.
    const answered = this.answered;
    if (answered && from === 'apollo') return { bytes: Buffer.from(text), etag: entryEtag(answered.entry, answered.generation) };
    if (!slot || (from === 'apollo' && !this.kept)) return { bytes: Buffer.from(text) };
    // Encoded once: the same bytes go to the client and to the cache.
    const bytes = this.entries.encode(text);
    return { bytes, etag: entryEtag(slot.entry, slot.generation), stored: this.entries.store(slot.entry, slot.generation, bytes) };
  }

  private async lookup(entry: EntryRef): Promise<{ bytes: Buffer; generation: number } | undefined> {
    this.looked = true;
    const found = await this.entries.lookup(entry);
    if (found?.bytes && !this.bypass) return { bytes: found.bytes, generation: found.version };
    if (found) this.slot = { entry, generation: found.version };
    return undefined;
  }
}
