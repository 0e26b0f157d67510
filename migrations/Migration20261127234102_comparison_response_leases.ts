import { Migration } from '@mikro-orm/migrations';

/**
 * Leases of running comparison responses (see ComparisonRunner): the instance
 * running a response and its last heartbeat. Rows that are unsettled when this
 * runs get `now()` as heartbeat, so any instance settles them FAILED one lease
 * (COMPARISON_LEASE_MS) later unless an instance renews them.
 */
export class Migration20261127234102_comparison_response_leases extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `alter table "comparison_responses" add column "lease_owner" text null, add column "heartbeat_at" timestamptz(3) not null default now();`,
    );
    this.addSql(
      `create index "comparison_responses_lease_idx" on "comparison_responses" ("heartbeat_at") where "status" in ('PENDING', 'STREAMING');`,
    );
  }

  override async down(): Promise<void> {
    this.addSql(`drop index "comparison_responses_lease_idx";`);
    this.addSql(`alter table "comparison_responses" drop column "lease_owner", drop column "heartbeat_at";`);
  }
}
