/**
 * `npm run bench:leaderboard -- --sql`: where a board's battle counts come
 * from, measured on PostgreSQL. Seeds a bench database (migrated like the
 * app's) with N blind comparisons of 2 of M models and one vote each — the
 * `votes` triggers maintain `battle_counts` as the votes go in, so the seed
 * time per vote is the write-side cost of the counts table — then times:
 *   1. the GLOBAL statement the service runs (`battle_counts`, grows with cells);
 *   2. the previous design: one GROUP BY over every vote joined to its
 *      responses (grows with votes).
 * Options: --votes N (default 200000) --models M (default 100).
 */
import 'reflect-metadata';
import { createOrmOptions, connectOrm, migrate } from '../src/db/orm';
import { numberedPlaceholders } from '../src/db/sql';
import { ENTITIES } from '../mikro-orm.config';
import { globalStatement } from '../src/modules/leaderboard/battle-sql';
import type { NormalisedFilter } from '../src/modules/leaderboard/leaderboard.types';
import { createBenchDatabase, DEFAULT_ADMIN_URL, withClient } from './lib/db';

const ENDPOINT = `case when r.key_label = 'default' then r.model else r.model || '@' || r.key_label end`;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

/** Normalised difference (x − y) / (x + y), 0 when both are 0, binned (as before). */
function styleDiff(column: string): string {
  return `round(10 * case when x.${column} + y.${column} = 0 then 0 else (x.${column} - y.${column})::float8 / (x.${column} + y.${column}) end)::int`;
}

/** The aggregation the service ran before the counts table (commit 6276b6d), kept as the reference. */
function groupByVotesStatement(userId: string | null, f: NormalisedFilter): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  if (userId !== null) {
    where.push('v.user_id = ?');
    params.push(userId);
  }
  if (f.blindOnly) where.push('c.blind');
  if (f.category !== null) {
    where.push('c.category = ?');
    params.push(f.category);
  }
  if (f.since !== null) {
    where.push('v.created_at >= ?::timestamptz');
    params.push(f.since);
  }
  const style = f.styleControl;
  const styleColumns = style
    ? `, char_length(r.content) as length,
         regexp_count(r.content, '^#{1,6}[ \\t]', 1, 'n') as headers,
         regexp_count(r.content, '^[ \\t]*([-*+]|[0-9]+[.)])[ \\t]', 1, 'n') as lists,
         regexp_count(r.content, '\\*\\*[^*\\n]+\\*\\*|__[^_\\n]+__', 1, 'n') as bold`
    : '';
  const styleDiffs = style
    ? `, ${styleDiff('length')} as s_length, ${styleDiff('headers')} as s_headers, ${styleDiff('lists')} as s_lists, ${styleDiff('bold')} as s_bold`
    : ', 0 as s_length, 0 as s_headers, 0 as s_lists, 0 as s_bold';
  const sql = `
    with v as (
      select v.id, v.outcome, v.winner_id, v.comparison_id, v.excluded_at is not null as excluded
        from votes v join comparison_results c on c.id = v.comparison_id
       where ${where.length > 0 ? where.join(' and ') : 'true'}
    ),
    p as (
      select distinct on (v.id, ${ENDPOINT})
             v.id as vote_id, v.outcome, ${ENDPOINT} as model, r.provider::text as provider, (r.id = v.winner_id) is true as is_winner
             ${styleColumns}
        from v join comparison_responses r
          on r.comparison_id = v.comparison_id and (r.status = 'COMPLETED' or r.id = v.winner_id)
       where not v.excluded
       order by v.id, ${ENDPOINT}, (r.id = v.winner_id) is true desc, r.position
    ),
    b as (
      select x.vote_id, x.model as model_a, y.model as model_b, x.provider as provider_a, y.provider as provider_b,
             case when x.is_winner then 'A' when y.is_winner then 'B' else 'TIE' end as outcome
             ${styleDiffs}
        from p x join p y on x.vote_id = y.vote_id and x.model < y.model
       where x.outcome <> 'WINNER' or x.is_winner or y.is_winner
    )
    select 'cell' as kind, model_a, model_b, min(provider_a) as provider_a, min(provider_b) as provider_b, outcome,
           s_length, s_headers, s_lists, s_bold, count(*)::int as n, 0 as used
      from b
     group by model_a, model_b, outcome, s_length, s_headers, s_lists, s_bold
    union all
    select 'summary', null, null, null, null, null, null, null, null, null,
           (select count(*) from v where excluded)::int, (select count(distinct vote_id) from b)::int
     order by 1, 2, 3, 6, 7, 8, 9, 10`;
  return { sql, params };
}

