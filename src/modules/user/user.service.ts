import type { EntityManager } from '@mikro-orm/postgresql';
import { UniqueConstraintViolationException } from '@mikro-orm/core';
import argon2 from 'argon2';
import type { Principal, TokenService } from '../../graphql/auth';
import { AppError, badInput } from '../../graphql/errors';
import { selectPlain } from '../../db/plain';
import { codePointLength } from '../../graphql/text-input';
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

export class UserService {
  /** A real hash to verify against when the email is unknown, so both paths cost the same. */
  private dummyHash: Promise<string> | undefined;
  private readonly hashOptions: argon2.HashOptions & { raw?: false };

  constructor(
    private readonly tokens: TokenService,
    private readonly adminEmails: readonly string[],
    cost: { memoryCostKib: number; timeCost: number },
  ) {
    this.hashOptions = { type: argon2.argon2id, memoryCost: cost.memoryCostKib, timeCost: cost.timeCost, parallelism: 1 };
  }

  async register(em: EntityManager, rawEmail: string, password: string): Promise<AuthResult> {
    const email = normalizeEmail(rawEmail);
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
      await em.persistAndFlush(user);
    } catch (error) {
      if (error instanceof UniqueConstraintViolationException) {
        throw badInput('An account with this email already exists', 'email');
      }
      throw error;
    }
    return { token: await this.tokens.sign(principalOf(user)), user };
  }

  async login(em: EntityManager, rawEmail: string, password: string): Promise<AuthResult> {
    const email = normalizeEmail(rawEmail);
    const user = await em.findOne(User, { email }, { populate: ['passwordHash'] });
    this.dummyHash ??= argon2.hash('not-a-real-password', this.hashOptions);
    const ok = await argon2.verify(user?.passwordHash ?? (await this.dummyHash), password).catch(() => false);
    if (!user || !ok) throw new AppError('UNAUTHENTICATED', LOGIN_FAILED);
    return { token: await this.tokens.sign(principalOf(user)), user };
  }

  /** Plain read (never the password hash). */
  async findById(em: EntityManager, id: string): Promise<UserView | null> {
    const [user] = await selectPlain<UserView>(em, User, 'u', 'u.id = ?', [id]);
    return user ?? null;
  }
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

function principalOf(user: User): Principal {
  return { userId: user.id, role: user.role };
}
