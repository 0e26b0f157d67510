/**
 * The bench workload, seeded with set-based SQL (generate_series) straight into
 * the migrated bench database, then ANALYZEd. Not through the app: seconds, not minutes.
 *
 * Per user u (1..users): 20 conversations x 10 messages (~400 characters, with
 * quotes and a newline so JSON escaping is exercised), 10 comparisons x 3
 * COMPLETED responses (~400 characters) whose prompt is the USER message 9 of
 * conversation k with `messages.comparison_id` set (see docs/DESIGN.md "Comparison
 * prompts are messages"), and a vote on 7 of the 10 comparisons (~7,000 votes).
 *
 * Ids are md5-derived UUIDs, so they are deterministic and relations need no
 * joins; timestamps are whole milliseconds (timestamptz(3)) and distinct within
 * each ordered list, so `(created_at, id)` order is total and identical for
 * every server that sorts by it.
 */
import { createHash } from 'node:crypto';
import type { Client } from 'pg';
import { buildUsageRollups, setUsageTriggers, USAGE_TRIGGERS } from './rollups';

export interface Workload {
  users: number;
  conversations: number;
  messages: number;
  comparisons: number;
  responses: number;
  /** Comparisons 1..votes of each user get a vote. */
  votes: number;
}

export const WORKLOAD: Workload = { users: 1000, conversations: 20, messages: 10, comparisons: 10, responses: 3, votes: 7 };

export const BENCH_PASSWORD = 'bench password 1234';

/** The id of bench user `u` (1-based), as the seed writes it. */
export function userId(u: number): string {
  return md5Uuid(`u${u}`);
}

export function userEmail(u: number): string {
  return `bench-user-${u}@example.com`;
}

/** Conversation `c` (1-based) of bench user `u`. */
export function conversationId(u: number, c: number): string {
  return md5Uuid(`c${u}-${c}`);
}

/** Comparison `k` (1-based) of bench user `u`. */
export function comparisonId(u: number, k: number): string {
  return md5Uuid(`k${u}-${k}`);
}

