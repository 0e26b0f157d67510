import { Property } from '@mikro-orm/core';
import { Field, Float, Int, ObjectType } from 'type-graphql';
import { BaseEntity } from './base.entity';

/**
 * What one model call measured, once: tokens, latency and cost. A chat answer
 * (`Message`) and a comparison's answer (`ComparisonResponse`) extend this, so
 * both tables have the same columns (`prompt_tokens`, `completion_tokens`,
 * `latency_ms`, `cost_usd`) and both GraphQL types the same fields; the export
 * maps them with `measurementsOf`.
 */
@ObjectType({ simpleResolvers: true })
export abstract class ModelCallEntity<Optional extends string = never> extends BaseEntity<Optional> {
  @Field(() => Int, { nullable: true })
  @Property({ type: 'integer', nullable: true })
  promptTokens?: number | null;

  @Field(() => Int, { nullable: true })
  @Property({ type: 'integer', nullable: true })
  completionTokens?: number | null;

  @Field(() => Int, { nullable: true })
  @Property({ type: 'integer', nullable: true })
  latencyMs?: number | null;

  @Field(() => Float, { nullable: true })
  @Property({ type: 'double', nullable: true })
  costUsd?: number | null;

  /**
   * The personal API token the call was made through (null: a signed-in
   * session): what a token's daily cap counts (`modules/usage/usage.service.ts`).
   * Lazy: no read path selects it. No foreign key: it records, it does not own.
   */
  @Property({ type: 'uuid', nullable: true, lazy: true })
  apiTokenId?: string | null;
}

/** The measurement fields, for `Pick`s of the read views. */
export type ModelCallField = 'promptTokens' | 'completionTokens' | 'latencyMs' | 'costUsd';

export type ModelCallMeasurements = { [K in ModelCallField]: number | null };

/** A row's measurements, absent ones as null (as the export writes them). */
export function measurementsOf(row: Pick<ModelCallEntity, ModelCallField>): ModelCallMeasurements {
  return {
    promptTokens: row.promptTokens ?? null,
    completionTokens: row.completionTokens ?? null,
    latencyMs: row.latencyMs ?? null,
    costUsd: row.costUsd ?? null,
  };
}
