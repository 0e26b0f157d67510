import { Migration } from '@mikro-orm/migrations';

/**
 * Fused responses (issue 19 item 4): `comparison_responses.kind` (MODEL, or
 * FUSED for an answer `fuseComparison` merged from others) and `source_ids`
 * (the responses it merged). A FUSED response is not a battle:
 * `vote_battles()` (frozen copy of the 20261207064000 version, custom-endpoint
 * cells included) now reads MODEL responses only, so a vote's snapshot, the
 * GLOBAL counts and MINE never pair a fused answer with its sources.
 * Existing rows are MODEL.
 */
export class Migration20261207123000_fused_responses extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "comparison_responses" add column "kind" text not null default 'MODEL';`);
    this.addSql(`alter table "comparison_responses" add column "source_ids" uuid[] not null default '{}';`);
    this.addSql(VOTE_BATTLES_MODEL_ONLY);
  }

  override async down(): Promise<void> {
    this.addSql(VOTE_BATTLES_BEFORE);
    this.addSql(`alter table "comparison_responses" drop column "source_ids";`);
    this.addSql(`alter table "comparison_responses" drop column "kind";`);
  }
}

/** `vote_battles()` reading MODEL responses only. */
const VOTE_BATTLES_MODEL_ONLY = `
create or replace function vote_battles(p_comparison uuid, p_outcome text, p_winner uuid) returns jsonb
language sql stable as $$
  with c as (
    select blind, coalesce(category, '') as category from comparison_results where id = p_comparison
  ),
  r as (
    select case when r.key_label = 'default' then r.model else r.model || '@' || r.key_label end as model,
           r.provider::text as provider, (r.id = p_winner) is true as is_winner, r.position,
           r.custom_endpoint as custom,
           char_length(r.content) as length,
           regexp_count(r.content, '^#{1,6}[ \\t]', 1, 'n') as headers,
           regexp_count(r.content, '^[ \\t]*([-*+]|[0-9]+[.)])[ \\t]', 1, 'n') as lists,
           regexp_count(r.content, '\\*\\*[^*\\n]+\\*\\*|__[^_\\n]+__', 1, 'n') as bold
      from comparison_responses r
     where r.comparison_id = p_comparison and r.kind = 'MODEL' and (r.status = 'COMPLETED' or r.id = p_winner)
  ),
  p as (
    select distinct on (model) * from r order by model, is_winner desc, position
  ),
  b as (
    select x.model as a, y.model as b, x.provider as pa, y.provider as pb,
           case when x.is_winner then 'A' when y.is_winner then 'B' else 'TIE' end as o,
           (x.custom or y.custom) as custom,
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
           'cells', coalesce((select jsonb_agg(jsonb_build_object('a', a, 'b', b, 'pa', pa, 'pb', pb, 'o', o, 'x', x) || case when custom then '{"c": true}'::jsonb else '{}'::jsonb end order by a, b) from b), '[]'::jsonb))
    from c
$$;`;

/** `vote_battles()` as the 20261207064000 migration left it. */
const VOTE_BATTLES_BEFORE = `
create or replace function vote_battles(p_comparison uuid, p_outcome text, p_winner uuid) returns jsonb
language sql stable as $$
  with c as (
    select blind, coalesce(category, '') as category from comparison_results where id = p_comparison
  ),
  r as (
    select case when r.key_label = 'default' then r.model else r.model || '@' || r.key_label end as model,
           r.provider::text as provider, (r.id = p_winner) is true as is_winner, r.position,
           r.custom_endpoint as custom,
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
           (x.custom or y.custom) as custom,
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
           'cells', coalesce((select jsonb_agg(jsonb_build_object('a', a, 'b', b, 'pa', pa, 'pb', pb, 'o', o, 'x', x) || case when custom then '{"c": true}'::jsonb else '{}'::jsonb end order by a, b) from b), '[]'::jsonb))
    from c
$$;`;
