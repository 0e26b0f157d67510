/**
 * Who is asking: the principal a verified token names (`tokens.ts`), handed
 * as a plain value from the edge through resolvers to services. `null` is an
 * anonymous request.
 */
import { AppError } from '../errors';

export type Role = 'USER' | 'ADMIN';

/** What a personal API token may be granted (what each allows: `token-scopes.ts`). */
export enum TokenScope {
  READ = 'READ',
  COMPARE = 'COMPARE',
  EVAL = 'EVAL',
}

export interface Principal {
  userId: string;
  role: Role;
  /**
   * Present when the request came with a personal API token
   * (`personal-tokens.ts`): which one, what it may do (`token-scopes.ts`) and
   * its own daily spend cap (`modules/usage/usage.service.ts`). Absent for a JWT.
   */
  token?: PersonalTokenGrant;
  /** When the credential expires (ms since the epoch; absent: never): an event stream opened with it ends then. */
  expiresAt?: number;
}

export interface PersonalTokenGrant {
  id: string;
  scopes: readonly TokenScope[];
  /** USD over a rolling 24 h through this token; null: only the user's own budget applies. */
  dailyBudgetUsd: number | null;
}

export function requireUser(principal: Principal | null): Principal {
  if (!principal) throw new AppError('UNAUTHENTICATED', 'Sign in to do this');
  return principal;
}

export function requireAdmin(principal: Principal | null): Principal {
  const user = requireUser(principal);
  if (user.role !== 'ADMIN') throw new AppError('FORBIDDEN', 'Only administrators can do this');
  return user;
}
