/**
 * Bulk seeding straight into PostgreSQL (set-based SQL, fast), for tests that
 * need many rows. Timestamps are spaced 1 ms apart so ordering is deterministic.
 */
import { Client } from 'pg';

export async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface SeedOptions {
  conversations: number;
  messagesPerConversation: number;
  comparisons: number;
  responsesPerComparison: number;
  /** Vote WINNER on the first response of every comparison. */
  votes?: boolean;
  /** Attach comparison i to conversation i (when both exist). */
  linkComparisons?: boolean;
}

export async function seedUserData(url: string, userId: string, o: SeedOptions): Promise<void> {
  await withClient(url, async (c) => {
    await c.query('begin');
    await c.query(
      `insert into conversations (id, created_at, updated_at, owner_id, title)
       select gen_random_uuid(), now() - make_interval(secs => ($2 - g) / 1000.0), now(), $1, 'Conversation ' || g
         from generate_series(1, $2) g`,
      [userId, o.conversations],
    );
    await c.query(
      `insert into messages (id, created_at, conversation_id, role, content)
       select gen_random_uuid(), cv.created_at + make_interval(secs => m / 1000.0), cv.id,
              (case when m % 2 = 1 then 'USER' else 'ASSISTANT' end)::message_role, 'message ' || m || ' of ' || cv.title
         from conversations cv cross join generate_series(1, $2) m
        where cv.owner_id = $1`,
      [userId, o.messagesPerConversation],
    );
    await c.query(
      `insert into comparison_results (id, created_at, owner_id, conversation_id, prompt)
       select gen_random_uuid(), now() - make_interval(secs => ($2 - g) / 1000.0), $1,
              case when $3 then (select id from conversations where owner_id = $1 order by created_at offset g - 1 limit 1) end,
              'Prompt ' || g
         from generate_series(1, $2) g`,
      [userId, o.comparisons, !!o.linkComparisons],
    );
    await c.query(
      `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, status, content, latency_ms)
       select gen_random_uuid(), r.created_at, r.id, p - 1, 'OPENAI', 'openai:model-' || p, 'COMPLETED', 'answer ' || p, 100 * p
         from comparison_results r cross join generate_series(1, $2) p
        where r.owner_id = $1`,
      [userId, o.responsesPerComparison],
    );
    if (o.votes) {
      await c.query(
        `insert into votes (id, created_at, comparison_id, user_id, outcome, winner_id)
         select gen_random_uuid(), now(), r.id, $1, 'WINNER',
                (select id from comparison_responses where comparison_id = r.id order by position limit 1)
           from comparison_results r where r.owner_id = $1`,
        [userId],
      );
    }
    await c.query('commit');
  });
}
