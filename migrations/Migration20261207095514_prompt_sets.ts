import { Migration } from '@mikro-orm/migrations';

/**
 * Prompt sets and their items (issue 18, item 1). The owner's list reads
 * through (owner_id, created_at desc, id desc), like conversations; a set's
 * items page through the unique (prompt_set_id, position), which also keeps
 * two items from sharing a position. Assertions are jsonb lists of
 * { kind, value, weight }, validated by the server before they are written.
 */
export class Migration20261207095514_prompt_sets extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `create table "prompt_sets" ("id" uuid not null, "created_at" timestamptz(3) not null, "owner_id" uuid not null, "name" text not null, "description" text null, "default_assertions" jsonb not null, "updated_at" timestamptz(3) not null, constraint "prompt_sets_pkey" primary key ("id"));`,
    );
    this.addSql(`create index "prompt_sets_owner_created_idx" on "prompt_sets" ("owner_id", "created_at" desc, "id" desc);`);

    this.addSql(
      `create table "prompt_items" ("id" uuid not null, "created_at" timestamptz(3) not null, "prompt_set_id" uuid not null, "position" int not null, "prompt" text not null, "system" text null, "reference" text null, "assertions" jsonb not null, "tags" text[] not null, constraint "prompt_items_pkey" primary key ("id"));`,
    );
    this.addSql(`alter table "prompt_items" add constraint "prompt_items_set_position_key" unique ("prompt_set_id", "position");`);

    this.addSql(
      `alter table "prompt_sets" add constraint "prompt_sets_owner_id_foreign" foreign key ("owner_id") references "users" ("id") on update cascade on delete cascade;`,
    );

    this.addSql(
      `alter table "prompt_items" add constraint "prompt_items_prompt_set_id_foreign" foreign key ("prompt_set_id") references "prompt_sets" ("id") on update cascade on delete cascade;`,
    );
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "prompt_items" cascade;`);
    this.addSql(`drop table if exists "prompt_sets" cascade;`);
  }
}
