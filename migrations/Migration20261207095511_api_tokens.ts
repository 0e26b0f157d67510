import { Migration } from '@mikro-orm/migrations';

/**
 * Personal API tokens (issue 18 item 7): the tokens (stored as SHA-256, never
 * the value), and on every row that records spend (comparison responses,
 * assistant messages, judge verdicts) and on running calls' reservations, the
 * token they went through, so a token's daily cap can be computed. Partial
 * indexes: most calls are made without a token.
 */
export class Migration20261207095511_api_tokens extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `create table "api_tokens" ("id" uuid not null, "created_at" timestamptz(3) not null, "owner_id" uuid not null, "name" text not null, "scopes" text[] not null, "token_hash" text not null, "prefix" text not null, "expires_at" timestamptz(3) null, "last_used_at" timestamptz(3) null, "daily_budget_usd" double precision null, "revoked_at" timestamptz(3) null, constraint "api_tokens_pkey" primary key ("id"));`,
    );
    this.addSql(`create index "api_tokens_owner_created_idx" on "api_tokens" ("owner_id", "created_at");`);
    this.addSql(`alter table "api_tokens" add constraint "api_tokens_token_hash_unique" unique ("token_hash");`);

    this.addSql(
      `alter table "api_tokens" add constraint "api_tokens_owner_id_foreign" foreign key ("owner_id") references "users" ("id") on update cascade on delete cascade;`,
    );

    this.addSql(`alter table "spend_reservations" add column "api_token_id" uuid null;`);

    this.addSql(`alter table "messages" add column "api_token_id" uuid null;`);
    this.addSql(`create index "messages_api_token_idx" on "messages" ("api_token_id") where "api_token_id" is not null;`);

    this.addSql(`alter table "comparison_responses" add column "api_token_id" uuid null;`);
    this.addSql(
      `create index "comparison_responses_api_token_idx" on "comparison_responses" ("api_token_id") where "api_token_id" is not null;`,
    );

    this.addSql(`alter table "judge_verdicts" add column "api_token_id" uuid null;`);
    this.addSql(`create index "judge_verdicts_api_token_idx" on "judge_verdicts" ("api_token_id") where "api_token_id" is not null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "api_tokens" cascade;`);

    this.addSql(`drop index "comparison_responses_api_token_idx";`);
    this.addSql(`alter table "comparison_responses" drop column "api_token_id";`);

    this.addSql(`drop index "judge_verdicts_api_token_idx";`);
    this.addSql(`alter table "judge_verdicts" drop column "api_token_id";`);

    this.addSql(`drop index "messages_api_token_idx";`);
    this.addSql(`alter table "messages" drop column "api_token_id";`);

    this.addSql(`alter table "spend_reservations" drop column "api_token_id";`);
  }
}
