import { Migration } from '@mikro-orm/migrations';

/**
 * Everyone's usage at coarser grains (issue 21 item 5, admin rows). `usage_rollup` (Migration20261207130000_usage_rollup)
 * keeps a row per (UTC day, user, provider, model, token): about one per call at scale, so an admin's grouping read from
 * it scans ~all of them. Three rollups with fewer keys, the same measures, each answering the groupings it covers:
 *
 * - `usage_rollup_model_day` (day, provider, model): everyone's calls by DAY / PROVIDER / MODEL (~days × models rows);
 * - `usage_rollup_model_token_day` (day, provider, model, token): everyone's with TOKEN (index by token for its pages);
 * - `usage_rollup_user_day` (user, day): by USER / DAY, anyone's (a user's own days; an admin's page of users).
 *
 * All are kept by `usage_record` itself, the one function every trigger calls with what a call adds (a settle, a
 * retry's difference, a message, a verdict, an eval cell), in the same statement as the per-user row: every rollup
 * receives the same deltas, so their totals agree (tokens exactly, cost to float rounding). Each is filled once
 * from `usage_rollup` (histograms included), set-based. A deleted user's rows leave `usage_rollup` and
 * `usage_rollup_user_day` (foreign key), not the user-less ones: everyone's spend stays what was spent.
 */
export class Migration20261207220000_usage_rollups_coarser extends Migration {
  override async up(): Promise<void> {
    for (const { table, key } of COARSER) {
      this.addSql(`create table "${table}" (
      ${key.map((k) => COLUMNS[k]).join(',\n      ')},
      "calls" bigint not null default 0,
      "errors" bigint not null default 0,
      "input_tokens" bigint not null default 0,
      "output_tokens" bigint not null default 0,
      "cost_usd" double precision not null default 0,
      "latency_buckets" integer[] not null default array_fill(0, array[64]),
      constraint "${table}_pkey" primary key (${key.map((k) => `"${k}"`).join(', ')}));`);
    }
    this.addSql(`create index "usage_rollup_model_token_day_token_idx" on "usage_rollup_model_token_day" ("token_key", "day");`);

    this.addSql(recordFunction([PER_USER, ...COARSER]));

    // What the per-user rollup holds so far, once per rollup.
    for (const { table, key } of COARSER) {
      this.addSql(`
insert into ${table} (${key.join(', ')}, calls, errors, input_tokens, output_tokens, cost_usd, latency_buckets)
select ${key.join(', ')}, sum(calls), sum(errors), sum(input_tokens), sum(output_tokens), sum(cost_usd), ${BUCKET_SUMS}
  from usage_rollup
 group by ${key.join(', ')};`);
    }
  }

  override async down(): Promise<void> {
    this.addSql(recordFunction([PER_USER]));
    for (const { table } of COARSER) this.addSql(`drop table if exists "${table}";`);
  }
}

export interface Rollup {
  table: string;
  key: string[];
}

const PER_USER: Rollup = { table: 'usage_rollup', key: ['day', 'user_id', 'provider', 'model', 'token_key'] };
/** The rollups this migration adds (the bench reads them: its backfill and checks). */
export const COARSER: Rollup[] = [
  { table: 'usage_rollup_model_day', key: ['day', 'provider', 'model'] },
  { table: 'usage_rollup_model_token_day', key: ['day', 'provider', 'model', 'token_key'] },
  { table: 'usage_rollup_user_day', key: ['user_id', 'day'] },
];

const COLUMNS: Record<string, string> = {
  day: '"day" date not null',
  user_id: '"user_id" uuid not null references "users" ("id") on update cascade on delete cascade',
  provider: '"provider" text not null',
  model: '"model" text not null',
  token_key: '"token_key" uuid not null',
};

/** `usage_record`'s arguments for each key column. */
const VALUES: Record<string, string> = {
  day: 'p_day',
  user_id: 'p_user',
  provider: 'p_provider',
  model: 'p_model',
  token_key: "coalesce(p_token, '00000000-0000-0000-0000-000000000000')",
};

/** The rollup's latency buckets summed per group, set-based: bucket i of the result is the sum of the rows' bucket i. */
const BUCKET_SUMS = `array[${Array.from({ length: 64 }, (_, i) => `sum(latency_buckets[${i + 1}])`).join(', ')}]::integer[]`;

/** `usage_record`: one call's (or a difference's) measures added to the row of each rollup. */
function recordFunction(rollups: Rollup[]): string {
  const upsert = ({ table, key }: Rollup) => `
  insert into ${table} as u (${key.join(', ')}, calls, errors, input_tokens, output_tokens, cost_usd, latency_buckets)
  values (${key.map((k) => VALUES[k]).join(', ')}, p_calls, p_errors, p_in, p_out, p_cost, hist)
  on conflict (${key.join(', ')}) do update
     set calls = u.calls + excluded.calls, errors = u.errors + excluded.errors,
         input_tokens = u.input_tokens + excluded.input_tokens, output_tokens = u.output_tokens + excluded.output_tokens,
         cost_usd = u.cost_usd + excluded.cost_usd,
         latency_buckets = case when b is null then u.latency_buckets
                                else u.latency_buckets[1:b] || (u.latency_buckets[b + 1] + 1) || u.latency_buckets[b + 2:64] end;`;
  return `
create or replace function usage_record(p_day date, p_user uuid, p_provider text, p_model text, p_token uuid,
  p_calls int, p_errors int, p_in bigint, p_out bigint, p_cost double precision, p_latency int) returns void
language plpgsql as $$
declare
  b int := case when p_latency is null then null
                else least(63, greatest(0, floor(4 * ln(greatest(p_latency, 1)) / ln(2))::int)) end;
  hist integer[] := array_fill(0, array[64]);
begin
  if p_calls = 0 and p_errors = 0 and p_in = 0 and p_out = 0 and p_cost = 0 and b is null then return; end if;
  if b is not null then hist[b + 1] := 1; end if;${rollups.map(upsert).join('')}
end $$;`;
}
