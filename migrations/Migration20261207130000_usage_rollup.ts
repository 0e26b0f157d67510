import { Migration } from '@mikro-orm/migrations';

/**
 * Usage analytics (issue 21 item 5): `usage_rollup`, one row per (UTC day, user, provider, model, token) with the
 * calls, errors, tokens, cost and a latency histogram, kept by triggers on the rows that record provider calls, in
 * the same statement that writes them (nothing scans responses to answer `usage`):
 *
 * - `comparison_responses`: a call when its status becomes settled (COMPLETED / FAILED / TIMED_OUT; errors: not
 *   COMPLETED), with its latency; tokens and cost by difference whenever they change (a retry first clears them);
 * - `messages`: an assistant message with a model (sendMessage, continueWith's answer, a regenerated version) is a
 *   call, except the stored copy of a chosen comparison answer (`source_response_id`: counted on the response);
 * - `judge_verdicts`: two calls per verdict (both orders), cost by difference (a re-judged pair replaces its cost).
 *
 * Tokens and cost are kept by difference, keyed by the row's current (day, user, model, token): the rollup's cost
 * is always the sum of the `cost_usd` the budgets sum, to the cent. Latency buckets: 64, four per octave of ms
 * (bucket i holds [2^(i/4), 2^((i+1)/4)) ms; the last also everything longer), so a percentile read from them is
 * within 19% of the true value.
 */
export class Migration20261207130000_usage_rollup extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table "usage_rollup" (
      "day" date not null,
      "user_id" uuid not null references "users" ("id") on update cascade on delete cascade,
      "provider" text not null,
      "model" text not null,
      "token_key" uuid not null,
      "calls" bigint not null default 0,
      "errors" bigint not null default 0,
      "input_tokens" bigint not null default 0,
      "output_tokens" bigint not null default 0,
      "cost_usd" double precision not null default 0,
      "latency_buckets" integer[] not null default array_fill(0, array[64]),
      constraint "usage_rollup_pkey" primary key ("day", "user_id", "provider", "model", "token_key"));`);
    this.addSql(`create index "usage_rollup_user_day_idx" on "usage_rollup" ("user_id", "day");`);

    this.addSql(`
create or replace function usage_record(p_day date, p_user uuid, p_provider text, p_model text, p_token uuid,
  p_calls int, p_errors int, p_in bigint, p_out bigint, p_cost double precision, p_latency int) returns void
language plpgsql as $$
declare
  b int := case when p_latency is null then null
                else least(63, greatest(0, floor(4 * ln(greatest(p_latency, 1)) / ln(2))::int)) end;
  hist integer[] := array_fill(0, array[64]);
begin
  if p_calls = 0 and p_errors = 0 and p_in = 0 and p_out = 0 and p_cost = 0 and b is null then return; end if;
  if b is not null then hist[b + 1] := 1; end if;
  insert into usage_rollup as u (day, user_id, provider, model, token_key, calls, errors, input_tokens, output_tokens,
                                 cost_usd, latency_buckets)
  values (p_day, p_user, p_provider, p_model, coalesce(p_token, '00000000-0000-0000-0000-000000000000'),
          p_calls, p_errors, p_in, p_out, p_cost, hist)
  on conflict (day, user_id, provider, model, token_key) do update
     set calls = u.calls + excluded.calls, errors = u.errors + excluded.errors,
         input_tokens = u.input_tokens + excluded.input_tokens, output_tokens = u.output_tokens + excluded.output_tokens,
         cost_usd = u.cost_usd + excluded.cost_usd,
         latency_buckets = case when b is null then u.latency_buckets
                                else u.latency_buckets[1:b] || (u.latency_buckets[b + 1] + 1) || u.latency_buckets[b + 2:64] end;
end $$;`);

    this.addSql(`
create or replace function usage_on_response() returns trigger language plpgsql as $$
declare
  v_owner uuid;
  v_day date;
  settled boolean := NEW.status in ('COMPLETED', 'FAILED', 'TIMED_OUT')
                     and (TG_OP = 'INSERT' or OLD.status not in ('COMPLETED', 'FAILED', 'TIMED_OUT'));
begin
  select c.owner_id, (c.created_at at time zone 'UTC')::date into v_owner, v_day from comparison_results c where c.id = NEW.comparison_id;
  if v_owner is null then return null; end if;
  if TG_OP = 'UPDATE' then
    perform usage_record(v_day, v_owner, OLD.provider::text, OLD.model, OLD.api_token_id, 0, 0,
      -coalesce(OLD.prompt_tokens, 0), -coalesce(OLD.completion_tokens, 0), -coalesce(OLD.cost_usd, 0), null);
  end if;
  perform usage_record(v_day, v_owner, NEW.provider::text, NEW.model, NEW.api_token_id,
    case when settled then 1 else 0 end, case when settled and NEW.status <> 'COMPLETED' then 1 else 0 end,
    coalesce(NEW.prompt_tokens, 0), coalesce(NEW.completion_tokens, 0), coalesce(NEW.cost_usd, 0),
    case when settled then NEW.latency_ms end);
  return null;