async function time<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const result = await fn();
  return [result, performance.now() - start];
}

async function main(): Promise<void> {
  const votes = arg('votes', 200_000);
  const models = arg('models', 100);
  const db = await createBenchDatabase(process.env.BENCH_DATABASE_URL ?? DEFAULT_ADMIN_URL);
  try {
    const orm = await connectOrm(
      createOrmOptions({
        clientUrl: db.url,
        pool: { min: 0, max: 2, acquireTimeoutMs: 60_000, idleTimeoutMs: 10_000 },
        entities: ENTITIES,
      }),
    );
    await migrate(orm);
    await orm.close(true);
    await withClient(db.url, async (c) => {
      await c.query(
        `insert into users (id, created_at, email, password_hash, role) values (gen_random_uuid(), now(), 'bench@example.com', 'x', 'USER')`,
      );
      const [{ id: user }] = (await c.query(`select id from users`)).rows;
      await c.query(
        `insert into comparison_results (id, created_at, owner_id, prompt, blind)
         select gen_random_uuid(), now(), $1, 'p', true from generate_series(1, $2)`,
        [user, votes],
      );
      await c.query(
        `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, status, content)
         select gen_random_uuid(), now(), r.id, p, 'OPENAI',
                'openai:m' || ((abs(hashtext(r.id::text || p::text)) % $1) + p * 0)::text, 'COMPLETED', repeat('word ', 1 + abs(hashtext(r.id::text)) % 50)
           from comparison_results r cross join generate_series(0, 1) p`,
        [models],
      );
      // In batches of 5,000 votes (one transaction each), as votes arrive over time.
      const batch = 5_000;
      const [, seedMs] = await time(async () => {
        for (let offset = 0; offset < votes; offset += batch) {
          await c.query(
            `insert into votes (id, created_at, comparison_id, user_id, outcome, winner_id)
             select gen_random_uuid(), now(), r.id, $1, 'WINNER', (select x.id from comparison_responses x where x.comparison_id = r.id order by random() limit 1)
               from (select id from comparison_results order by id offset $2 limit $3) r`,
            [user, offset, batch],
          );
        }
      });
      await c.query('vacuum analyze');
      const cells = (await c.query(`select count(*)::int as n from battle_counts where n <> 0`)).rows[0].n;
      console.log(
        `${votes} votes over ${models} models → ${cells} battle_counts cells; seeding the votes (triggers included): ${(seedMs / 1000).toFixed(1)} s, ${((seedMs * 1000) / votes).toFixed(0)} µs per vote`,
      );

      const f: NormalisedFilter = { blindOnly: true, styleControl: false, category: null, since: null };
      const counts = globalStatement(f);
      const reference = groupByVotesStatement(null, f);
      const toPg = (sql: string) => numberedPlaceholders(sql).text;
      for (let round = 0; round < 2; round++) {
        const [a, countsMs] = await time(() => c.query(toPg(counts.sql), counts.params));
        const [b, groupMs] = await time(() => c.query(toPg(reference.sql), reference.params));
        const battles = (rows: any[]) => rows.filter((r) => r.kind === 'cell').reduce((n, r) => n + Number(r.n), 0);
        if (battles(a.rows) !== battles(b.rows))
          throw new Error(`the two statements disagree: ${battles(a.rows)} vs ${battles(b.rows)} battles`);
        console.log(
          `GLOBAL board counts: battle_counts ${countsMs.toFixed(0)} ms; GROUP BY over votes ${groupMs.toFixed(0)} ms (${battles(a.rows)} battles; wall time, rows to Node included)`,
        );
      }
      const executed = async (sql: string, params: unknown[]) => {
        const plan = await c.query(`explain (analyze, format json) ${toPg(sql)}`, params);
        return Number(plan.rows[0]['QUERY PLAN'][0]['Execution Time']);
      };
      console.log(
        `server execution time: battle_counts ${(await executed(counts.sql, counts.params)).toFixed(1)} ms; GROUP BY over votes ${(await executed(reference.sql, reference.params)).toFixed(1)} ms`,
      );
    });
  } finally {
    await db.drop();
  }
}

void main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
