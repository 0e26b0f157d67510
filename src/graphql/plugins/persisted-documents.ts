/**
 * Trusted documents: a build-time manifest of the operations the frontend
 * ships (`persisted-documents.json`), keyed by the sha256 of each document.
 *
 * - Their hashes work without registration: APQ lookups consult the manifest
 *   first (`trustedDocumentsCache`), so `GET /graphql?extensions=…` with only
 *   the hash answers even on a cold cache or right after a flush.
 * - With `trustedOnly` (production), only manifest documents run. Decision
 *   table, by what the request carries:
 *
 *   | request                                | trustedOnly = false          | trustedOnly = true                       |
 *   |----------------------------------------|------------------------------|------------------------------------------|
 *   | hash in the manifest                   | runs                         | runs                                     |
 *   | hash registered by APQ                 | runs                         | PERSISTED_QUERY_NOT_FOUND (APQ not read) |
 *   | unknown hash                           | PERSISTED_QUERY_NOT_FOUND    | PERSISTED_QUERY_NOT_FOUND                |
 *   | query text (with or without a hash)    | runs (APQ registers it)      | FORBIDDEN unless its sha256 is listed    |
 *
 *   FORBIDDEN, not PERSISTED_QUERY_NOT_FOUND, for a full query text: the
 *   latter tells an APQ client "send the full text", which it just did, so
 *   the honest answer is that this server will not run it. The refusal is
 *   thrown from `didResolveOperation`, which Apollo runs before it registers
 *   an APQ document, so registration cannot bypass the allowlist (and in this
 *   mode nothing is registered at all).
 *
 * Manifest formats accepted: `{ "<sha256>": "<document>" }`, or Apollo's
 * `{ "format": "apollo-persisted-query-manifest", "version": 1,
 *    "operations": [{ "id", "body", "name", "type" }] }`. Every id must be the
 * sha256 (hex) of its body, checked at start-up.
 */
import type { ApolloServerPlugin } from '@apollo/server';
import { type KeyValueCache, type KeyValueCacheSetOptions, PrefixingKeyValueCache } from '@apollo/utils.keyvaluecache';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { GraphqlContext } from '../context';
import { AppError } from '../../errors';

/** sha256 (hex) → document text, verified. */
export type PersistedDocuments = ReadonlyMap<string, string>;

export class PersistedDocumentsError extends Error {
  override name = 'PersistedDocumentsError';
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

export const sha256Hex = (text: string): string => createHash('sha256').update(text).digest('hex');

/** Parses and verifies a manifest (either format). Throws `PersistedDocumentsError` naming the problem. */
export function parsePersistedDocuments(json: unknown, source = 'manifest'): PersistedDocuments {
  const entries: Array<[string, unknown]> = [];
  if (json !== null && typeof json === 'object' && (json as { format?: unknown }).format === 'apollo-persisted-query-manifest') {
    const manifest = json as { version?: unknown; operations?: unknown };
    if (manifest.version !== 1)
      throw new PersistedDocumentsError(
        `${source}: unsupported apollo-persisted-query-manifest version ${String(manifest.version)} (expected 1)`,
      );
    if (!Array.isArray(manifest.operations)) throw new PersistedDocumentsError(`${source}: "operations" must be an array`);
    for (const op of manifest.operations as Array<{ id?: unknown; body?: unknown }>) entries.push([String(op?.id), op?.body]);
  } else if (json !== null && typeof json === 'object' && !Array.isArray(json)) {
    entries.push(...Object.entries(json));
  } else {
    throw new PersistedDocumentsError(`${source}: expected an object { "<sha256>": "<document>" } or an apollo-persisted-query-manifest`);
  }
  const documents = new Map<string, string>();
  for (const [id, body] of entries) {
    if (!SHA256_HEX.test(id)) throw new PersistedDocumentsError(`${source}: "${id.slice(0, 80)}" is not a lower-case hex sha256`);
    if (typeof body !== 'string' || body === '')
      throw new PersistedDocumentsError(`${source}: the document of ${id} is not a non-empty string`);
    if (sha256Hex(body) !== id) throw new PersistedDocumentsError(`${source}: ${id} is not the sha256 of its document`);
    documents.set(id, body);
  }
  return documents;
}

/** Reads and verifies the manifest at `path` (relative to the working directory). */
export function loadPersistedDocuments(path: string): PersistedDocuments {
  const full = resolve(path);
  let text: string;
  try {
    text = readFileSync(full, 'utf8');
  } catch (error) {
    throw new PersistedDocumentsError(`PERSISTED_DOCUMENTS_PATH: cannot read ${full}: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new PersistedDocumentsError(`PERSISTED_DOCUMENTS_PATH: ${full} is not valid JSON`);
  }
  return parsePersistedDocuments(json, `PERSISTED_DOCUMENTS_PATH ${full}`);
}

/**
 * The `persistedQueries.cache` Apollo is given: manifest first, then (unless
 * `trustedOnly`) the shared APQ store. Manifest documents are never written to
 * the store; with `trustedOnly` nothing is. Keys are bare hashes: the store is
 * APQ's alone (namespace `apq`), so Apollo's own `apq:` key prefix is
 * switched off.
 */
export function trustedDocumentsCache(
  apq: KeyValueCache<string>,
  documents: PersistedDocuments,
  trustedOnly: boolean,
): KeyValueCache<string> {
  return PrefixingKeyValueCache.cacheDangerouslyDoesNotNeedPrefixesForIsolation({
    async get(hash: string) {
      return documents.get(hash) ?? (trustedOnly ? undefined : apq.get(hash));
    },
    async set(hash: string, value: string, options?: KeyValueCacheSetOptions) {
      if (trustedOnly || documents.has(hash)) return;
      await apq.set(hash, value, options);
    },
    async delete(hash: string) {
      return apq.delete(hash);
    },
  });
}

/** Refuses (FORBIDDEN, HTTP 403) any operation whose document is not in the manifest; a no-op unless `trustedOnly`. */
export function persistedDocumentsPlugin(opts: {
  documents: PersistedDocuments;
  trustedOnly: boolean;
}): ApolloServerPlugin<GraphqlContext> {
  if (opts.trustedOnly && opts.documents.size === 0) {
    throw new PersistedDocumentsError('TRUSTED_DOCUMENTS_ONLY needs a non-empty manifest: set PERSISTED_DOCUMENTS_PATH');
  }
  return {
    async requestDidStart() {
      if (!opts.trustedOnly) return;
      return {
        async didResolveOperation(rc) {
          // queryHash is the sha256 of the document text, whether it arrived as text or was looked up by hash.
          if (rc.queryHash && opts.documents.has(rc.queryHash)) return;
          rc.response.http.status = 403;
          throw new AppError(
            'FORBIDDEN',
            'This server only runs trusted documents: send the sha256 of an operation from the persisted documents manifest',
          );
        },
      };
    },
  };
}
