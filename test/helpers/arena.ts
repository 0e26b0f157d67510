/**
 * Arena seeding for tests: comparisons (with their responses) inserted
 * straight into PostgreSQL, owned by a user, settled or not, blind or not.
 */
import { randomUUID } from 'node:crypto';
import { withClient } from './factories';
import type { TestApp } from './test-app';

export interface SeedAnswer {
  /** `provider:name`; the provider column is taken from it. */
  model: string;
  content?: string;
  status?: 'COMPLETED' | 'FAILED' | 'TIMED_OUT' | 'PENDING' | 'STREAMING';
}

export interface SeededComparison {
  id: string;
  /** Response ids in position order. */
  responses: string[];
}

export async function seedComparison(
  t: TestApp,
  ownerId: string,
  answers: SeedAnswer[],
  options: { blind?: boolean; category?: string | null; prompt?: string } = {},
): Promise<SeededComparison> {
  const id = randomUUID();
  const responses = answers.map(() => randomUUID());
  await withClient(t.db.url, async (c) => {
    await c.query(`insert into comparison_results (id, created_at, owner_id, prompt, blind, category) values ($1, now(), $2, $3, $4, $5)`, [
      id,
      ownerId,
      options.prompt ?? 'prompt',
      options.blind ?? true,
      options.category ?? null,
    ]);
    for (const [i, a] of answers.entries()) {
      await c.query(
        `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, status, content)
         values ($1, now(), $2, $3, $4, $5, $6, $7)`,
        [responses[i], id, i, a.model.split(':')[0]!.toUpperCase(), a.model, a.status ?? 'COMPLETED', a.content ?? 'answer'],
      );
    }
  });
  return { id, responses };
}
