/**
 * JWTs (HS256 pinned, with expiry): how a request's bearer token becomes its
 * principal (`principal.ts`). The principal comes only from the verified
 * token's claims: no user lookup per request. A bearer token with the
 * personal-token prefix is handed to {@link PersonalTokenCheck}
 * (`personal-tokens.ts`) instead.
 */
import { HeaderMap } from '@apollo/server';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { createSecretKey, type KeyObject } from 'node:crypto';
import { LruMap } from '../lru-map';
import { AppError } from '../errors';
import type { Principal } from './principal';

const ALGORITHM = 'HS256';
const ISSUER = 'llmselect';

/** The challenge of a 401 (RFC 6750): a Bearer token is what this API takes. */
export const BEARER_CHALLENGE = 'Bearer realm="llmselect"';

/**
 * UNAUTHENTICATED for credentials that were sent but are not valid (bad
 * header, forged, expired, wrong algorithm): the whole request fails with
 * HTTP 401 and `WWW-Authenticate: Bearer … error="invalid_token"`, on
 * /graphql (Apollo reads `extensions.http`) and /graphql/stream alike.
 */
export class InvalidTokenError extends AppError {
  constructor(message: string) {
    super('UNAUTHENTICATED', message, {
      http: { status: 401, headers: new HeaderMap([['www-authenticate', `${BEARER_CHALLENGE}, error="invalid_token"`]]) },
    });
  }
}

/**
 * Verified tokens are remembered briefly (bounded; never past their expiry),
 * so a cache hit does not pay a signature check per request. Only tokens that
 * verified are remembered: a forged one is checked (and refused) every time.
 */
const VERIFIED_TTL_MS = 60_000;
const VERIFIED_MAX = 10_000;

/** Personal API tokens (`personal-tokens.ts`): told apart from JWTs by their fixed prefix. */
export interface PersonalTokenCheck {
  readonly prefix: string;
  /** The token's principal (with its grant); InvalidTokenError when it is not valid now. */
  verify(token: string): Promise<Principal>;
}

export class TokenService {
  private readonly verified = new LruMap<string, { principal: Principal; expiresAt: number }>(VERIFIED_MAX);

  /** A KeyObject made once: jose would otherwise import the raw secret on every verify. */
  private readonly key: KeyObject;

  constructor(
    secret: string,
    private readonly expiresIn: string,
    private readonly personal?: PersonalTokenCheck,
  ) {
    this.key = createSecretKey(Buffer.from(secret, 'utf8'));
  }

  async sign(principal: Principal): Promise<string> {
    return new SignJWT({ role: principal.role })
      .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
      .setSubject(principal.userId)
      .setIssuer(ISSUER)
      .setIssuedAt()
      .setExpirationTime(this.expiresIn)
      .sign(this.key);
  }

  /**
   * Verifies signature, algorithm (only HS256: `alg: none` and any other
   * algorithm are rejected), issuer and expiry. Throws InvalidTokenError (UNAUTHENTICATED, 401).
   */
  async verify(token: string): Promise<Principal> {
    try {
      const { payload } = await jwtVerify(token, this.key, { algorithms: [ALGORITHM], issuer: ISSUER });
      const role = payload.role;
      if (typeof payload.sub !== 'string' || (role !== 'USER' && role !== 'ADMIN')) {
        throw new InvalidTokenError('Invalid token');
      }
      return { userId: payload.sub, role, ...(typeof payload.exp === 'number' ? { expiresAt: payload.exp * 1000 } : {}) };
    } catch (error) {
      if (error instanceof AppError) throw error;
      const expired = error instanceof joseErrors.JWTExpired;
      throw new InvalidTokenError(expired ? 'Token expired' : 'Invalid token');
    }
  }

  /** Reads `Authorization: Bearer <jwt or personal token>`; no header → null (anonymous). */
  async fromAuthorizationHeader(header: string | undefined | null): Promise<Principal | null> {
    if (!header) return null;
    const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
    if (!match) throw new InvalidTokenError('Authorization header must be "Bearer <token>"');
    const token = match[1]!;
    if (this.personal && token.startsWith(this.personal.prefix)) return this.personal.verify(token);
    const known = this.verified.get(token);
    if (known && known.expiresAt > Date.now()) return known.principal;
    const principal = await this.verify(token);
    this.verified.set(token, { principal, expiresAt: Math.min(this.expiryOf(token), Date.now() + VERIFIED_TTL_MS) });
    return principal;
  }

  /** The token's `exp` in ms (verified already); now when absent, so it is not remembered. */
  private expiryOf(token: string): number {
    try {
      const exp = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { exp?: unknown }).exp;
      return typeof exp === 'number' ? exp * 1000 : Date.now();
    } catch {
      return Date.now();
    }
  }
}