export function md5Uuid(text: string): string {
  // Same as PostgreSQL's md5(text)::uuid.
  const hex = createHash('md5').update(text).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** ~400 characters: a sentence naming the row, an md5 per row, a quote and a newline. */
const TEXT = (label: string, seed: string) =>
  `left(${label} || E'\\n' || repeat('The "quick" brown fox ' || md5(${seed}) || ' jumps over the lazy dog; ', 6), 400)`;

export async function seed(
  client: Client,
  w: Workload,
  passwordHash: string,
): Promise<{ seconds: number; rows: Record<string, number>; stepSeconds: Record<string, number> }> {
  const started = performance.now();
  // Base time: 60 days ago at a whole second; every generated time is base + whole milliseconds.
  const base = new Date(Math.floor(Date.now() / 1000) * 1000 - 60 * 86_400_000).toISOString();
  const steps: Array<[string, string, unknown[]]> = [
    [
      'users',
      `insert into users (id, created_at, email, password_hash, role)
       select md5('u' || u)::uuid, $1::timestamptz + make_interval(secs => u / 1000.0),
              'bench-user-' || u || '@example.com', $3, 'USER'
         from generate_series(1, $2::int) u`,
      [base, w.users, passwordHash],
    ],
    [
      'conversations',
      // Conversation c of user u is created at base + c hours + u ms and updated when its last message is.
      `insert into conversations (id, created_at, owner_id, title, updated_at)
       select md5('c' || u || '-' || c)::uuid, t, md5('u' || u)::uuid,
              'Conversation ' || c || ' about "' || left(md5('t' || u || '-' || c), 12) || '"',
              t + make_interval(secs => $4::int)
         from generate_series(1, $2::int) u, generate_series(1, $3::int) c,
              lateral (select $1::timestamptz + make_interval(hours => c, secs => u / 1000.0) as t) x`,
      [base, w.users, w.conversations, w.messages],
    ],
    [
      'comparison_results',
      // Comparison k belongs to conversation k; its prompt is that conversation's USER message 9.
      `insert into comparison_results (id, created_at, owner_id, conversation_id, prompt)
       select md5('k' || u || '-' || k)::uuid,
              $1::timestamptz + make_interval(hours => k, secs => u / 1000.0 + 9),
              md5('u' || u)::uuid, md5('c' || u || '-' || k)::uuid,
              ${TEXT(`'Message 9 of conversation ' || k || ' (user ' || u || ')'`, `'m' || u || '-' || k || '-9'`)}
         from generate_series(1, $2::int) u, generate_series(1, $3::int) k`,
      [base, w.users, w.comparisons],
    ],
    [
      'messages',
      `insert into messages (id, created_at, conversation_id, role, content, provider, model, prompt_tokens, completion_tokens, latency_ms, comparison_id)
       select md5('m' || u || '-' || c || '-' || m)::uuid,
              $1::timestamptz + make_interval(hours => c, secs => u / 1000.0 + m),
              md5('c' || u || '-' || c)::uuid,
              (case when m % 2 = 1 then 'USER' else 'ASSISTANT' end)::message_role,
              ${TEXT(`'Message ' || m || ' of conversation ' || c || ' (user ' || u || ')'`, `'m' || u || '-' || c || '-' || m`)},
              case when m % 2 = 0 then 'OPENAI'::provider end,
              case when m % 2 = 0 then 'openai:gpt-4o' end,
              case when m % 2 = 0 then 120 + m end,
              case when m % 2 = 0 then 95 + c end,
              case when m % 2 = 0 then 700 + (u * 7 + c * 13 + m) % 900 end,
              case when m = 9 and c <= $5::int then md5('k' || u || '-' || c)::uuid end
         from generate_series(1, $2::int) u, generate_series(1, $3::int) c, generate_series(1, $4::int) m`,
      [base, w.users, w.conversations, w.messages, w.comparisons],
    ],
    [
      'comparison_responses',
      `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, key_label, status, content,
                                         latency_ms, time_to_first_token_ms, prompt_tokens, completion_tokens, cost_usd, settled_at)
       select md5('r' || u || '-' || k || '-' || p)::uuid, t, md5('k' || u || '-' || k)::uuid, p - 1,
              (array['OPENAI', 'ANTHROPIC', 'GOOGLE'])[p]::provider,
              (array['openai:gpt-4o', 'anthropic:claude-sonnet-4-5', 'google:gemini-2.5-flash'])[p],
              'default', 'COMPLETED',
              ${TEXT(`'Answer ' || p || ' to comparison ' || k || ' (user ' || u || ')'`, `'r' || u || '-' || k || '-' || p`)},
              800 + (u * 7 + k * 13 + p * 31) % 2000, 150 + p * 20, 130 + k, 90 + (u + k + p) % 200, 0.0001 * p,
              t + make_interval(secs => 2)
         from generate_series(1, $2::int) u, generate_series(1, $3::int) k, generate_series(1, $4::int) p,
              lateral (select $1::timestamptz + make_interval(hours => k, secs => u / 1000.0 + 9) as t) x`,
      [base, w.users, w.comparisons, w.responses],
    ],
    [
      'votes',
      // WINNER on response (k mod 3) for most, TIE when 3 divides k.
      `insert into votes (id, created_at, comparison_id, user_id, outcome, winner_id)
       select md5('v' || u || '-' || k)::uuid, $1::timestamptz + make_interval(hours => k, secs => u / 1000.0 + 30),
              md5('k' || u || '-' || k)::uuid, md5('u' || u)::uuid,
              (case when k % 3 = 0 then 'TIE' else 'WINNER' end)::vote_outcome,
              case when k % 3 <> 0 then md5('r' || u || '-' || k || '-' || (k % 3))::uuid end
         from generate_series(1, $2::int) u, generate_series(1, $3::int) k`,
      [base, w.users, Math.min(w.votes, w.comparisons)],
    ],
  ];
  const rows: Record<string, number> = {};
  const stepSeconds: Record<string, number> = {};
  const timed = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      stepSeconds[name] = (performance.now() - t0) / 1000;
    }
  };
  await client.query('begin');
  try {
    // Secondary indexes are built once after the bulk insert (much faster than row-by-row maintenance, GIN above all),
    // from the definitions the migrations created, so the schema ends identical. Constraint indexes (keys, uniques) stay.
    const secondary = await client.query<{ name: string; def: string }>(
      `select i.indexname as name, i.indexdef as def
         from pg_indexes i
        where i.schemaname = current_schema() and i.tablename = any($1::text[])
          and not exists (select 1 from pg_constraint k where k.conindid = format('%I.%I', i.schemaname, i.indexname)::regclass)
        order by i.tablename, i.indexname`,
      [steps.map(([table]) => table).filter((table) => table !== 'votes')],
    );
    for (const { name } of secondary.rows) await client.query(`drop index "${name}"`);
    const insert = async ([table, sql, params]: (typeof steps)[number]) => {
      const result = await timed(table, () => client.query(sql, params));
      rows[table] = result.rowCount ?? 0;
    };
    // The calls go in without the usage triggers, and the rollups are built from them in one statement each (./rollups.ts).
    const triggered = steps.map(([table]) => table).filter((table) => table in USAGE_TRIGGERS);
    await setUsageTriggers(client, triggered, false);
    for (const step of steps.filter(([table]) => table !== 'votes')) await insert(step);
    await timed('usage rollups', () => buildUsageRollups(client));
    await setUsageTriggers(client, triggered, true);
    await client.query(`set local maintenance_work_mem = '256MB'`);
    await timed('indexes', async () => {
      for (const { def } of secondary.rows) await client.query(def);
    });
    // Votes last, on indexed tables: their BEFORE trigger (vote_battles) reads the comparison's responses by comparison_id.
    await insert(steps.find(([table]) => table === 'votes')!);
    await timed('commit', () => client.query('commit'));
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  }
  await timed('analyze', () => client.query('analyze'));
  return { seconds: (performance.now() - started) / 1000, rows, stepSeconds };
}
