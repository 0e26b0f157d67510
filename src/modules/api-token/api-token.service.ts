/**
 * Personal API tokens: created (the value shown once), listed, revoked. The
 * rows are also the store `auth/personal-tokens.ts` verifies bearer tokens
 * against ({@link ApiTokenService.findByHash}, {@link ApiTokenService.touch}).
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { PersonalTokenFormat, PersonalTokenRecord, PersonalTokenStore } from '../../auth/personal-tokens';
import { type Principal, type Role, TokenScope } from '../../auth/principal';
import type { Orm } from '../../db/orm';
import { isUuid } from '../../db/pagination';
import { badInput, notFound } from '../../errors';
import { codePointLength } from '../../input/text-input';
import { ApiToken, type ApiTokenView } from './api-token.entity';

export interface CreateApiTokenArgs {
  name: string;
  scopes: TokenScope[];
  expiresInDays?: number | null;
  dailyBudgetUsd?: number | null;
}

/** Tokens a user may hold that are neither revoked nor expired. */
export const MAX_ACTIVE_TOKENS = 50;
const MAX_DAYS = 3650;
const DAY_MS = 24 * 60 * 60 * 1000;

/** Told of each revocation, so every instance forgets the token at once (`PersonalTokenVerifier.revoked`). */
export interface Revocations {
  revoked(id: string): Promise<void>;
}

const VIEW_COLUMNS = `id, created_at as "createdAt", name, scopes, prefix, expires_at as "expiresAt", last_used_at as "lastUsedAt",
       daily_budget_usd as "dailyBudgetUsd", revoked_at as "revokedAt"`;

export class ApiTokenService implements PersonalTokenStore {
  constructor(private readonly deps: { orm: Orm; revocations: Revocations; format: PersonalTokenFormat }) {}

  /** A new token of the caller's: the value is in the answer and nowhere else, ever. */
  async create(em: EntityManager, principal: Principal, args: CreateApiTokenArgs): Promise<{ token: string; apiToken: ApiTokenView }> {
    const name = args.name.trim();
    if (codePointLength(name) < 1 || codePointLength(name) > 100) throw badInput('name must be 1-100 characters', 'name');
    const scopes = [...new Set(args.scopes)];
    if (scopes.length === 0) throw badInput(`scopes must name at least one of ${Object.values(TokenScope).join(', ')}`, 'scopes');
    const days = args.expiresInDays ?? null;
    if (days !== null && !(Number.isInteger(days) && days >= 1 && days <= MAX_DAYS)) {
      throw badInput(`expiresInDays must be a whole number from 1 to ${MAX_DAYS}, or null for no expiry`, 'expiresInDays');
    }
    const cap = args.dailyBudgetUsd ?? null;
    if (cap !== null && !(Number.isFinite(cap) && cap > 0)) {
      throw badInput('dailyBudgetUsd must be a number > 0, or null for no cap of its own', 'dailyBudgetUsd');
    }
    const { token, hash, prefix } = this.deps.format.issue();
    // Counted and inserted under the owner's lock: parallel creates cannot pass the limit together.
    const row = await em.transactional(async (tx) => {
      const ctx = tx.getTransactionContext();
      const lock = `select pg_advisory_xact_lock(hashtextextended(?, 0))`;
      await tx.getConnection().execute(lock, [`api-tokens:${principal.userId}`], 'all', ctx);
      const [{ active }] = (await tx.getConnection().execute<Array<{ active: string }>>(
        `select count(*) as active from api_tokens
            where owner_id = ? and revoked_at is null and (expires_at is null or expires_at > now())`,
        [principal.userId],
        'all',
        ctx,
      )) as [{ active: string }];
      if (Number(active) >= MAX_ACTIVE_TOKENS) throw badInput(`At most ${MAX_ACTIVE_TOKENS} active tokens: revoke one first`, 'name');
      return tx.create(ApiToken, {
        owner: principal.userId,
        name,
        scopes,
        tokenHash: hash,
        prefix,
        expiresAt: days === null ? null : new Date(Date.now() + days * DAY_MS),
        dailyBudgetUsd: cap,
      });
    });
    return { token, apiToken: viewOf(row) };
  }

