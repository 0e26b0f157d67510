import { Migration } from '@mikro-orm/migrations';

/**
 * Spend budgets (see src/modules/usage/usage.service.ts): a user's own daily
 * budget set by an admin (null = the configured default), and the budget held
 * by provider calls while they run.
 */
export class Migration20261128002421_user_budgets extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `create table "spend_reservations" ("id" uuid not null, "created_at" timestamptz(3) not null, "user_id" uuid not null, "reserved_usd" double precision null, "expires_at" timestamptz(3) not null, constraint "spend_reservations_pkey" primary key ("id"));`,
    );
    this.addSql(`create index "spend_reservations_user_idx" on "spend_reservations" ("user_id", "expires_at");`);

    this.addSql(
      `alter table "spend_reservations" add constraint "spend_reservations_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade;`,
    );

    this.addSql(`alter table "users" add column "daily_budget_usd" double precision null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "spend_reservations" cascade;`);

    this.addSql(`alter table "users" drop column "daily_budget_usd";`);
  }
}
