/**
 * Share links (issue 19 item 5): a conversation or a comparison shown to
 * anyone holding the link's token, as it was when shared.
 *
 * - The token: 32 random bytes as 43 base64url characters (256 bits), shown
 *   once; the row keeps its SHA-256 (`token_hash`, unique) and its first
 *   characters (`prefix`, for the list). A token of the wrong length or
 *   alphabet answers null before any lookup.
 * - The snapshot is fixed at share time: the title, its time `as_of` (the
 *   conversation's messages are read through the MESSAGES plan's source as
 *   of then: a fork's inherited turns, the versions current then, nothing
 *   written later) and one row per comparison shared (a fork's inherited
 *   ones too) with whether it was revealed then
 *   (`share_link_comparisons.revealed`, written with `REVEALED.sql`). The
 *   SHARED_REVEALED rule (`db/read-plan.ts`) reads that column and conceals
 *   what REVEALED conceals: a blind comparison shared before its vote stays
 *   blind through that link; sharing again makes a new snapshot. Responses
 *   written after the share (a fused answer) are not in it. Never shown:
 *   the owner, emails, key labels, providers, costs, tokens.
 * - Reads (`view`): per-IP rate limit, then an in-process memo (≤ 1 s, never
 *   past the link's expiry), then the shared cache (one round trip: a
 *   versioned entry under the link's own generation, `share:<hash>`), then
 *   PostgreSQL (three indexed statements). A revocation bumps that generation
 *   (`invalidateShared`: every instance's next lookup misses) and is
 *   broadcast on `share-link:revoked` (every instance drops its memo at
 *   once); without the broadcast the memo's 1 s bound still holds. A build
 *   that began before a revocation is neither memoised nor stored (the
 *   generation it was read at is stale; the epoch moved).
 * - Views are counted in memory and written every `viewFlushMs` as one
 *   statement for all links (and on close), never per request, to links
 *   still live (SHARE_LINK_LIVE) when written: an edge hit of a revoked or
 *   expired link's token serves its stored null answer, which is no view.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import { createHash, randomBytes } from 'node:crypto';
import type { Principal } from '../../auth/principal';
import type { CachePort } from '../../cache/cache.port';
import type { RateLimiter } from '../../cache/rate-limit';
import type { Orm } from '../../db/orm';
import { pgArray } from '../../db/sql';
import { type CursorCodec, isUuid, type Page } from '../../db/pagination';
import {
  childListSourceSql,
  childOfSql,
  childSourceSql,
  COMPARISON_BY_ID,
  CONVERSATION_BY_ID,
  CONVERSATION_COMPARISONS,
  CURRENT_VERSION,
  MESSAGES,
  orderSql,
  ownerSql,
  RESPONSE_LABEL,
  RESPONSES,
  REVEALED,
  readOwnedPage,
  SHARE_LINK_LIVE,
  SHARE_LINKS,
  SHARED_COMPARISONS,
  SHARED_REVEALED,
  SHARED_SNAPSHOT,
} from '../../db/read-plan';
import { badInput, notFound, rateLimited } from '../../errors';
import { LruMap } from '../../lru-map';
import { BACKGROUND_SQL_TAG } from '../comparison/comparison-runner';
import type { Logger } from '../../observability/logger';
import type { PubSub } from '../../pubsub/pubsub.port';
import type { ReadCacheInvalidation } from '../../read-cache/invalidation';
import { readCacheKeys } from '../../read-cache/keys';

export type ShareTargetName = 'CONVERSATION' | 'COMPARISON';

export interface ShareLinkView {
  id: string;
  target: ShareTargetName;
  targetId: string;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  views: number;
  url: string;
}

export interface SharedMessageView {
  role: string;
  content: string;
  model: string | null;
  createdAt: Date;
}

export interface SharedResponseView {
  label: string;
  model: string | null;
  content: string;
  status: string;
  kind: string;
}

export interface SharedComparisonView {
  prompt: string;
  blind: boolean;
  revealed: boolean;
  createdAt: Date;
  responses: SharedResponseView[];
}

export interface SharedViewData {
  title: string | null;
  messages: SharedMessageView[];
  comparisons: SharedComparisonView[];
  sharedAt: Date;
}

export interface CreateShareLinkArgs {
  conversationId?: string | null;
  comparisonId?: string | null;
  expiresInHours?: number | null;
}

/** 256 random bits as base64url. */
const TOKEN_BYTES = 32;
export const SHARE_TOKEN_FORMAT = /^[A-Za-z0-9_-]{43}$/;
/** Characters of the token shown in listings (36 of its 256 bits). */
const LISTED_CHARS = 6;
const MAX_HOURS = 24 * 365;
/** How long an instance trusts a snapshot it read without asking the shared cache: the revocation bound without pub/sub. */
export const SHARED_MEMO_MS = 1_000;
const MEMO_ENTRIES = 2_000;
export const SHARE_REVOCATION_CHANNEL = 'share-link:revoked';

