import { Migration } from '@mikro-orm/migrations';

/**
 * Arena (issue 10): pre-aggregated battle counts, vote integrity, judge verdicts.
 *
 * - `votes.battles` (jsonb): the battles a vote yields, computed by the
 *   database when the vote is written (`vote_battles()`, a BEFORE trigger):
 *   `{ blind, category, cells: [{ a, b, pa, pb, o, x: [length, headers, lists, bold] }] }`
 *   (endpoints a < b, their providers, outcome A / B / TIE, binned style
 *   differences). A snapshot, so removing a vote later (a change, an
 *   exclusion, a cascade delete of its comparison or user) subtracts exactly
 *   what it added, without reading rows that may be gone.
 * - `battle_counts`: Σ battles per (blind, category, UTC day, pair, outcome,
 *   style bins), and `vote_tallies`: votes used / excluded per (blind,
 *   category, day). An AFTER trigger on `votes` keeps both exact in the
 *   vote's own transaction (insert, change, exclusion and its reversal,
 *   delete): the leaderboard reads a few thousand rows whatever the number
 *   of votes.
 * - `vote_exclusions`: one per user whose voting pattern was found
 *   implausible (reason, evidence), reversible by an admin (`reversed_at`).
 * - `judge_verdicts`: a judge model's verdict on a pair of responses
 *   (both orders asked; disagreement is a TIE), apart from human votes.
 */
export class Migration20261128021000_vote_integrity_counts_judges extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
create or replace function vote_battles(p_comparison uuid, p_outcome text, p_winner uuid) returns jsonb
language sql stable as $$
  with c as (
    select blind, coalesce(category, '') as category from comparison_results where id = p_comparison
  ),
  r as (
    select case when r.key_label = 'default' then r.model else r.model || '@' || r.key_label end as model,
           r.provider::text as provider, (r.id = p_winner) is true as is_winner, r.position,
           char_length(r.content) as length,
           regexp_count(r.content, '^#{1,6}[ \\t]', 1, 'n') as headers,
           regexp_count(r.content, '^[ \\t]*([-*+]|[0-9]+[.)])[ \\t]', 1, 'n') as lists,
           regexp_count(r.content, '\\*\\*[^*\\n]+\\*\\*|__[^_\\n]+__', 1, 'n') as bold
      from comparison_responses r
     where r.comparison_id = p_comparison and (r.status = 'COMPLETED' or r.id = p_winner)
  ),
  p as (
    select distinct on (model) * from r order by model, is_winner desc, position
  ),
  b as (
    select x.model as a, y.model as b, x.provider as pa, y.provider as pb,
           case when x.is_winner then 'A' when y.is_winner then 'B' else 'TIE' end as o,
           jsonb_build_array(
             round(10 * case when x.length + y.length = 0 then 0 else (x.length - y.length)::float8 / (x.length + y.length) end)::int,
             round(10 * case when x.headers + y.headers = 0 then 0 else (x.headers - y.headers)::float8 / (x.headers + y.headers) end)::int,
             round(10 * case when x.lists + y.lists = 0 then 0 else (x.lists - y.lists)::float8 / (x.lists + y.lists) end)::int,
             round(10 * case when x.bold + y.bold = 0 then 0 else (x.bold - y.bold)::float8 / (x.bold + y.bold) end)::int
           ) as x
      from p x join p y on x.model < y.model
     where p_outcome <> 'WINNER' or x.is_winner or y.is_winner
  )
  select jsonb_build_object(
           'blind', c.blind, 'category', c.category,
           'cells', coalesce((select jsonb_agg(jsonb_build_object('a', a, 'b', b, 'pa', pa, 'pb', pb, 'o', o, 'x', x) order by a, b) from b), '[]'::jsonb))
    from c
$$;`);

    this.addSql(`create table "battle_counts" (
  "blind" boolean not null, "category" text not null, "day" date not null,
  "model_a" text not null, "model_b" text not null, "outcome" text not null,
  "s_length" smallint not null, "s_headers" smallint not null, "s_lists" smallint not null, "s_bold" smallint not null,
  "provider_a" text not null, "provider_b" text not null, "n" integer not null,
  constraint "battle_counts_pkey" primary key ("blind", "category", "day", "model_a", "model_b", "outcome", "s_length", "s_headers", "s_lists", "s_bold"));`);
    this.addSql(`create table "vote_tallies" (
  "blind" boolean not null, "category" text not null, "day" date not null,
  "used_votes" integer not null default 0, "excluded_votes" integer not null default 0,
  constraint "vote_tallies_pkey" primary key ("blind", "category", "day"));`);

    this.addSql(`
create or replace function apply_vote_battles(p_battles jsonb, p_created timestamptz, p_excluded boolean, p_sign int) returns void
language plpgsql as $$
declare
  d date := (p_created at time zone 'UTC')::date;
  v_blind boolean := (p_battles->>'blind')::boolean;
  v_category text := p_battles->>'category';
  v_used int;
begin
  if p_battles is null then return; end if;
  if p_excluded then
    insert into vote_tallies (blind, category, day, used_votes, excluded_votes) values (v_blind, v_category, d, 0, p_sign)
      on conflict (blind, category, day) do update set excluded_votes = vote_tallies.excluded_votes + p_sign;
    return;
  end if;
  v_used := case when jsonb_array_length(p_battles->'cells') > 0 then p_sign else 0 end;
  if v_used = 0 then return; end if;
  insert into vote_tallies (blind, category, day, used_votes, excluded_votes) values (v_blind, v_category, d, v_used, 0)
    on conflict (blind, category, day) do update set used_votes = vote_tallies.used_votes + v_used;
  insert into battle_counts (blind, category, day, model_a, model_b, outcome, s_length, s_headers, s_lists, s_bold, provider_a, provider_b, n)
  select v_blind, v_category, d, c->>'a', c->>'b', c->>'o',
         (c->'x'->>0)::smallint, (c->'x'->>1)::smallint, (c->'x'->>2)::smallint, (c->'x'->>3)::smallint,
         c->>'pa', c->>'pb', p_sign
    from jsonb_array_elements(p_battles->'cells') c
  on conflict (blind, category, day, model_a, model_b, outcome, s_length, s_headers, s_lists, s_bold)
    do update set n = battle_counts.n + excluded.n;
