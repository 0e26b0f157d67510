/**
 * Keyset (cursor) pagination on `(created_at, id)`.
 *
 * A cursor is `base64url(JSON [scope, createdAtIso, id, extra?]).hmac`: opaque to
 * clients, signed so a tampered cursor or one from another list (`scope`,
 * e.g. `conversations:<userId>`) answers BAD_USER_INPUT instead of silently
 * paging somewhere else. Rows have millisecond timestamps set in JS, so the
 * ISO string round-trips exactly. `extra` carries one more sort key for
 * lists that order by something before `(created_at, id)` (search: the rank).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { badInput } from '../errors';

export const MAX_PAGE_SIZE = 100;

export interface CursorPosition {
  createdAt: Date;
  id: string;
}

export interface DecodedCursor extends CursorPosition {
  /** The extra sort key given to `encode`, if any (signed with the rest). */
  extra?: string;
}

export interface PageInfo {
  hasNextPage: boolean;
  endCursor: string | null;
}

export interface Page<T> {
  nodes: T[];
  pageInfo: PageInfo;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class CursorCodec {
  constructor(private readonly secret: string) {}

  private sign(body: string): string {
    return createHmac('sha256', this.secret).update(body).digest('base64url').slice(0, 22);
  }

  encode(scope: string, position: CursorPosition, extra?: string): string {
    const fields = [scope, position.createdAt.toISOString(), position.id, ...(extra === undefined ? [] : [extra])];
    const body = Buffer.from(JSON.stringify(fields)).toString('base64url');
    return `${body}.${this.sign(body)}`;
  }

  /** Throws BAD_USER_INPUT for anything that is not a cursor this server made for `scope`. */
  decode(scope: string, cursor: string): DecodedCursor {
    const invalid = () => badInput('Invalid cursor: pass pageInfo.endCursor from the previous page of this list', 'after');
    const [body, mac, trailing] = cursor.split('.');
    if (!body || !mac || trailing !== undefined || cursor.length > 512) throw invalid();
    const expected = Buffer.from(this.sign(body));
    const given = Buffer.from(mac);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) throw invalid();
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    } catch {
      throw invalid();
    }
    if (!Array.isArray(parsed) || (parsed.length !== 3 && parsed.length !== 4) || parsed[0] !== scope) throw invalid();
    const [, iso, id, extra] = parsed as [string, unknown, unknown, unknown];
    const createdAt = typeof iso === 'string' ? new Date(iso) : new Date(NaN);
    if (Number.isNaN(createdAt.getTime()) || typeof id !== 'string' || !UUID.test(id)) throw invalid();
    if (extra !== undefined && typeof extra !== 'string') throw invalid();
    return extra === undefined ? { createdAt, id } : { createdAt, id, extra };
  }
}

/** Validates `first`: 1..100, else BAD_USER_INPUT (lists without a read plan: search; the others use `pageLimit` of `db/read-plan.ts`). */
export function pageSize(first: number | null | undefined, fallback: number): number {
  const size = first ?? fallback;
  if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE) {
    throw badInput(`first must be between 1 and ${MAX_PAGE_SIZE}, got ${size}`, 'first');
  }
  return size;
}

/**
 * Turns `limit + 1` fetched rows into a page: the extra row only tells
 * whether another page exists.
 */
export function toPage<T extends CursorPosition>(rows: T[], limit: number, cursorFor: (row: T) => string): Page<T> {
  const hasNextPage = rows.length > limit;
  const nodes = hasNextPage ? rows.slice(0, limit) : rows;
  const last = nodes[nodes.length - 1];
  return { nodes, pageInfo: { hasNextPage, endCursor: last ? cursorFor(last) : null } };
}

export function isUuid(value: string): boolean {
  return UUID.test(value);
}
