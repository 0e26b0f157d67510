/**
 * Personal API tokens as credentials: their format, their hash, and how a
 * bearer token with their prefix becomes a principal (`tokens.ts` routes by
 * the prefix). The rows are the api-token module's; this file reaches them
 * through the {@link PersonalTokenStore} port handed in by `app.ts`.
 *
 * - Format: `llms_pat_` + 43 base64url characters (256 random bits) + a
 *   12-character tag (an HMAC of the random part under a key derived from
 *   `JWT_SECRET`). The fixed prefix tells them from JWTs (and lets secret
 *   scanners find leaked ones); the first characters after it are the
 *   listing's non-secret `prefix`. The tag lets a made-up token be refused
 *   without a database read: only tokens this server issued cost a lookup.
 * - Stored as SHA-256 of the whole token: with 256 random bits a fast hash is
 *   enough (nothing to brute-force); argon2 is for low-entropy passwords.
 * - Verified tokens are remembered per instance for at most {@link VERIFIED_TTL_MS}
 *   (never past their expiry), keyed by the hash, never by the token. A
 *   revocation is broadcast on the pub/sub port (`api-token:revoked`) and
 *   drops the entry on every instance at once; the 1 s bound holds even when
 *   the broadcast is lost (Redis down). The cost: one indexed read per token,
 *   per instance, per second of use.
 * - `lastUsedAt` is written at most once a minute per token (when a lookup
 *   finds it older than that), never per request.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { LruMap } from '../lru-map';
import type { Logger } from '../observability/logger';
import type { PubSub } from '../pubsub/pubsub.port';
import type { Principal, Role, TokenScope } from './principal';
import { InvalidTokenError, type PersonalTokenCheck } from './tokens';

export const PERSONAL_TOKEN_PREFIX = 'llms_pat_';
const SECRET_BYTES = 32;
/** base64url characters of the random part and of the tag. */
const SECRET_CHARS = 43;
const TAG_BYTES = 9;
const FORMAT = /^llms_pat_[A-Za-z0-9_-]{55}$/;
/** Characters of the secret shown in listings (48 of its 256 bits). */
const LISTED_CHARS = 8;

/** How long a verified token is trusted without reading its row again: the revocation bound without pub/sub. */
export const VERIFIED_TTL_MS = 1_000;
const VERIFIED_MAX = 10_000;
const LAST_USED_EVERY_MS = 60_000;
export const REVOCATION_CHANNEL = 'api-token:revoked';

/** SHA-256 (hex) of a whole token: what the table stores and looks up. */
export function hashPersonalToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Issues tokens and tells this server's from made-up ones (the tag), with a key derived from a server secret. */
export class PersonalTokenFormat {
  private readonly key: Buffer;

  constructor(serverSecret: string) {
    this.key = createHash('sha256').update('llmselect personal-token tag\0').update(serverSecret).digest();
  }

  /** A new token: the value (shown once), its hash (stored) and its listing prefix (stored, not secret). */
  issue(): { token: string; hash: string; prefix: string } {
    const secret = randomBytes(SECRET_BYTES).toString('base64url');
    const token = PERSONAL_TOKEN_PREFIX + secret + this.tag(secret);
    return { token, hash: hashPersonalToken(token), prefix: token.slice(0, PERSONAL_TOKEN_PREFIX.length + LISTED_CHARS) };
  }

  /** Well formed and tagged by this server: only such a token is looked up. */
  genuine(token: string): boolean {
    if (!FORMAT.test(token)) return false;
    const secret = token.slice(PERSONAL_TOKEN_PREFIX.length, PERSONAL_TOKEN_PREFIX.length + SECRET_CHARS);
    const tag = Buffer.from(token.slice(PERSONAL_TOKEN_PREFIX.length + SECRET_CHARS));
    const expected = Buffer.from(this.tag(secret));
    return tag.length === expected.length && timingSafeEqual(tag, expected);
  }

  private tag(secret: string): string {
    return createHmac('sha256', this.key).update(secret).digest().subarray(0, TAG_BYTES).toString('base64url');
  }
}

/** A token's row, as verification needs it. */
export interface PersonalTokenRecord {
  id: string;
  userId: string;
  role: Role;
  scopes: TokenScope[];
  dailyBudgetUsd: number | null;
  expiresAt: Date | null;
  revokedAt: Date | null;
  lastUsedAt: Date | null;
}