end $$;`);

    this.addSql(`
create or replace function votes_battles_before() returns trigger language plpgsql as $$
begin
  if tg_op = 'INSERT' or new.battles is null or new.outcome is distinct from old.outcome or new.winner_id is distinct from old.winner_id then
    new.battles := vote_battles(new.comparison_id, new.outcome::text, new.winner_id);
  end if;
  return new;
end $$;`);
    this.addSql(`
create or replace function votes_battles_after() returns trigger language plpgsql as $$
begin
  if tg_op = 'UPDATE' and new.battles is not distinct from old.battles and new.created_at = old.created_at
     and (new.excluded_at is null) = (old.excluded_at is null) then
    return null;
  end if;
  if tg_op in ('UPDATE', 'DELETE') then
    perform apply_vote_battles(old.battles, old.created_at, old.excluded_at is not null, -1);
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    perform apply_vote_battles(new.battles, new.created_at, new.excluded_at is not null, 1);
  end if;
  return null;
end $$;`);

    this.addSql(`alter table "votes" add column "battles" jsonb null;`);
    // Existing votes: snapshot their battles, then count them once.
    this.addSql(`update "votes" set "battles" = vote_battles(comparison_id, outcome::text, winner_id);`);
    this.addSql(`select apply_vote_battles(battles, created_at, excluded_at is not null, 1) from "votes";`);
    this.addSql(
      `create trigger votes_battles_before before insert or update on "votes" for each row execute function votes_battles_before();`,
    );
    this.addSql(
      `create trigger votes_battles_after after insert or update or delete on "votes" for each row execute function votes_battles_after();`,
    );
    // The daily cap counts a user's recent votes.
    this.addSql(`create index "votes_user_created_idx" on "votes" ("user_id", "created_at");`);
    // A board's since filter reads the votes of its first (partial) day.
    this.addSql(`create index "votes_created_idx" on "votes" ("created_at");`);

    this.addSql(`create table "vote_exclusions" (
  "id" uuid not null, "created_at" timestamptz(3) not null, "user_id" uuid not null,
  "reason" text not null, "detail" text not null, "votes_considered" int not null,
  "reversed_at" timestamptz(3) null, "reversed_by_id" uuid null,
  constraint "vote_exclusions_pkey" primary key ("id"));`);
    this.addSql(`alter table "vote_exclusions" add constraint "vote_exclusions_user_unique" unique ("user_id");`);
    this.addSql(
      `alter table "vote_exclusions" add constraint "vote_exclusions_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "vote_exclusions" add constraint "vote_exclusions_reversed_by_id_foreign" foreign key ("reversed_by_id") references "users" ("id") on update cascade on delete set null;`,
    );

    this.addSql(`create table "judge_verdicts" (
  "id" uuid not null, "created_at" timestamptz(3) not null, "comparison_id" uuid not null, "user_id" uuid not null,
  "judge_model" text not null, "first_id" uuid not null, "second_id" uuid not null,
  "outcome" "vote_outcome" null, "winner_id" uuid null,
  "forward" text null, "swapped" text null, "failure" text null, "cost_usd" double precision null,
  constraint "judge_verdicts_pkey" primary key ("id"));`);
    this.addSql(
      `alter table "judge_verdicts" add constraint "judge_verdicts_pair_unique" unique ("comparison_id", "judge_model", "first_id", "second_id");`,
    );
    this.addSql(`create index "judge_verdicts_user_created_idx" on "judge_verdicts" ("user_id", "created_at");`);
    this.addSql(
      `alter table "judge_verdicts" add constraint "judge_verdicts_comparison_id_foreign" foreign key ("comparison_id") references "comparison_results" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "judge_verdicts" add constraint "judge_verdicts_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "judge_verdicts" add constraint "judge_verdicts_first_id_foreign" foreign key ("first_id") references "comparison_responses" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "judge_verdicts" add constraint "judge_verdicts_second_id_foreign" foreign key ("second_id") references "comparison_responses" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "judge_verdicts" add constraint "judge_verdicts_winner_id_foreign" foreign key ("winner_id") references "comparison_responses" ("id") on update cascade on delete cascade;`,
    );
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "judge_verdicts" cascade;`);
    this.addSql(`drop table if exists "vote_exclusions" cascade;`);
    this.addSql(`drop index if exists "votes_user_created_idx";`);
    this.addSql(`drop index if exists "votes_created_idx";`);
    this.addSql(`drop trigger if exists votes_battles_after on "votes";`);
    this.addSql(`drop trigger if exists votes_battles_before on "votes";`);
    this.addSql(`alter table "votes" drop column "battles";`);
    this.addSql(`drop function if exists votes_battles_after();`);
    this.addSql(`drop function if exists votes_battles_before();`);
    this.addSql(`drop function if exists apply_vote_battles(jsonb, timestamptz, boolean, int);`);
    this.addSql(`drop table if exists "vote_tallies";`);
    this.addSql(`drop table if exists "battle_counts";`);
    this.addSql(`drop function if exists vote_battles(uuid, text, uuid);`);
  }
}
