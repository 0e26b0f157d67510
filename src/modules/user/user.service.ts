import type { EntityManager } from '@mikro-orm/postgresql';
import { UniqueConstraintViolationException } from '@mikro-orm/core';
import argon2 from 'argon2';
import type { Principal } from '../../auth/principal';
import type { TokenService } from '../../auth/tokens';
import type { RateLimiter, RateLimitVerdict } from '../../cache/rate-limit';
import { AppError, badInput, rateLimited } from '../../errors';
import { selectPlain } from '../../db/plain';
import { codePointLength } from '../../input/text-input';
import { User, UserRole, type UserView } from './user.entity';

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const MIN_PASSWORD = 8;
const MAX_PASSWORD = 256;
/** Same message for unknown email and wrong password: don't reveal who is registered. */
const LOGIN_FAILED = 'Invalid email or password';

export interface AuthResult {
  token: string;
  user: User;
}

/**
 * Brute-force limits on `login` and `register` (see README "Rate limits and budgets").
 * Every attempt spends a point on its account (email) and on its client IP
 * before the password is looked at, so parallel guesses are counted too; a
 * successful login gives both back and clears the account's failures, a
 * successful registration gives back the account's. So what counts is failed
 * logins (per account and per IP) and registrations (per IP).
 */
export interface AuthLimits {
  perAccount: RateLimiter;
  perIp: RateLimiter;
}

export class UserService {
  /** A real hash to verify against when the email is unknown, so both paths cost the same. */
  private dummyHash: Promise<string> | undefined;
  private readonly hashOptions: argon2.HashOptions & { raw?: false };

  constructor(
    private readonly tokens: TokenService,
    private readonly adminEmails: readonly string[],
    cost: { memoryCostKib: number; timeCost: number },
    private readonly limits: AuthLimits,
  ) {
    this.hashOptions = { type: argon2.argon2id, memoryCost: cost.memoryCostKib, timeCost: cost.timeCost, parallelism: 1 };
  }

  async register(em: EntityManager, rawEmail: string, password: string, clientIp: string): Promise<AuthResult> {
    const email = normalizeEmail(rawEmail);
    await this.spendAttempt(email, clientIp);
    if (!EMAIL.test(email) || codePointLength(email) > 254) throw badInput('Email address is not valid', 'email');
    const passwordLength = codePointLength(password);
    if (passwordLength < MIN_PASSWORD || passwordLength > MAX_PASSWORD) {
      throw badInput(`Password must be ${MIN_PASSWORD} to ${MAX_PASSWORD} characters`, 'password');
    }
    const user = em.create(User, {
      email,
      passwordHash: await argon2.hash(password, this.hashOptions),
      role: this.adminEmails.includes(email) ? UserRole.ADMIN : UserRole.USER,
    });
    try {
      await em.persist(user).flush();
    } catch (error) {
      if (error instanceof UniqueConstraintViolationException) {
        throw badInput('An account with this email already exists', 'email');
      }
      throw error;
    }
    await this.limits.perAccount.reset(email);
    return { token: await this.tokens.sign(principalOf(user)), user };
  }

  async login(em: EntityManager, rawEmail: string, password: string, clientIp: string): Promise<AuthResult> {
    const email = normalizeEmail(rawEmail);
    await this.spendAttempt(email, clientIp);
    const user = await em.findOne(User, { email }, { populate: ['passwordHash'] });
    this.dummyHash ??= argon2.hash('not-a-real-password', this.hashOptions);
    const ok = await argon2.verify(user?.passwordHash ?? (await this.dummyHash), password).catch(() => false);
    if (!user || !ok) throw new AppError('UNAUTHENTICATED', LOGIN_FAILED);
    await Promise.all([this.limits.perAccount.reset(email), this.limits.perIp.refund(clientIp, 1)]);
    return { token: await this.tokens.sign(principalOf(user)), user };
  }

  /** One point on the account and one on the IP, or RATE_LIMITED (with the longer wait) and nothing spent. */
  private async spendAttempt(email: string, clientIp: string): Promise<void> {
    const [account, ip] = await Promise.all([this.limits.perAccount.consume(email), this.limits.perIp.consume(clientIp)]);
    if (account.allowed && ip.allowed) return;
    // Give back the one that was spent, so a refused attempt costs nothing.
    if (account.allowed) await this.limits.perAccount.refund(email, 1);
    if (ip.allowed) await this.limits.perIp.refund(clientIp, 1);
    const wait = Math.max(retryAfterOf(account), retryAfterOf(ip));
    throw rateLimited(wait, `Too many attempts: retry in ${wait} s`);
  }

  /** Plain read (never the password hash). */
  async findById(em: EntityManager, id: string): Promise<UserView | null> {
    const [user] = await selectPlain<UserView>(em, User, 'u', 'u.id = ?', [id]);
    return user ?? null;
  }
}

function retryAfterOf(verdict: RateLimitVerdict): number {
  return verdict.allowed ? 0 : verdict.retryAfterSeconds;
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

function principalOf(user: User): Principal {
  return { userId: user.id, role: user.role };
}
