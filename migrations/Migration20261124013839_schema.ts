import { Migration } from '@mikro-orm/migrations';

export class Migration20261124013839_schema extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create type "user_role" as enum ('USER', 'ADMIN');`);
    this.addSql(`create type "message_role" as enum ('SYSTEM', 'USER', 'ASSISTANT');`);
    this.addSql(`create type "provider" as enum ('OPENAI', 'ANTHROPIC', 'GOOGLE', 'MISTRAL', 'AZURE', 'OPENAI_COMPATIBLE');`);
    this.addSql(`create type "response_status" as enum ('PENDING', 'STREAMING', 'COMPLETED', 'FAILED', 'TIMED_OUT');`);
    this.addSql(`create type "vote_outcome" as enum ('WINNER', 'TIE', 'ALL_BAD');`);
    this.addSql(
      `create table "users" ("id" uuid not null, "created_at" timestamptz(3) not null, "email" text not null, "password_hash" text not null, "role" "user_role" not null default 'USER', constraint "users_pkey" primary key ("id"));`,
    );

    this.addSql(
      `create table "conversations" ("id" uuid not null, "created_at" timestamptz(3) not null, "owner_id" uuid not null, "title" text not null, "updated_at" timestamptz(3) not null, constraint "conversations_pkey" primary key ("id"));`,
    );

    this.addSql(
      `create table "messages" ("id" uuid not null, "created_at" timestamptz(3) not null, "conversation_id" uuid not null, "role" "message_role" not null, "content" text not null, "provider" "provider" null, "model" text null, "prompt_tokens" int null, "completion_tokens" int null, "latency_ms" int null, "cost_usd" double precision null, constraint "messages_pkey" primary key ("id"));`,
    );

    this.addSql(
      `create table "comparison_results" ("id" uuid not null, "created_at" timestamptz(3) not null, "owner_id" uuid not null, "conversation_id" uuid null, "prompt" text not null, constraint "comparison_results_pkey" primary key ("id"));`,
    );

    this.addSql(
      `create table "comparison_responses" ("id" uuid not null, "created_at" timestamptz(3) not null, "comparison_id" uuid not null, "position" smallint not null, "provider" "provider" not null, "model" text not null, "key_label" text not null default 'default', "status" "response_status" not null default 'PENDING', "content" text not null default '', "error" text null, "latency_ms" int null, "time_to_first_token_ms" int null, "prompt_tokens" int null, "completion_tokens" int null, "cost_usd" double precision null, "settled_at" timestamptz(3) null, constraint "comparison_responses_pkey" primary key ("id"));`,
    );

    this.addSql(
      `create table "api_keys" ("id" uuid not null, "created_at" timestamptz(3) not null, "owner_id" uuid not null, "provider" "provider" not null, "label" text not null default 'default', "encrypted_secret" text not null, "encryption_key_id" text not null, "last4" text not null, "base_url" text null, "last_used_at" timestamptz(3) null, constraint "api_keys_pkey" primary key ("id"));`,
    );
    this.addSql(`alter table "api_keys" add constraint "api_keys_owner_provider_label_unique" unique ("owner_id", "provider", "label");`);

    this.addSql(
      `create table "votes" ("id" uuid not null, "created_at" timestamptz(3) not null, "comparison_id" uuid not null, "user_id" uuid not null, "outcome" "vote_outcome" not null, "winner_id" uuid null, constraint "votes_pkey" primary key ("id"));`,
    );
    this.addSql(`alter table "votes" add constraint "votes_comparison_user_unique" unique ("comparison_id", "user_id");`);

    this.addSql(
      `alter table "conversations" add constraint "conversations_owner_id_foreign" foreign key ("owner_id") references "users" ("id") on update cascade on delete cascade;`,
    );

    this.addSql(
      `alter table "messages" add constraint "messages_conversation_id_foreign" foreign key ("conversation_id") references "conversations" ("id") on update cascade on delete cascade;`,
    );

    this.addSql(
      `alter table "comparison_results" add constraint "comparison_results_owner_id_foreign" foreign key ("owner_id") references "users" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "comparison_results" add constraint "comparison_results_conversation_id_foreign" foreign key ("conversation_id") references "conversations" ("id") on update cascade on delete set null;`,
    );

    this.addSql(
      `alter table "comparison_responses" add constraint "comparison_responses_comparison_id_foreign" foreign key ("comparison_id") references "comparison_results" ("id") on update cascade on delete cascade;`,
    );

    this.addSql(
      `alter table "api_keys" add constraint "api_keys_owner_id_foreign" foreign key ("owner_id") references "users" ("id") on update cascade on delete cascade;`,
    );

    this.addSql(
      `alter table "votes" add constraint "votes_comparison_id_foreign" foreign key ("comparison_id") references "comparison_results" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "votes" add constraint "votes_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "votes" add constraint "votes_winner_id_foreign" foreign key ("winner_id") references "comparison_responses" ("id") on update cascade on delete cascade;`,
    );
  }
}
