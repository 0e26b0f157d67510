/**
 * Who is asking: the principal a verified token names (`tokens.ts`), handed
 * as a plain value from the edge through resolvers to services. `null` is an
 * anonymous request.
 */
import { AppError } from '../errors';

export type Role = 'USER' | 'ADMIN';

export interface Principal {
  userId: string;
  role: Role;
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
