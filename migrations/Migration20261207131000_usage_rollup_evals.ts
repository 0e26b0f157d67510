import { Migration } from '@mikro-orm/migrations';

/**
 * Eval runs in the usage rollup (see Migration20261207130000_usage_rollup), as the budgets count them: a cell's
 * cost under its model and its RUBRIC grading's (`judge_cost_usd`) under the run's judge model, a pairwise verdict's
 * (two calls) under the judge model, on the day the row finished (UTC), under the run's token. A cell is a call
 * when it settles without reuse (FAILED: an error); costs by difference, counted once the row has finished.
 */
export class Migration20261207131000_usage_rollup_evals extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
create or replace function usage_on_eval_cell() returns trigger language plpgsql as $$
declare
  v_judge text;
  v_token uuid;
  settled boolean := NEW.status in ('COMPLETED', 'FAILED') and OLD.status not in ('COMPLETED', 'FAILED') and not NEW.reused;
begin
  select r.judge_model, r.api_token_id into v_judge, v_token from eval_runs r where r.id = NEW.run_id;
  if OLD.finished_at is not null then
    perform usage_record((OLD.finished_at at time zone 'UTC')::date, OLD.owner_id, upper(split_part(OLD.model, ':', 1)), OLD.model,
      v_token, 0, 0, -coalesce(OLD.input_tokens, 0), -coalesce(OLD.output_tokens, 0), -coalesce(OLD.cost_usd, 0), null);
    if v_judge is not null and OLD.judge_cost_usd is not null then
      perform usage_record((OLD.finished_at at time zone 'UTC')::date, OLD.owner_id, upper(split_part(v_judge, ':', 1)), v_judge,
        v_token, 0, 0, 0, 0, -OLD.judge_cost_usd, null);
    end if;
  end if;
  if NEW.finished_at is not null then
    perform usage_record((NEW.finished_at at time zone 'UTC')::date, NEW.owner_id, upper(split_part(NEW.model, ':', 1)), NEW.model,
      v_token, case when settled then 1 else 0 end, case when settled and NEW.status = 'FAILED' then 1 else 0 end,
      coalesce(NEW.input_tokens, 0), coalesce(NEW.output_tokens, 0), coalesce(NEW.cost_usd, 0),
      case when settled then NEW.latency_ms end);
    if v_judge is not null and NEW.judge_cost_usd is not null then
      perform usage_record((NEW.finished_at at time zone 'UTC')::date, NEW.owner_id, upper(split_part(v_judge, ':', 1)), v_judge,
        v_token, case when settled then 1 else 0 end, 0, 0, 0, NEW.judge_cost_usd, null);
    end if;
  end if;
  return null;
end $$;`);
    this.addSql(`create trigger usage_on_eval_cell after update on "eval_cells" for each row
      when (OLD.status is distinct from NEW.status or OLD.cost_usd is distinct from NEW.cost_usd
            or OLD.judge_cost_usd is distinct from NEW.judge_cost_usd or OLD.finished_at is distinct from NEW.finished_at
            or OLD.input_tokens is distinct from NEW.input_tokens or OLD.output_tokens is distinct from NEW.output_tokens)
      execute function usage_on_eval_cell();`);

    this.addSql(`
create or replace function usage_on_eval_verdict() returns trigger language plpgsql as $$
declare
  v_judge text;
  v_token uuid;
begin
  select r.judge_model, r.api_token_id into v_judge, v_token from eval_runs r where r.id = NEW.run_id;
  if v_judge is null then return null; end if;
  if OLD.finished_at is not null then
    perform usage_record((OLD.finished_at at time zone 'UTC')::date, OLD.owner_id, upper(split_part(v_judge, ':', 1)), v_judge,
      v_token, 0, 0, 0, 0, -coalesce(OLD.cost_usd, 0), null);
  end if;
  if NEW.finished_at is not null then
    perform usage_record((NEW.finished_at at time zone 'UTC')::date, NEW.owner_id, upper(split_part(v_judge, ':', 1)), v_judge,
      v_token, case when OLD.finished_at is null then 2 else 0 end, 0, 0, 0, coalesce(NEW.cost_usd, 0), null);
  end if;
  return null;
end $$;`);
    this.addSql(`create trigger usage_on_eval_verdict after update on "eval_pair_verdicts" for each row
      when (OLD.cost_usd is distinct from NEW.cost_usd or OLD.finished_at is distinct from NEW.finished_at)
      execute function usage_on_eval_verdict();`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop trigger if exists usage_on_eval_verdict on "eval_pair_verdicts";`);
    this.addSql(`drop trigger if exists usage_on_eval_cell on "eval_cells";`);
    this.addSql(`drop function if exists usage_on_eval_verdict(), usage_on_eval_cell();`);
  }
}