  /** The caller's tokens, newest first, revoked and expired ones included. */
  async list(em: EntityManager, principal: Principal): Promise<ApiTokenView[]> {
    const rows = await em
      .getConnection()
      .execute<ApiTokenView[]>(`select ${VIEW_COLUMNS} from api_tokens where owner_id = ? order by created_at desc, id desc`, [
        principal.userId,
      ]);
    return rows.map(plainView);
  }

  /** Revokes one of the caller's tokens (idempotent); every instance refuses it within a second. */
  async revoke(em: EntityManager, principal: Principal, id: string): Promise<ApiTokenView> {
    if (!isUuid(id)) throw notFound('API token');
    const [row] = await em
      .getConnection()
      .execute<ApiTokenView[]>(
        `update api_tokens set revoked_at = coalesce(revoked_at, now()) where id = ? and owner_id = ? returning ${VIEW_COLUMNS}`,
        [id, principal.userId],
      );
    if (!row) throw notFound('API token');
    await this.deps.revocations.revoked(id);
    return plainView(row);
  }

  async findByHash(hash: string): Promise<PersonalTokenRecord | null> {
    const [row] = await this.deps.orm.em.getConnection().execute<Array<PersonalTokenRecord & { role: Role }>>(
      `select t.id, t.owner_id as "userId", u.role, t.scopes, t.daily_budget_usd as "dailyBudgetUsd",
              t.expires_at as "expiresAt", t.revoked_at as "revokedAt", t.last_used_at as "lastUsedAt"
         from api_tokens t join users u on u.id = t.owner_id
        where t.token_hash = ?`,
      [hash],
    );
    if (!row) return null;
    return {
      ...row,
      scopes: scopesOf(row.scopes),
      dailyBudgetUsd: row.dailyBudgetUsd ?? null,
      expiresAt: dateOf(row.expiresAt),
      revokedAt: dateOf(row.revokedAt),
      lastUsedAt: dateOf(row.lastUsedAt),
    };
  }

  async touch(id: string): Promise<void> {
    await this.deps.orm.em.getConnection().execute(
      `update api_tokens set last_used_at = now()
          where id = ? and (last_used_at is null or last_used_at < now() - interval '1 minute')`,
      [id],
    );
  }
}

function viewOf(row: ApiToken): ApiTokenView {
  const { id, createdAt, name, scopes, prefix, expiresAt, lastUsedAt, dailyBudgetUsd, revokedAt } = row;
  return {
    id,
    createdAt,
    name,
    scopes,
    prefix,
    expiresAt: expiresAt ?? null,
    lastUsedAt: lastUsedAt ?? null,
    dailyBudgetUsd: dailyBudgetUsd ?? null,
    revokedAt: revokedAt ?? null,
  };
}

function plainView(row: ApiTokenView): ApiTokenView {
  return {
    ...row,
    scopes: scopesOf(row.scopes),
    createdAt: dateOf(row.createdAt)!,
    expiresAt: dateOf(row.expiresAt),
    lastUsedAt: dateOf(row.lastUsedAt),
    revokedAt: dateOf(row.revokedAt),
  };
}

/** node-postgres parses `text[]` into an array; a literal `{A,B}` if the type is unknown. */
function scopesOf(value: unknown): TokenScope[] {
  const list = Array.isArray(value)
    ? value
    : String(value ?? '')
        .replace(/^\{|\}$/g, '')
        .split(',');
  return list.filter((s): s is TokenScope => Object.values(TokenScope).includes(s as TokenScope));
}

function dateOf(value: unknown): Date | null {
  if (value === null || value === undefined) return null;
  return value instanceof Date ? value : new Date(value as string);
}
