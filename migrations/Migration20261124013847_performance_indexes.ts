import { Migration } from '@mikro-orm/migrations';

/**
 * Indexes for the read paths. Every foreign key is the leading column of some
 * index (api_keys.owner_id via its unique key, votes.comparison_id via the
 * unique (comparison_id, user_id)). Keyset paging reads
 * `(owner_id, created_at DESC, id DESC)` backwards-compatible with the
 * row comparison `(created_at, id) < ($1, $2)`.
 */
export class Migration20261124013847_performance_indexes extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create unique index "users_email_lower_unique" on "users" (lower("email"));`);
    this.addSql(`create index "conversations_owner_created_idx" on "conversations" ("owner_id", "created_at" desc, "id" desc);`);
    this.addSql(`create index "messages_conversation_created_idx" on "messages" ("conversation_id", "created_at", "id");`);
    this.addSql(`create index "comparison_results_owner_created_idx" on "comparison_results" ("owner_id", "created_at" desc, "id" desc);`);
    this.addSql(`create index "comparison_results_conversation_idx" on "comparison_results" ("conversation_id", "created_at");`);
    this.addSql(`create index "comparison_responses_comparison_idx" on "comparison_responses" ("comparison_id", "position");`);
    this.addSql(`create index "votes_user_idx" on "votes" ("user_id");`);
    this.addSql(`create index "votes_winner_idx" on "votes" ("winner_id");`);
  }

  override async down(): Promise<void> {
    for (const name of [
      'users_email_lower_unique',
      'conversations_owner_created_idx',
      'messages_conversation_created_idx',
      'comparison_results_owner_created_idx',
      'comparison_results_conversation_idx',
      'comparison_responses_comparison_idx',
      'votes_user_idx',
      'votes_winner_idx',
    ]) {
      this.addSql(`drop index if exists "${name}";`);
    }
  }
}