/** The rows (`modules/api-token/api-token.service.ts`). */
export interface PersonalTokenStore {
  findByHash(hash: string): Promise<PersonalTokenRecord | null>;
  /** Sets `lastUsedAt` to now unless it was set within the last minute. */
  touch(id: string): Promise<void>;
}

export interface PersonalTokenVerifierDeps {
  store: PersonalTokenStore;
  format: PersonalTokenFormat;
  pubsub: PubSub;
  logger: Logger;
}

export class PersonalTokenVerifier implements PersonalTokenCheck {
  readonly prefix = PERSONAL_TOKEN_PREFIX;
  private readonly verified = new LruMap<string, { principal: Principal; until: number }>(VERIFIED_MAX);
  private readonly inFlight = new Map<string, Promise<Principal>>();
  /** Bumped by every revocation: a lookup that began before one does not remember what it read. */
  private epoch = 0;
  private readonly events = new EventEmitter();
  private unsubscribe?: () => Promise<void>;

  constructor(private readonly deps: PersonalTokenVerifierDeps) {}

  /** Listens for revocations made on any instance. */
  async start(): Promise<void> {
    this.unsubscribe = await this.deps.pubsub.subscribe<{ id?: unknown }>(REVOCATION_CHANNEL, (message) => {
      if (typeof message?.id === 'string') this.forget(message.id);
    });
  }

  async close(): Promise<void> {
    await this.unsubscribe?.();
  }

  /** Called once a token's row is revoked: this instance forgets it now, the others when the broadcast arrives. */
  async revoked(id: string): Promise<void> {
    this.forget(id);
    await this.deps.pubsub.publish(REVOCATION_CHANNEL, { id });
  }

  /** Calls `listener` with the id of every revocation this instance has applied (its own and broadcast ones). */
  onRevoked(listener: (id: string) => void): () => void {
    this.events.on('revoked', listener);
    return () => this.events.off('revoked', listener);
  }

  /** The principal of a personal token; InvalidTokenError (401) when malformed, unknown, revoked or expired. */
  async verify(token: string): Promise<Principal> {
    if (!this.deps.format.genuine(token)) throw new InvalidTokenError('Invalid token');
    const hash = hashPersonalToken(token);
    const known = this.verified.get(hash);
    if (known && known.until > Date.now()) return known.principal;
    let pending = this.inFlight.get(hash);
    if (!pending) {
      pending = this.lookup(hash).finally(() => this.inFlight.delete(hash));
      this.inFlight.set(hash, pending);
    }
    return pending;
  }

  private async lookup(hash: string): Promise<Principal> {
    const epoch = this.epoch;
    const row = await this.deps.store.findByHash(hash);
    if (!row) throw new InvalidTokenError('Invalid token');
    if (row.revokedAt) throw new InvalidTokenError('Token revoked');
    const now = Date.now();
    const expiresAt = row.expiresAt?.getTime() ?? Infinity;
    if (expiresAt <= now) throw new InvalidTokenError('Token expired');
    // Awaited (one short UPDATE a minute per token), so a use is listed once its request is answered.
    if (!row.lastUsedAt || now - row.lastUsedAt.getTime() > LAST_USED_EVERY_MS) {
      const failed = (error: unknown) =>
        this.deps.logger.warn({ error: (error as Error)?.name, tokenId: row.id }, 'could not record a token use');
      await this.deps.store.touch(row.id).catch(failed);
    }
    const grant = { id: row.id, scopes: row.scopes, dailyBudgetUsd: row.dailyBudgetUsd };
    const principal: Principal = { userId: row.userId, role: row.role, token: grant, ...(row.expiresAt ? { expiresAt } : {}) };
    if (epoch === this.epoch) this.verified.set(hash, { principal, until: Math.min(expiresAt, now + VERIFIED_TTL_MS) });
    return principal;
  }

  private forget(id: string): void {
    this.epoch++;
    // A lookup under way may have read the row before the revocation: later callers must not join it.
    this.inFlight.clear();
    for (const [hash, entry] of this.verified) if (entry.principal.token?.id === id) this.verified.delete(hash);
    this.events.emit('revoked', id);
  }
}
