import { Migration } from '@mikro-orm/migrations';

/**
 * Share links (issue 19 item 5): the link (its token stored as SHA-256, never
 * the value; the snapshot's time `as_of`, its messages read as of then, and
 * the title at share time) and, per shared comparison, whether it was revealed when shared
 * (the `SHARED_REVEALED` rule of `src/db/read-plan.ts` reads that column, so a
 * vote after sharing reveals nothing through the link). Deleting the shared
 * conversation or comparison deletes its links (404 through `shared`).
 */
export class Migration20261207120000_share_links extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `create table "share_links" ("id" uuid not null, "created_at" timestamptz(3) not null, "owner_id" uuid not null, "target" text not null, "conversation_id" uuid null, "comparison_id" uuid null, "token_hash" text not null, "prefix" text not null, "title" text null, "as_of" timestamptz(3) not null, "expires_at" timestamptz(3) null, "revoked_at" timestamptz(3) null, "views" int not null default 0, constraint "share_links_pkey" primary key ("id"));`,
    );
    this.addSql(`create index "share_links_owner_created_idx" on "share_links" ("owner_id", "created_at" desc, "id" desc);`);
    this.addSql(`alter table "share_links" add constraint "share_links_token_hash_unique" unique ("token_hash");`);
    this.addSql(`create index "share_links_conversation_idx" on "share_links" ("conversation_id") where "conversation_id" is not null;`);
    this.addSql(`create index "share_links_comparison_idx" on "share_links" ("comparison_id") where "comparison_id" is not null;`);
    this.addSql(
      `alter table "share_links" add constraint "share_links_owner_id_foreign" foreign key ("owner_id") references "users" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "share_links" add constraint "share_links_conversation_id_foreign" foreign key ("conversation_id") references "conversations" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "share_links" add constraint "share_links_comparison_id_foreign" foreign key ("comparison_id") references "comparison_results" ("id") on update cascade on delete cascade;`,
    );

    this.addSql(
      `create table "share_link_comparisons" ("id" uuid not null, "created_at" timestamptz(3) not null, "link_id" uuid not null, "comparison_id" uuid not null, "position" int not null, "revealed" boolean not null, constraint "share_link_comparisons_pkey" primary key ("id"));`,
    );
    this.addSql(`create index "share_link_comparisons_link_idx" on "share_link_comparisons" ("link_id", "position");`);
    this.addSql(`create index "share_link_comparisons_comparison_idx" on "share_link_comparisons" ("comparison_id");`);
    this.addSql(
      `alter table "share_link_comparisons" add constraint "share_link_comparisons_link_id_foreign" foreign key ("link_id") references "share_links" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "share_link_comparisons" add constraint "share_link_comparisons_comparison_id_foreign" foreign key ("comparison_id") references "comparison_results" ("id") on update cascade on delete cascade;`,
    );
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "share_link_comparisons" cascade;`);
    this.addSql(`drop table if exists "share_links" cascade;`);
  }
}
