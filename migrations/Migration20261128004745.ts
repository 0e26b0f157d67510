import { Migration } from '@mikro-orm/migrations';

/**
 * Arena (issue 10), the columns the leaderboard reads: a comparison's `blind`
 * flag and `category` (boards count blind comparisons only by default, one
 * board per category), and a vote's `excluded_at` (set when the vote is
 * excluded from the board for an implausible pattern; reversible: null again).
 */
export class Migration20261128004745 extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "comparison_results" add column "blind" boolean not null default false, add column "category" text null;`);

    this.addSql(`alter table "votes" add column "excluded_at" timestamptz(3) null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "comparison_results" drop column "blind", drop column "category";`);

    this.addSql(`alter table "votes" drop column "excluded_at";`);
  }
}
