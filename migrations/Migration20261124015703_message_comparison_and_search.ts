import { Migration } from '@mikro-orm/migrations';

export class Migration20261124015703_message_comparison_and_search extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "messages" add column "comparison_id" uuid null;`);
    this.addSql(
      `alter table "messages" add constraint "messages_comparison_id_foreign" foreign key ("comparison_id") references "comparison_results" ("id") on update cascade on delete set null;`,
    );
    this.addSql(`create index "messages_content_fts_idx" on "messages" using gin (to_tsvector('english', "content"));`);
    this.addSql(`create index "messages_comparison_idx" on "messages" ("comparison_id");`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "messages" drop constraint "messages_comparison_id_foreign";`);

    this.addSql(`drop index "messages_content_fts_idx";`);
    this.addSql(`drop index "messages_comparison_idx";`);
    this.addSql(`alter table "messages" drop column "comparison_id";`);
  }
}
