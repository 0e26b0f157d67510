import { Migration } from '@mikro-orm/migrations';

/**
 * An honest board (issue 16, case 7): an answer served by a user's own key
 * `baseUrl` (not one of `OPERATOR_ENDPOINTS`) may say anything — its text,
 * tokens and cost are that endpoint's — so it counts only on its owner's
 * MINE board.
 *
 * - `comparison_responses.custom_endpoint`: set by the runner when it calls
 *   the model. Existing responses stay false: which endpoint served them was
 *   not recorded (a key's `baseUrl` may have changed since).
 * - `vote_battles()`: each cell carries `c` (true when either side's
 *   response is custom); the snapshot keeps every cell (MINE reads them all).
 * - `apply_vote_battles()`: `battle_counts` (GLOBAL) takes only cells without
 *   `c`, and a vote counts as used in `vote_tallies` only when it has one.
 *   Existing snapshots have no `c`: counted as before.
 */
export class Migration20261207064000_custom_endpoint_responses extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "comparison_responses" add column "custom_endpoint" boolean not null default false;`);
    this.addSql(voteBattles(true));
    this.addSql(applyVoteBattles(true));
  }

  override async down(): Promise<void> {
    this.addSql(applyVoteBattles(false));
    this.addSql(voteBattles(false));
    this.addSql(`alter table "comparison_responses" drop column "custom_endpoint";`);
  }
}

/** `vote_battles()` as the 20261128021000 migration made it, plus (when `custom`) each cell's `c`. */
function voteBattles(custom: boolean): string {
  return `
create or replace function vote_battles(p_comparison uuid, p_outcome text, p_winner uuid) returns jsonb
language sql stable as $$
  with c as (
    select blind, coalesce(category, '') as category from comparison_results where id = p_comparison
  ),
  r as (
    select case when r.key_label = 'default' then r.model else r.model || '@' || r.key_label end as model,
           r.provider::text as provider, (r.id = p_winner) is true as is_winner, r.position,
           ${custom ? 'r.custom_endpoint as custom,' : ''}
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
           ${custom ? '(x.custom or y.custom) as custom,' : ''}
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
           'cells', coalesce((select jsonb_agg(${custom ? `jsonb_build_object('a', a, 'b', b, 'pa', pa, 'pb', pb, 'o', o, 'x', x) || case when custom then '{"c": true}'::jsonb else '{}'::jsonb end` : `jsonb_build_object('a', a, 'b', b, 'pa', pa, 'pb', pb, 'o', o, 'x', x)`} order by a, b) from b), '[]'::jsonb))
    from c
$$;`;
}

/** `apply_vote_battles()` as the 20261128021000 migration made it; with `custom`, cells marked `c` stay out of the shared counts. */
function applyVoteBattles(custom: boolean): string {
  const shared = custom ? ` where not coalesce((c->>'c')::boolean, false)` : '';
  return `
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
  v_used := case when exists (select 1 from jsonb_array_elements(p_battles->'cells') c${shared}) then p_sign else 0 end;
  if v_used = 0 then return; end if;
  insert into vote_tallies (blind, category, day, used_votes, excluded_votes) values (v_blind, v_category, d, v_used, 0)
    on conflict (blind, category, day) do update set used_votes = vote_tallies.used_votes + v_used;
  insert into battle_counts (blind, category, day, model_a, model_b, outcome, s_length, s_headers, s_lists, s_bold, provider_a, provider_b, n)
  select v_blind, v_category, d, c->>'a', c->>'b', c->>'o',
         (c->'x'->>0)::smallint, (c->'x'->>1)::smallint, (c->'x'->>2)::smallint, (c->'x'->>3)::smallint,
         c->>'pa', c->>'pb', p_sign
    from jsonb_array_elements(p_battles->'cells') c${shared}
  on conflict (blind, category, day, model_a, model_b, outcome, s_length, s_headers, s_lists, s_bold)
    do update set n = battle_counts.n + excluded.n;
end $$;`;
}
