import { Migration } from '@mikro-orm/migrations';

/**
 * An honest JUDGE board (issue 16, case 7): a verdict given by a judge model
 * served by the user's own key `baseUrl` (not one of `OPERATOR_ENDPOINTS`) is
 * whatever that endpoint said, so it stays off the JUDGE board. Existing
 * verdicts stay false (which endpoint served them was not recorded).
 */
export class Migration20261207072000_custom_endpoint_judges extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "judge_verdicts" add column "custom_endpoint" boolean not null default false;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "judge_verdicts" drop column "custom_endpoint";`);
  }
}
