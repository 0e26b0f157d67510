/**
 * Full-text search over the viewer's messages (comparison prompts are USER
 * messages of their conversation, so they are found too).
 *
 * Matching and ranking use the stored `content_tsv`
 * (`to_tsvector('english', content)`, a generated column), the column of the
 * GIN index `messages_content_fts_idx`, so the planner can answer
 * `@@ websearch_to_tsquery('english', $q)` from the index, or test the
 * viewer's own messages one by one without parsing their text again;
 * ownership is a join on `conversations.owner_id`.
 *
 * Order: relevance first, `(ts_rank desc, created_at desc, id desc)`. `id`
 * makes it total, and `ts_rank` depends only on the message's own text and
 * the query (messages are immutable), so a position in that order is stable
 * and keyset paging never skips or repeats a hit. The cursor is the shared
 * `CursorCodec` (HMAC-signed `(created_at, id)`) with the hit's rank as its
 * signed extra sort key, scoped `search:<userId>:<hash of the normalized query>`:
 * a cursor from another user or another query, or a tampered one, answers
 * BAD_USER_INPUT. The query is hashed so a 500-character query still makes a
 * short cursor.
 *
 * Snippets: `ts_headline` runs on the HTML-escaped content with `<b>…</b>`
 * markers, so the markers are the only tags in a snippet and stored text can
 * never inject HTML into a client that renders it.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import { createHash } from 'node:crypto';
import type { Principal } from '../../auth/principal';
import { badInput } from '../../errors';
import { codePointLength } from '../../input/text-input';
import { type CursorCodec, type CursorPosition, type Page, pageSize, toPage } from '../../db/pagination';
import { childSourceSql, CONVERSATIONS, MESSAGES, ownerSql } from '../../db/read-plan';
import { plainShape } from '../../db/plain';
import { Message, type MessageView } from '../message/message.entity';
import type { SearchHit } from './search.types';

export const MAX_QUERY_LENGTH = 500;

const HEADLINE_OPTIONS = 'StartSel=<b>, StopSel=</b>, MaxFragments=2, MaxWords=20, MinWords=5';

/** The stored text with the five HTML-special characters replaced by entities (the parser keeps entities whole). */
const ESCAPED_CONTENT =
  'replace(replace(replace(replace(replace(h.content, ' +
  `'&', '&amp;'), ` +
  `'<', '&lt;'), ` +
  `'>', '&gt;'), ` +
  `'"', '&quot;'), ` +
  `'''', '&#39;')`;

/** A float as Postgres prints it; the only thing a cursor's rank may be. */
const RANK_TEXT = /^-?\d+(\.\d+)?(e[-+]?\d+)?$/i;

interface SearchPosition extends CursorPosition {
  rank: string;
}

type HitRow = Record<string, unknown> & { rank_text: string; snippet: string };

export class SearchService {
  constructor(private readonly cursors: CursorCodec) {}

  /** One SQL statement per page, whatever the number of hits. */
  async search(
    em: EntityManager,
    principal: Principal,
    rawQuery: string,
    first: number | null | undefined,
    after: string | null | undefined,
  ): Promise<Page<SearchHit & CursorPosition>> {
    const query = normalizeQuery(rawQuery);
    const limit = pageSize(first, 20);
    const scope = `search:${principal.userId}:${createHash('sha256').update(query).digest('base64url').slice(0, 22)}`;
    const position = after ? this.decodeCursor(scope, after) : null;

    const keyset = position
      ? `and (ts_rank(m.content_tsv, websearch_to_tsquery('english', ?)), m.created_at, m.id) < ` + `(?::real, ?::timestamptz, ?::uuid)`
      : '';
    // In the order of the `?` placeholders below.
    const params = [
      query, // headline
      query, // rank
      principal.userId, // own messages
      principal.userId, // inherited by forks
      query, // match
      ...(position ? [query, position.rank, position.createdAt.toISOString(), position.id] : []),
      limit + 1,
    ];

    const shape = plainShape<MessageView>(em, Message);
    const mine = (col: string) => `${col} in (select c.id from conversations c where ${ownerSql(CONVERSATIONS, 'c')})`;
    // The inner query finds and orders the page (index: messages_content_fts_idx);
    // the outer one makes snippets for the page's rows only.
    const rows: HitRow[] = await em.getConnection().execute(
      `select ${shape.columns('h')}, h.rank::float8::text as rank_text,
              ts_headline('english', ${ESCAPED_CONTENT}, websearch_to_tsquery('english', ?), '${HEADLINE_OPTIONS}') as snippet
         from (
           select m.*, ts_rank(m.content_tsv, websearch_to_tsquery('english', ?)) as rank
             from (${childSourceSql(MESSAGES, mine)}) m
            where m.content_tsv @@ websearch_to_tsquery('english', ?)
              ${keyset}
            order by rank desc, m.created_at desc, m.id desc
            limit ?
         ) h
        order by h.rank desc, h.created_at desc, h.id desc`,
      params,
    );

    const hits = rows.map(({ rank_text, snippet, ...row }) => {
      // Plain rows, not entities: one message read in two conversations (a fork's inherited turn) is two hits.
      const message = shape.map(row) as Message;
      return { message, snippet, rank: rank_text, createdAt: message.createdAt, id: message.id };
    });
    return toPage(hits, limit, (hit) => this.encodeCursor(scope, hit));
  }

  private encodeCursor(scope: string, hit: SearchPosition): string {
    return this.cursors.encode(scope, hit, hit.rank);
  }

  /** The rank travels as the cursor's signed extra sort key, so it cannot be altered. */
  private decodeCursor(scope: string, cursor: string): SearchPosition {
    const { extra: rank, ...position } = this.cursors.decode(scope, cursor);
    if (rank === undefined || !RANK_TEXT.test(rank))
      throw badInput('Invalid cursor: pass pageInfo.endCursor from the previous page of this search', 'after');
    return { ...position, rank };
  }
}

/** Trims and collapses whitespace; blank or longer than 500 characters is BAD_USER_INPUT. */
export function normalizeQuery(raw: string): string {
  const query = raw.replace(/\s+/g, ' ').trim();
  if (!query) throw badInput('query must not be blank', 'query');
  const length = codePointLength(query);
  if (length > MAX_QUERY_LENGTH) throw badInput(`query must be at most ${MAX_QUERY_LENGTH} characters, got ${length}`, 'query');
  return query;
}
