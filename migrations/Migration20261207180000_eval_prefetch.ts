import { Migration } from '@mikro-orm/migrations';

/**
 * Eval cells claimed ahead (prefetched) stay QUEUED with a lease (`lease_owner`, `heartbeat_at`) until a slot
 * frees: they are not in flight, so the per-user count (RUNNING rows) leaves them out. This index lets the lease
 * sweep find the reservations of a `kill -9`ed instance without reading every queued cell.
 */
export class Migration20261207180000_eval_prefetch extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `create index "eval_cells_reserved_idx" on "eval_cells" ("heartbeat_at") where "status" = 'QUEUED' and "lease_owner" is not null;`,
    );
  }

  override async down(): Promise<void> {
    this.addSql(`drop index if exists "eval_cells_reserved_idx";`);
  }
}