/** SHA-256 (hex) of a share token: what the table stores and looks up. */
export function hashShareToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The cache's generation scope of one link: its revocation bumps it (the service's entry and the edge's). */
const SCOPE_PREFIX = 'share:';
const scopeOf = (hash: string) => `${SCOPE_PREFIX}${hash}`;

/**
 * The read-cache scope a `token` argument names (`cacheHint({ publicEntry })`
 * on `shared` and `exportShared`): the edge stores and answers anonymous
 * pages of a link under it, so a revocation's generation bump reaches them
 * too; undefined for a malformed token (never stored).
 */
export function sharedScope(token: unknown): string | undefined {
  return typeof token === 'string' && SHARE_TOKEN_FORMAT.test(token) ? scopeOf(hashShareToken(token)) : undefined;
}
const ENTRY = 'view';

/** What the cache and the memo keep: the snapshot (null: no such live link), its link and when it stops being served. */
interface Stored {
  linkId: string | null;
  expiresAt: number | null;
  view: SharedViewData | null;
}

export interface ShareLinkServiceDeps {
  orm: Orm;
  cache: CachePort;
  pubsub: PubSub;
  invalidation: ReadCacheInvalidation;
  cursors: CursorCodec;
  perIp: RateLimiter;
  logger: Logger;
  baseUrl: string;
  cacheTtlMs: number;
  viewFlushMs: number;
}

const LINK_COLUMNS = `l.id, l.target, coalesce(l.conversation_id, l.comparison_id) as "targetId", l.created_at as "createdAt",
       l.expires_at as "expiresAt", l.revoked_at as "revokedAt", l.views, l.prefix`;

export class ShareLinkService {
  private readonly memo = new LruMap<string, { stored: Stored; until: number }>(MEMO_ENTRIES);
  private readonly inFlight = new Map<string, Promise<Stored>>();
  /** Bumped by every revocation heard: a build that began before one is not kept. */
  private epoch = 0;
  private readonly pendingViews = new Map<string, number>();
  /** Views answered at the edge from the read cache, by token hash (the edge knows the scope, not the link). */
  private readonly pendingHashViews = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private unsubscribe?: () => Promise<void>;
  private flushing: Promise<void> = Promise.resolve();

  constructor(private readonly deps: ShareLinkServiceDeps) {}

