import { UniqueConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../auth/principal';
import { badInput, notFound } from '../../errors';
import { isUuid } from '../../db/pagination';
import { REVEALED } from '../../db/read-plan';
import { pgArray } from '../../db/sql';
import { codePointLength } from '../../input/text-input';
import { checkEndpoint, type EgressPolicy } from '../../llm/egress';
import type { ProviderCredentials } from '../../llm/language-models';
import { ApiKey, Provider } from './api-key.entity';
import type { SecretBox } from './secret-box';

export interface SaveApiKeyArgs {
  provider: Provider;
  apiKey: string;
  label?: string | null;
  baseUrl?: string | null;
}

const LABEL = /^[A-Za-z0-9_.-]{1,40}$/;
/** Providers that have no public endpoint: the key must say where to call. */
const NEEDS_BASE_URL: readonly Provider[] = [Provider.AZURE, Provider.OPENAI_COMPATIBLE];

/** Outside production a local endpoint (Ollama) is fine; see `llm/egress.ts`. */
const ALLOW_ALL: EgressPolicy = { allowPrivateNetworks: true, allowCidrs: [] };

export class ApiKeyService {
  constructor(
    private readonly box: SecretBox,
    /** Where a saved `baseUrl` may point: refused at save time here, and at connect time by the guarded fetch. */
    private readonly egress: EgressPolicy = ALLOW_ALL,
  ) {}

  /** Creates or replaces the key for (owner, provider, label). */
  async save(em: EntityManager, principal: Principal, args: SaveApiKeyArgs): Promise<ApiKey> {
    const label = (args.label ?? 'default').trim();
    if (!LABEL.test(label)) throw badInput('label must be 1-40 letters, digits, "_", "-" or "."', 'label');
    const secret = args.apiKey.trim();
    if (codePointLength(secret) < 4 || codePointLength(secret) > 4096 || /\s/.test(secret)) {
      throw badInput('apiKey must be 4-4096 characters without spaces', 'apiKey');
    }
    const baseUrl = normalizeBaseUrl(args.baseUrl);
    if (NEEDS_BASE_URL.includes(args.provider) && !baseUrl) {
      throw badInput(`baseUrl is required for ${args.provider}`, 'baseUrl');
    }
    const refused = baseUrl ? await checkEndpoint(this.egress, new URL(baseUrl)) : null;
    if (refused) {
      throw badInput(`baseUrl points to ${refused}, which this server does not call (the operator can allow private networks)`, 'baseUrl');
    }
    const sealed = this.box.seal(secret, principal.userId);
    const existing = await em.findOne(ApiKey, { owner: principal.userId, provider: args.provider, label });
    const key =
      existing ??
      em.create(ApiKey, { owner: principal.userId, provider: args.provider, label, encryptedSecret: '', encryptionKeyId: '', last4: '' });
    key.encryptedSecret = sealed.ciphertext;
    key.encryptionKeyId = sealed.keyId;
    key.last4 = secret.slice(-4);
    key.baseUrl = baseUrl;
    try {
      await em.persist(key).flush();
    } catch (error) {
      // Two concurrent saves of the same label: the loser retries as an update.
      if (error instanceof UniqueConstraintViolationException && !existing) return this.save(em.fork(), principal, args);
      throw error;
    }
    return key;
  }

  async delete(em: EntityManager, principal: Principal, id: string): Promise<boolean> {
    if (!isUuid(id)) throw notFound('API key');
    const deleted = await em.nativeDelete(ApiKey, { id, owner: principal.userId });
    if (!deleted) throw notFound('API key');
    return true;
  }

  listForUser(em: EntityManager, userIds: readonly string[]): Promise<ApiKey[]> {
    return em.find(ApiKey, { owner: { $in: [...userIds] } }, { orderBy: { provider: 'asc', label: 'asc' } });
  }

  /**
   * Decrypted `default`-label credentials for every provider the user has one
   * for, in one query (the model list asks each of those providers). Does not
   * touch `lastUsedAt`: listing models is not a model call. A key that can no
   * longer be decrypted (its server key was retired) is left out.
   */
  async defaultCredentials(em: EntityManager, userId: string): Promise<Array<ProviderCredentials & { provider: Provider }>> {
    const keys = await em.find(ApiKey, { owner: userId, label: 'default' }, { orderBy: { provider: 'asc' } });
    const result: Array<ProviderCredentials & { provider: Provider }> = [];
    for (const key of keys) {
      let apiKey: string;
      try {
        apiKey = this.open(key);
      } catch {
        continue;
      }
      result.push({ provider: key.provider, apiKey, baseUrl: key.baseUrl ?? null });
    }
    return result;
  }

  /**
   * Decrypted credentials for one call, or null when the user has no such key.
   * Touches `lastUsedAt` unless `touch` is false (a blind comparison's call:
   * which keys it used would tell which providers are in it, so
   * `markUsedByRevealedComparison` touches them at the vote). The plaintext
   * never leaves the server.
   */
  async credentials(
    em: EntityManager,
    userId: string,
    provider: Provider,
    label: string,
    touch = true,
  ): Promise<ProviderCredentials | null> {
    return (await this.credentialsFor(em, userId, [{ provider, label }], touch))[0] ?? null;
  }

  /**
   * {@link credentials} for several keys of one user, in order, in one statement: the read, and the touch of
   * `lastUsedAt` (kept to the minute: a key used in the last minute is not written again) in the same round trip.
   * Plain SQL, not the unit of work: it runs once per start, for every model of the comparison.
   */
  async credentialsFor(
    em: EntityManager,
    userId: string,
    wanted: ReadonlyArray<{ provider: Provider; label: string }>,
    touch = true,
  ): Promise<Array<ProviderCredentials | null>> {
    if (!wanted.length) return [];
    const rows: KeyRow[] = await em
      .getConnection()
      .execute(CREDENTIALS_SQL, [
        pgArray(wanted.map((w) => w.provider)),
        pgArray(wanted.map((w) => w.label)),
        userId,
        touch,
        new Date(Date.now() - LAST_USED_RESOLUTION_MS),
      ]);
    const byKey = new Map(rows.map((k) => [`${k.provider}\n${k.label}`, k]));
    return wanted.map(({ provider, label }) => {
      const key = byKey.get(`${provider}\n${label}`);
      return key ? { apiKey: this.openSealed(key.encrypted_secret, key.encryption_key_id, userId), baseUrl: key.base_url } : null;
    });
  }

  /**
   * Once a blind comparison of the user's is revealed (voted on): the keys its
   * responses used get the `lastUsedAt` their calls would have set (the
   * responses' creation time, never moved backwards). Idempotent; nothing
   * for a comparison that is not blind or not the user's.
   */
  async markUsedByRevealedComparison(em: EntityManager, principal: Principal, comparisonId: string): Promise<void> {
    if (!isUuid(comparisonId)) return;
    await em.getConnection().execute(
      `update api_keys k
          set last_used_at = greatest(k.last_used_at, u.used_at)
         from (select x.provider, x.key_label, max(x.created_at) as used_at
                 from comparison_responses x join comparison_results c on c.id = x.comparison_id
                where c.id = ? and c.owner_id = ? and c.blind and ${REVEALED.sql('c')}
                group by 1, 2) u
        where k.owner_id = ? and k.provider = u.provider and k.label = u.key_label`,
      [comparisonId, principal.userId, principal.userId],
    );
  }

  /** The plaintext secret; the owner id is the AAD, so a row copied to another user does not open. */
  private open(key: ApiKey): string {
    return this.openSealed(key.encryptedSecret, key.encryptionKeyId, key.owner.id);
  }

  private openSealed(ciphertext: string, keyId: string, ownerId: string): string {
    return this.box.open({ ciphertext, keyId }, ownerId);
  }
}

interface KeyRow {
  provider: string;
  label: string;
  encrypted_secret: string;
  encryption_key_id: string;
  base_url: string | null;
}

/**
 * The user's keys among (provider, label) pairs `?` and `?`, and the touch of the stale ones' `last_used_at`
 * (when `?` is true; stale: null or at or before `?`), in one statement. The update sees the rows as they were
 * before it, so the read returns them unchanged either way.
 */
const CREDENTIALS_SQL = `with found as (
    select k.id, k.provider::text as provider, k.label, k.encrypted_secret, k.encryption_key_id, k.base_url, k.last_used_at
      from api_keys k join unnest(?::text[], ?::text[]) as w(provider, label)
        on k.provider = w.provider::provider and k.label = w.label
     where k.owner_id = ?
  ), params as (select ?::boolean as touch, ?::timestamptz as stale_at), touched as (
    update api_keys k set last_used_at = now() from found, params
     where params.touch and k.id = found.id and (found.last_used_at is null or found.last_used_at <= params.stale_at)
  )
  select provider, label, encrypted_secret, encryption_key_id, base_url from found`;

const MAX_BASE_URL = 2048;
/** How fresh `ApiKey.lastUsedAt` is kept (see `credentialsFor`). */
const LAST_USED_RESOLUTION_MS = 60_000;

function normalizeBaseUrl(raw: string | null | undefined): string | null {
  if (raw === undefined || raw === null || raw.trim() === '') return null;
  if (codePointLength(raw) > MAX_BASE_URL) throw badInput(`baseUrl must be at most ${MAX_BASE_URL} characters`, 'baseUrl');
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw badInput('baseUrl is not a valid URL', 'baseUrl');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw badInput('baseUrl must be http(s)', 'baseUrl');
  if (url.username || url.password) throw badInput('baseUrl must not contain credentials', 'baseUrl');
  return url.toString().replace(/\/+$/, '');
}
