import { Migration } from '@mikro-orm/migrations';

/**
 * Search that scales (issue 20.3): the message's `to_tsvector('english', content)`
 * becomes a stored generated column, `content_tsv`, and the full-text index
 * `messages_content_fts_idx` (same name) indexes that column instead of the
 * expression.
 *
 * Why: a search is "the viewer's messages AND the text matches". The planner
 * chooses between the GIN index (then keep the viewer's rows) and the viewer's
 * conversations (then test each of their messages). Two misestimates made the
 * second path win as the table grew, and made it slow:
 * - a lexeme outside the statistics' most common elements (any rare word) is
 *   estimated at half the least common element's frequency, a fixed fraction
 *   of the table (4,999 of 1M rows at bench scale 5 for a word in 1 row), so the
 *   GIN path's estimated heap cost grows with the table while the per-user path's
 *   stays constant;
 * - on the per-user path each message's text was parsed again
 *   (`to_tsvector`, costed like a cheap operator: ~40–100 µs per 400-character
 *   message in fact), for the filter and again for `ts_rank`: 8.5 ms for a user
 *   with 200 messages, against 0.1 ms through the index.
 * Stored, the per-user path tests a ready tsvector (no parse), so whichever path
 * the planner picks is cheap, and the rank reads the same column.
 *
 * Cost: the column adds the tsvector to each message row (size in
 * NOTES-search20.md), and adding it rewrites `messages` under an exclusive lock
 * (about a minute per million rows here): run it in a maintenance window on a
 * large table.
 */
export class Migration20261207183000_search_tsvector extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `alter table "messages" add column "content_tsv" tsvector generated always as (to_tsvector('english'::regconfig, content)) stored;`,
    );
    this.addSql(`drop index "messages_content_fts_idx";`);
    this.addSql(`create index "messages_content_fts_idx" on "messages" using gin ("content_tsv");`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop index "messages_content_fts_idx";`);
    this.addSql(`alter table "messages" drop column "content_tsv";`);
    this.addSql(`create index "messages_content_fts_idx" on "messages" using gin (to_tsvector('english', "content"));`);
  }
}