  /** Listens for revocations made on any instance, and starts writing view counts. */
  async start(): Promise<void> {
    this.unsubscribe = await this.deps.pubsub.subscribe<{ hash?: unknown }>(SHARE_REVOCATION_CHANNEL, (message) => {
      if (typeof message?.hash === 'string') this.forget(message.hash);
    });
    this.timer = setInterval(() => void this.flushViews(), this.deps.viewFlushMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.unsubscribe?.();
    await this.flushViews();
  }

  /** A new link to one of the caller's conversations or comparisons; the token is in the answer and nowhere else. */
  async create(em: EntityManager, principal: Principal, args: CreateShareLinkArgs): Promise<{ token: string; link: ShareLinkView }> {
    const conversationId = args.conversationId ?? null;
    const comparisonId = args.comparisonId ?? null;
    if ((conversationId === null) === (comparisonId === null)) {
      throw badInput('Give exactly one of conversationId and comparisonId', conversationId === null ? 'conversationId' : 'comparisonId');
    }
    const hours = args.expiresInHours ?? null;
    if (hours !== null && !(Number.isInteger(hours) && hours >= 1 && hours <= MAX_HOURS)) {
      throw badInput(`expiresInHours must be a whole number from 1 to ${MAX_HOURS}, or null for no expiry`, 'expiresInHours');
    }
    const target: ShareTargetName = conversationId ? 'CONVERSATION' : 'COMPARISON';
    const targetId = (conversationId ?? comparisonId)!;
    if (!isUuid(targetId)) throw notFound(target === 'CONVERSATION' ? 'Conversation' : 'Comparison');
    const token = randomBytes(TOKEN_BYTES).toString('base64url');
    const hash = hashShareToken(token);
    const id = await em.transactional(async (tx) => {
      const ctx = tx.getTransactionContext();
      const run = <T extends object[]>(sql: string, params: unknown[]) => tx.getConnection().execute<T>(sql, params, 'all', ctx);
      let title: string | null = null;
      if (target === 'CONVERSATION') {
        const c = CONVERSATION_BY_ID;
        // Locked: a delete of the conversation waits for the share, or the share sees it gone (ownerSql leaves deleted ones out).
        const [row] = await run<Array<{ title: string }>>(
          `select c.title from ${c.table} c where c.id = ? and ${ownerSql(c, 'c')} for share`,
          [targetId, principal.userId],
        );
        if (!row) throw notFound('Conversation');
        title = row.title;
      } else {
        const c = COMPARISON_BY_ID;
        const [row] = await run<Array<{ id: string }>>(`select c.id from ${c.table} c where c.id = ? and ${ownerSql(c, 'c')} for share`, [
          targetId,
          principal.userId,
        ]);
        if (!row) throw notFound('Comparison');
      }
      // The snapshot's time: now, or the last message written if the application's clock ran ahead of the database's.
      const written = `coalesce(m.${CURRENT_VERSION.writtenAt}, m.created_at)`;
      const messages = childSourceSql(MESSAGES, (column) => `${column} = p.conversation`);
      const [link] = await run<Array<{ id: string }>>(
        `with p as (select ?::uuid as conversation)
         insert into ${SHARE_LINKS.table} (id, created_at, owner_id, target, conversation_id, comparison_id, token_hash, prefix, title,
                                  ${SHARED_SNAPSHOT.asOf}, expires_at, views)
         select gen_random_uuid(), now(), ?, ?, ?, ?, ?, ?, ?,
                greatest(now(), (select max(${written}) from p, lateral (${messages}) m)),
                case when ?::int is null then null else now() + make_interval(hours => ?::int) end, 0
         returning id`,
        [conversationId, principal.userId, target, conversationId, comparisonId, hash, token.slice(0, LISTED_CHARS), title, hours, hours],
      );
      // The snapshot's comparisons (a fork's inherited ones too), each with whether REVEALED held for it now (SHARED_REVEALED's fact).
      const which =
        target === 'CONVERSATION'
          ? `from p, lateral (${childListSourceSql(CONVERSATION_COMPARISONS, (column) => `${column} = p.target`)}) c`
          : `from p, ${COMPARISON_BY_ID.table} c where c.id = p.target`;
      await run(
        `with p as (select ?::uuid as target)
         insert into ${SHARED_COMPARISONS.table} (id, created_at, link_id, comparison_id, position, revealed)
         select gen_random_uuid(), now(), ?, c.id, (row_number() over (order by c.created_at, c.id) - 1)::int, ${REVEALED.sql('c')}
           ${which}`,
        [targetId, link!.id],
      );
      return link!.id;
    });
    const [row] = await em.getConnection().execute<LinkRow[]>(`select ${LINK_COLUMNS} from ${SHARE_LINKS.table} l where l.id = ?`, [id]);
    return { token, link: { ...this.viewOf(row!), url: `${this.deps.baseUrl}/${token}` } };
  }

  /** The caller's links, newest first, revoked and expired ones included. */
  async list(em: EntityManager, principal: Principal, first: number | null | undefined, after: string | null | undefined) {
    const page: Page<LinkRow> = await readOwnedPage<LinkRow & { createdAt: Date }>(em, SHARE_LINKS, {
      alias: 'l',
      ownerId: principal.userId,
      cursors: this.deps.cursors,
      first,
      after,
    });
    const pending = (id: string) => this.pendingViews.get(id) ?? 0;
    return {
      ...page,
      nodes: page.nodes.map((row) => {
        const r = row as unknown as { conversationId: string | null; comparisonId: string | null };
        return this.viewOf({ ...row, targetId: (r.conversationId ?? r.comparisonId)!, views: Number(row.views) + pending(row.id) });
      }),
    };
  }

  /** Revokes one of the caller's links (idempotent); every instance stops serving it within a second. */
  async revoke(em: EntityManager, principal: Principal, id: string): Promise<ShareLinkView> {
    if (!isUuid(id)) throw notFound('Share link');
    const [row] = await em.getConnection().execute<Array<LinkRow & { tokenHash: string }>>(
      `update ${SHARE_LINKS.table} l set revoked_at = coalesce(revoked_at, now()) where l.id = ? and ${ownerSql(SHARE_LINKS, 'l')}
       returning ${LINK_COLUMNS}, l.token_hash as "tokenHash"`,
      [id, principal.userId],
    );
    if (!row) throw notFound('Share link');
    await this.revoked(row.tokenHash);
    return this.viewOf(row);
  }

  /**
   * Before one of the caller's conversations is deleted (its links go with it,
   * FK cascade): returns what to call once it is, so every instance stops
   * serving those links' cached snapshots within a second, as for a revocation.
   */
  async deletingConversation(em: EntityManager, principal: Principal, conversationId: string): Promise<() => Promise<void>> {
    if (!isUuid(conversationId)) return async () => undefined;
    const rows = await em
      .getConnection()
      .execute<Array<{ hash: string }>>(
        `select l.token_hash as hash from ${SHARE_LINKS.table} l where l.conversation_id = ? and ${ownerSql(SHARE_LINKS, 'l')}`,
        [conversationId, principal.userId],
      );
    return async () => {
      for (const { hash } of rows) await this.revoked(hash);
    };
  }

  /**
   * The snapshot behind `token`, for anyone (no principal): null for a
   * malformed, unknown, expired or revoked token. RATE_LIMITED past the
   * per-IP limit.
   */
  async view(token: string, clientIp: string, admitted = false): Promise<SharedViewData | null> {
    return (await this.read(token, clientIp, admitted)).view;
  }

  /**
   * The snapshot and when it stops being served (epoch ms, null: never).
   * `admitted`: the HTTP edge already spent this request's point
   * (`admitRead`), and will store the answer under the link's generation for
   * as long as it lives: then the memo is skipped, so an answer stored after
   * a revocation's generation bump is never one this instance remembered
   * from before it (the broadcast may still be on its way).
   */
  async read(token: string, clientIp: string, admitted = false): Promise<{ view: SharedViewData | null; expiresAt: number | null }> {
    const verdict = admitted ? ({ allowed: true } as const) : await this.deps.perIp.consume(clientIp);
    if (!verdict.allowed) throw rateLimited(verdict.retryAfterSeconds, `Too many shared reads: retry in ${verdict.retryAfterSeconds} s`);
    if (!SHARE_TOKEN_FORMAT.test(token)) return { view: null, expiresAt: null };
    const hash = hashShareToken(token);
    const now = Date.now();
    const known = admitted ? undefined : this.memo.get(hash);
    let stored: Stored;
    if (known && known.until > now) stored = known.stored;
    else {
      let pending = this.inFlight.get(hash);
      if (!pending) {
        pending = this.lookup(hash).finally(() => this.inFlight.delete(hash));
        this.inFlight.set(hash, pending);
      }
      stored = await pending;
    }
    if (!stored.view || !stored.linkId || !SHARE_LINK_LIVE.servedAt(stored.expiresAt, Date.now())) {
      return { view: null, expiresAt: null };
    }
    this.pendingViews.set(stored.linkId, (this.pendingViews.get(stored.linkId) ?? 0) + 1);
    return { view: stored.view, expiresAt: stored.expiresAt };
  }

  /** The edge's admission of an anonymous read (`PublicReads.admit`): one point of the client's per-IP allowance. */
  async admitRead(clientIp: string): Promise<boolean> {
    return (await this.deps.perIp.consume(clientIp)).allowed;
  }

  /** The edge answered a read of `scope` (`share:<hash>`) from the read cache: counted with the next flush. */
  answeredFromCache(scope: string): void {
    if (!scope.startsWith(SCOPE_PREFIX)) return;
    const hash = scope.slice(SCOPE_PREFIX.length);
    this.pendingHashViews.set(hash, (this.pendingHashViews.get(hash) ?? 0) + 1);
  }

  /** Writes the views counted since the last flush: one statement for every link (and one for edge hits, by hash). */
  flushViews(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      await this.flushCounts(this.pendingViews, 'id', 'uuid');
      await this.flushCounts(this.pendingHashViews, 'token_hash', 'text');
    });
    return this.flushing;
  }

  private async flushCounts(pending: Map<string, number>, column: 'id' | 'token_hash', type: 'uuid' | 'text'): Promise<void> {
    if (pending.size === 0) return;
    const entries = [...pending];
    pending.clear();
    try {
      // Only live links count: an edge hit of a dead link's token serves its stored null answer, which is no view.
      await this.deps.orm.em.getConnection().execute(
        `${BACKGROUND_SQL_TAG} update ${SHARE_LINKS.table} l set views = l.views + v.n
           from unnest(?::${type}[], ?::int[]) as v(k, n) where l.${column} = v.k and ${SHARE_LINK_LIVE.sql('l')}`,
        [pgArray(entries.map(([k]) => k)), pgArray(entries.map(([, n]) => n))],
      );
    } catch (error) {
      // Put them back: the next flush tries again.
      for (const [k, n] of entries) pending.set(k, (pending.get(k) ?? 0) + n);
      this.deps.logger.warn({ error: (error as Error)?.name }, 'could not write share link views');
    }
  }

  /** This instance forgets the link now; the others when the broadcast arrives (or their memo lapses, ≤ 1 s). */
  private async revoked(hash: string): Promise<void> {
    this.forget(hash);
    await this.deps.invalidation.invalidateShared(scopeOf(hash));
    await this.deps.pubsub.publish(SHARE_REVOCATION_CHANNEL, { hash });
  }

  private forget(hash: string): void {
    this.epoch++;
    this.inFlight.delete(hash);
    this.memo.delete(hash);
  }

  private async lookup(hash: string): Promise<Stored> {
    const epoch = this.epoch;
    const key = readCacheKeys.response(scopeOf(hash), ENTRY);
    const cached = await this.deps.cache.getVersioned(key);
    let stored: Stored;
    if (cached?.bytes) stored = revive(JSON.parse(cached.bytes.toString('utf8')) as Stored);
    else {
      stored = await this.build(hash);
      if (cached && epoch === this.epoch) {
        const ttl = Math.min(this.deps.cacheTtlMs, stored.expiresAt === null ? Infinity : stored.expiresAt - Date.now());
        if (ttl > 0) await this.deps.cache.setVersioned(key, cached.version, this.deps.cache.versionedBody(JSON.stringify(stored)), ttl);
      }
    }
    const now = Date.now();
    if (epoch === this.epoch) {
      this.memo.set(hash, { stored, until: Math.min(now + SHARED_MEMO_MS, stored.expiresAt ?? Infinity) });
    }
    return stored;
  }

  /** The snapshot from PostgreSQL. */
  private async build(hash: string): Promise<Stored> {
    const connection = this.deps.orm.em.getConnection();
    const [link] = await connection.execute<
      Array<{
        id: string;
        title: string | null;
        createdAt: Date;
        expiresAt: Date | null;
        conversationId: string | null;
        asOf: Date;
      }>
    >(
      `select l.id, l.title, l.created_at as "createdAt", l.expires_at as "expiresAt", l.conversation_id as "conversationId",
              l.${SHARED_SNAPSHOT.asOf} as "asOf"
         from ${SHARE_LINKS.table} l
        where l.token_hash = ? and ${SHARE_LINK_LIVE.sql('l')}`,
      [hash],
    );
    if (!link) return { linkId: null, expiresAt: null, view: null };
    // The conversation as it read at the snapshot's time: the MESSAGES plan's source (a fork's inherited turns, versions)
    // with its own turns read as of then, so later messages and later regenerated versions stay out.
    const source = childSourceSql(MESSAGES, (column) => `${column} = p.conversation`, { asOf: 'p.as_of' });
    const messages = link.conversationId
      ? await connection.execute<Array<{ role: string; content: string; model: string | null; createdAt: Date }>>(
          `select m.role, m.content, m.model, m.created_at as "createdAt"
             from (select ?::uuid as conversation, ?::timestamptz as as_of) p, lateral (${source}) m
            order by ${orderSql(MESSAGES, 'm')}`,
          [link.conversationId, link.asOf],
        )
      : [];
    const rows = await connection.execute<ResponseRow[]>(
      `select s.position as "sharePosition", ${SHARED_REVEALED.sql('s')} as "visible", c.prompt, c.blind, c.created_at as "createdAt",
              r.position, r.provider, r.model, r.key_label as "keyLabel", r.status, r.content, r.error, r.cost_usd as "costUsd",
              r.prompt_tokens as "promptTokens", r.completion_tokens as "completionTokens", r.custom_endpoint as "customEndpoint",
              r.kind
         from ${SHARED_COMPARISONS.table} s
         join ${COMPARISON_BY_ID.table} c on c.id = s.comparison_id
         left join ${RESPONSES.table} r on ${childOfSql(RESPONSES, 'r', 'c.id')} and ${SHARED_SNAPSHOT.responseSql('r', '?::timestamptz')}
        where ${childOfSql(SHARED_COMPARISONS, 's', '?')}
        order by ${orderSql(SHARED_COMPARISONS, 's')}, ${orderSql(RESPONSES, 'r')}`,
      [link.createdAt, link.id],
    );
    const comparisons: SharedComparisonView[] = [];
    let current: SharedComparisonView | undefined;
    let at = -1;
    for (const row of rows) {
      if (row.sharePosition !== at) {
        at = row.sharePosition;
        current = { prompt: row.prompt, blind: row.blind, revealed: row.visible, createdAt: dateOf(row.createdAt), responses: [] };
        comparisons.push(current);
      }
      if (row.position === null) continue;
      // What a share shows of a response: SHARED_REVEALED's concealment, then only the fields of SharedResponse.
      const shown = SHARED_REVEALED.present({ ...row }, row.visible);
      current!.responses.push({
        label: RESPONSE_LABEL.value({ position: row.position }) as string,
        model: shown.model,
        content: row.content,
        status: row.status,
        kind: row.kind,
      });
    }
    const view: SharedViewData = {
      title: link.title,
      messages: messages.map((m) => ({ role: m.role, content: m.content, model: m.model ?? null, createdAt: dateOf(m.createdAt) })),
      comparisons,
      sharedAt: dateOf(link.createdAt),
    };
    return { linkId: link.id, expiresAt: link.expiresAt ? dateOf(link.expiresAt).getTime() : null, view };
  }

  private viewOf(row: LinkRow): ShareLinkView {
    return {
      id: row.id,
      target: row.target as ShareTargetName,
      targetId: row.targetId,
      createdAt: dateOf(row.createdAt),
      expiresAt: row.expiresAt ? dateOf(row.expiresAt) : null,
      revokedAt: row.revokedAt ? dateOf(row.revokedAt) : null,
      views: Number(row.views),
      // The token is never stored: a listed link shows only its first characters.
      url: `${this.deps.baseUrl}/${row.prefix}…`,
    };
  }
}

interface LinkRow {
  id: string;
  target: string;
  targetId: string;
  createdAt: Date | string | number;
  expiresAt: Date | string | number | null;
  revokedAt: Date | string | number | null;
  views: number | string;
  prefix: string;
}

interface ResponseRow {
  sharePosition: number;
  visible: boolean;
  prompt: string;
  blind: boolean;
  createdAt: Date;
  position: number | null;
  provider: string | null;
  model: string | null;
  keyLabel: string | null;
  status: string;
  content: string;
  error: string | null;
  costUsd: number | null;
  promptTokens: number | null;
  completionTokens: number | null;
  customEndpoint: boolean;
  kind: string;
}

function dateOf(value: Date | string | number): Date {
  return value instanceof Date ? value : new Date(value);
}

/** A snapshot read back from the cache: its dates are Dates again. */
function revive(stored: Stored): Stored {
  if (!stored.view) return stored;
  const v = stored.view;
  return {
    ...stored,
    view: {
      ...v,
      sharedAt: new Date(v.sharedAt),
      messages: v.messages.map((m) => ({ ...m, createdAt: new Date(m.createdAt) })),
      comparisons: v.comparisons.map((c) => ({ ...c, createdAt: new Date(c.createdAt) })),
    },
  };
}