end $$;`);
    this.addSql(`create trigger usage_on_response_update after update on "comparison_responses" for each row
      when (OLD.status is distinct from NEW.status or OLD.cost_usd is distinct from NEW.cost_usd
            or OLD.prompt_tokens is distinct from NEW.prompt_tokens or OLD.completion_tokens is distinct from NEW.completion_tokens
            or OLD.api_token_id is distinct from NEW.api_token_id)
      execute function usage_on_response();`);
    this.addSql(`create trigger usage_on_response_insert after insert on "comparison_responses" for each row
      when (NEW.status in ('COMPLETED', 'FAILED', 'TIMED_OUT') or NEW.cost_usd is not null)
      execute function usage_on_response();`);

    this.addSql(`
create or replace function usage_on_message() returns trigger language plpgsql as $$
declare
  v_owner uuid;
begin
  if NEW.role <> 'ASSISTANT' or NEW.model is null or NEW.source_response_id is not null then return null; end if;
  select c.owner_id into v_owner from conversations c where c.id = NEW.conversation_id;
  if v_owner is null then return null; end if;
  perform usage_record((NEW.created_at at time zone 'UTC')::date, v_owner, coalesce(NEW.provider::text, upper(split_part(NEW.model, ':', 1))),
    NEW.model, NEW.api_token_id, 1, 0, coalesce(NEW.prompt_tokens, 0), coalesce(NEW.completion_tokens, 0),
    coalesce(NEW.cost_usd, 0), NEW.latency_ms);
  return null;
end $$;`);
    this.addSql(`create trigger usage_on_message after insert on "messages" for each row execute function usage_on_message();`);

    this.addSql(`
create or replace function usage_on_verdict() returns trigger language plpgsql as $$
begin
  if TG_OP = 'UPDATE' then
    perform usage_record((OLD.created_at at time zone 'UTC')::date, OLD.user_id, upper(split_part(OLD.judge_model, ':', 1)),
      OLD.judge_model, OLD.api_token_id, 0, 0, 0, 0, -coalesce(OLD.cost_usd, 0), null);
  end if;
  perform usage_record((NEW.created_at at time zone 'UTC')::date, NEW.user_id, upper(split_part(NEW.judge_model, ':', 1)),
    NEW.judge_model, NEW.api_token_id, 2, 0, 0, 0, coalesce(NEW.cost_usd, 0), null);
  return null;
end $$;`);
    this.addSql(`create trigger usage_on_verdict after insert or update of cost_usd, api_token_id on "judge_verdicts" for each row
      execute function usage_on_verdict();`);

    // What was recorded before this migration, once.
    this.addSql(`
insert into usage_rollup (day, user_id, provider, model, token_key, calls, errors, input_tokens, output_tokens, cost_usd)
select day, user_id, provider, model, token_key, sum(calls), sum(errors), sum(i), sum(o), sum(cost)
  from (
    select (c.created_at at time zone 'UTC')::date as day, c.owner_id as user_id, x.provider::text as provider, x.model,
           coalesce(x.api_token_id, '00000000-0000-0000-0000-000000000000') as token_key,
           (x.status in ('COMPLETED', 'FAILED', 'TIMED_OUT'))::int as calls, (x.status in ('FAILED', 'TIMED_OUT'))::int as errors,
           coalesce(x.prompt_tokens, 0) as i, coalesce(x.completion_tokens, 0) as o, coalesce(x.cost_usd, 0) as cost
      from comparison_responses x join comparison_results c on c.id = x.comparison_id
    union all
    select (m.created_at at time zone 'UTC')::date, v.owner_id, coalesce(m.provider::text, upper(split_part(m.model, ':', 1))), m.model,
           coalesce(m.api_token_id, '00000000-0000-0000-0000-000000000000'), 1, 0,
           coalesce(m.prompt_tokens, 0), coalesce(m.completion_tokens, 0), coalesce(m.cost_usd, 0)
      from messages m join conversations v on v.id = m.conversation_id
     where m.role = 'ASSISTANT' and m.model is not null and m.source_response_id is null
    union all
    select (j.created_at at time zone 'UTC')::date, j.user_id, upper(split_part(j.judge_model, ':', 1)), j.judge_model,
           coalesce(j.api_token_id, '00000000-0000-0000-0000-000000000000'), 2, 0, 0, 0, coalesce(j.cost_usd, 0)
      from judge_verdicts j
  ) s
 group by day, user_id, provider, model, token_key;`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop trigger if exists usage_on_verdict on "judge_verdicts";`);
    this.addSql(`drop trigger if exists usage_on_message on "messages";`);
    this.addSql(`drop trigger if exists usage_on_response_insert on "comparison_responses";`);
    this.addSql(`drop trigger if exists usage_on_response_update on "comparison_responses";`);
    this.addSql(`drop function if exists usage_on_verdict(), usage_on_message(), usage_on_response();`);
    this.addSql(`drop function if exists usage_record(date, uuid, text, text, uuid, int, int, bigint, bigint, double precision, int);`);
    this.addSql(`drop table if exists "usage_rollup";`);
  }
}
