import { Migration } from '@mikro-orm/migrations';

/**
 * Forks, versions and chosen answers (issue 19, items 1–3).
 *
 * - `conversation_ancestors`: a fork's inherited history by reference, one row
 *   per conversation it comes from (never a copy of messages); the ancestor's
 *   key restricts deletion, so a conversation a fork reads from is hidden
 *   (`conversations.deleted_at`) rather than removed.
 * - `messages.version_of_id`, `version`, `answered_at`, `replaced_at`: the
 *   versions of a regenerated answer; the current one has `replaced_at` null.
 * - `messages.source_response_id`: the comparison response an assistant
 *   message carries (`continueWith`, a fork at a chosen response).
 * Every new column is nullable or has a default: existing rows read as before.
 */
export class Migration20261207121500_branching extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `create table "conversation_ancestors" ("id" uuid not null, "created_at" timestamptz(3) not null, "conversation_id" uuid not null, "ancestor_id" uuid not null, "upto_created_at" timestamptz(3) not null, "upto_id" uuid not null, constraint "conversation_ancestors_pkey" primary key ("id"));`,
    );
    this.addSql(`create index "conversation_ancestors_ancestor_idx" on "conversation_ancestors" ("ancestor_id");`);
    this.addSql(`create index "conversation_ancestors_conversation_idx" on "conversation_ancestors" ("conversation_id");`);
    this.addSql(
      `alter table "conversation_ancestors" add constraint "conversation_ancestors_conversation_id_foreign" foreign key ("conversation_id") references "conversations" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "conversation_ancestors" add constraint "conversation_ancestors_ancestor_id_foreign" foreign key ("ancestor_id") references "conversations" ("id") on update cascade on delete no action;`,
    );
    this.addSql(`alter table "conversations" add column "deleted_at" timestamptz(3) null, add column "forked_from_message_id" uuid null;`);
    this.addSql(
      `alter table "messages" add column "version_of_id" uuid null, add column "version" smallint not null default 1, add column "answered_at" timestamptz(3) null, add column "replaced_at" timestamptz(3) null, add column "source_response_id" uuid null;`,
    );
    this.addSql(`create index "messages_version_of_idx" on "messages" ("version_of_id") where "version_of_id" is not null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "conversation_ancestors" cascade;`);
    this.addSql(`alter table "conversations" drop column "deleted_at", drop column "forked_from_message_id";`);
    this.addSql(
      `alter table "messages" drop column "version_of_id", drop column "version", drop column "answered_at", drop column "replaced_at", drop column "source_response_id";`,
    );
  }
}
