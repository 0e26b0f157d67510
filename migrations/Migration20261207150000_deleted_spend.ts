import { Migration } from '@mikro-orm/migrations';

/**
 * Spend that a deletion would otherwise forget. The daily budgets sum the last
 * 24 hours of recorded costs (`usage.service.ts`, SPEND_ROWS); deleting a
 * conversation (its messages cascade) or a prompt set (its eval runs, cells and
 * verdicts cascade) removed those rows, so a user could reset their own budget
 * by deleting what they had spent on. Before such a delete, the costs of the
 * window are kept here (who, which personal token, when, how much) and the
 * budgets count them too. Rows older than the window are pruned as new ones
 * arrive. Nothing is kept when the owner's account itself is being deleted
 * (the user row is already gone when its cascade reaches these rows).
 */
export class Migration20261207150000_deleted_spend extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table "deleted_spend" (
      "id" bigserial primary key,
      "user_id" uuid not null,
      "api_token_id" uuid null,
      "at" timestamptz(3) not null,
      "cost_usd" double precision not null);`);
    this.addSql(`create index "deleted_spend_user_at_idx" on "deleted_spend" ("user_id", "at");`);
    this.addSql(`create index "deleted_spend_token_at_idx" on "deleted_spend" ("api_token_id", "at") where "api_token_id" is not null;`);
    this.addSql(`create index "deleted_spend_at_idx" on "deleted_spend" ("at");`);

    this.addSql(`
create or replace function keep_deleted_conversation_spend() returns trigger language plpgsql as $$
begin
  if not exists (select 1 from users u where u.id = OLD.owner_id) then return OLD; end if;
  delete from deleted_spend where at <= now() - interval '24 hours';
  insert into deleted_spend (user_id, api_token_id, at, cost_usd)
    select OLD.owner_id, m.api_token_id, m.created_at, m.cost_usd
      from messages m
     where m.conversation_id = OLD.id and m.cost_usd is not null and m.created_at > now() - interval '24 hours';
  return OLD;
end $$;`);
    this.addSql(`create trigger deleted_conversation_spend before delete on "conversations" for each row
      execute function keep_deleted_conversation_spend();`);

    this.addSql(`
create or replace function keep_deleted_eval_spend() returns trigger language plpgsql as $$
begin
  if not exists (select 1 from users u where u.id = OLD.owner_id) then return OLD; end if;
  delete from deleted_spend where at <= now() - interval '24 hours';
  insert into deleted_spend (user_id, api_token_id, at, cost_usd)
    select e.owner_id, OLD.api_token_id, e.finished_at, coalesce(e.cost_usd, 0) + coalesce(e.judge_cost_usd, 0)
      from eval_cells e
     where e.run_id = OLD.id and e.finished_at > now() - interval '24 hours'
       and (e.cost_usd is not null or e.judge_cost_usd is not null)
    union all
    select v.owner_id, OLD.api_token_id, v.finished_at, v.cost_usd
      from eval_pair_verdicts v
     where v.run_id = OLD.id and v.finished_at > now() - interval '24 hours' and v.cost_usd is not null;
  return OLD;
end $$;`);
    this.addSql(`create trigger deleted_eval_spend before delete on "eval_runs" for each row execute function keep_deleted_eval_spend();`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop trigger if exists deleted_eval_spend on "eval_runs";`);
    this.addSql(`drop trigger if exists deleted_conversation_spend on "conversations";`);
    this.addSql(`drop function if exists keep_deleted_eval_spend();`);
    this.addSql(`drop function if exists keep_deleted_conversation_spend();`);
    this.addSql(`drop table if exists "deleted_spend";`);
  }
}
