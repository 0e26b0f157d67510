import { ArrayType, Entity, Enum, Index, ManyToOne, Property, type Ref } from '@mikro-orm/core';
import { Field, Int, ObjectType, registerEnumType } from 'type-graphql';
import { BaseEntity } from '../../db/base.entity';
import { type ModelCallField, ModelCallEntity } from '../../db/model-call.entity';
import { Provider } from '../api-key/api-key.entity';
import { Conversation } from '../conversation/conversation.entity';
import { User } from '../user/user.entity';

export enum ResponseStatus {
  PENDING = 'PENDING',
  STREAMING = 'STREAMING',
  COMPLETED = 'COMPLETED',
  FAILED = 'FAILED',
  TIMED_OUT = 'TIMED_OUT',
}
registerEnumType(ResponseStatus, { name: 'ResponseStatus' });

/** A model's own answer to the prompt, or one answer merged from others (`fuseComparison`). */
export enum ResponseKind {
  MODEL = 'MODEL',
  FUSED = 'FUSED',
}
registerEnumType(ResponseKind, { name: 'ResponseKind' });

export const SETTLED_STATUSES: readonly ResponseStatus[] = [ResponseStatus.COMPLETED, ResponseStatus.FAILED, ResponseStatus.TIMED_OUT];

/** One prompt sent to 2..8 models. Detached (conversation null) when its conversation is deleted. */
@ObjectType({ simpleResolvers: true })
@Entity({ tableName: 'comparison_results' })
@Index({
  name: 'comparison_results_owner_created_idx',
  expression: 'create index "comparison_results_owner_created_idx" on "comparison_results" ("owner_id", "created_at" desc, "id" desc)',
})
@Index({
  name: 'comparison_results_conversation_idx',
  expression: 'create index "comparison_results_conversation_idx" on "comparison_results" ("conversation_id", "created_at")',
})
export class ComparisonResult extends BaseEntity<'ownerId' | 'conversationId' | 'blind'> {
  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  owner!: Ref<User>;

  @ManyToOne(() => Conversation, { ref: true, nullable: true, deleteRule: 'set null' })
  conversation?: Ref<Conversation> | null;

  @Field(() => String)
  @Property({ type: 'text' })
  prompt!: string;

  /** Models hidden until the vote (issue 10, see `blind.ts`). The leaderboard counts blind comparisons only by default. */
  @Field(() => Boolean, {
    description:
      'Models hidden (provider, model, keyLabel, costs, tokens and provider error texts null or generic) until the comparison is voted on.',
  })
  @Property({ type: 'boolean', default: false })
  blind: boolean = false;

  /** Category of the prompt (code, math, …); each category has its own leaderboard (see `category.ts`). */
  @Field(() => String, {
    nullable: true,
    description:
      'One of code, math, creative_writing, long_prompt, other: given, or assigned from the prompt. null for comparisons ' +
      'made before categories existed.',
  })
  @Property({ type: 'text', nullable: true })
  category?: string | null;

  /** The foreign keys under the names plain reads use (see `db/plain.ts`). */
  get ownerId(): string {
    return this.owner.id;
  }

  get conversationId(): string | null {
    return this.conversation?.id ?? null;
  }
}

/**
 * A comparison as read paths return it (a plain row with `revealed` computed
 * next to it: `blind.ts`).
 */
export type ComparisonView = Pick<ComparisonResult, 'id' | 'createdAt' | 'ownerId' | 'conversationId' | 'prompt' | 'blind' | 'category'> & {
  /** Not blind, or voted on: the responses show their models. */
  revealed: boolean;
};

@ObjectType({ simpleResolvers: true })
@Entity({ tableName: 'comparison_responses' })
@Index({
  name: 'comparison_responses_api_token_idx',
  expression:
    'create index "comparison_responses_api_token_idx" on "comparison_responses" ("api_token_id") where "api_token_id" is not null',
})
@Index({
  name: 'comparison_responses_comparison_idx',
  expression: 'create index "comparison_responses_comparison_idx" on "comparison_responses" ("comparison_id", "position")',
})
@Index({
  name: 'comparison_responses_lease_idx',
  expression:
    'create index "comparison_responses_lease_idx" on "comparison_responses" ("heartbeat_at") ' +
    `where "status" in ('PENDING', 'STREAMING')`,
})
export class ComparisonResponse extends ModelCallEntity<
  'keyLabel' | 'status' | 'content' | 'comparisonId' | 'customEndpoint' | 'kind' | 'sourceIds'
> {
  @ManyToOne(() => ComparisonResult, { ref: true, deleteRule: 'cascade' })
  comparison!: Ref<ComparisonResult>;

  /** Order shown (0-based; the label is its letter): the request's order, shuffled for blind comparisons. */
  @Property({ type: 'smallint' })
  position!: number;

  @Field(() => Provider, { nullable: true, description: 'null while the comparison is blind and not yet voted on.' })
  @Enum({ items: () => Provider, nativeEnumName: 'provider' })
  provider!: Provider;

  /** Model id without the key label, e.g. `openai:gpt-4o`. */
  @Field(() => String, {
    nullable: true,
    description: "Model id without the key label ('openai:gpt-4o'); null while the comparison is blind and not yet voted on.",
  })
  @Property({ type: 'text' })
  model!: string;

  /**
   * Which of the user's keys (label) was asked for; kept so a retry uses the
   * same key, and exposed so two answers of one model through two endpoints
   * (`…@ollama`, `…@vllm`) are told apart. Named `keyLabel`, not `label`: the
   * contract reserves `label` for blind comparisons ("A", "B", …).
   */
  @Field(() => String, {
    nullable: true,
    description:
      "The key label of the model id asked for ('default' when it had no '@label'); model + '@' + keyLabel is the endpoint. " +
      'null while the comparison is blind and not yet voted on.',
  })
  @Property({ type: 'text' })
  keyLabel: string = 'default';

  @Field(() => ResponseStatus)
  @Enum({ items: () => ResponseStatus, nativeEnumName: 'response_status' })
  status: ResponseStatus = ResponseStatus.PENDING;

  @Field(() => String)
  @Property({ type: 'text' })
  content: string = '';

  @Field(() => String, {
    nullable: true,
    description:
      'Why the response FAILED or TIMED_OUT. While the comparison is blind and not yet voted on, only the reason code ' +
      "('RATE_LIMIT: …'), never the provider's text.",
  })
  @Property({ type: 'text', nullable: true })
  error?: string | null;

  /**
   * Served by the user's own key `baseUrl`, which is not one of the
   * operator's endpoints (`OPERATOR_ENDPOINTS`): its text, tokens and cost are
   * whatever that endpoint said, so it counts only on the owner's MINE board
   * (issue 16, case 7). Set when the call is made.
   */
  @Field(() => Boolean, {
    description:
      "true when the answer was served by the user's own key baseUrl (not one of the operator's endpoints): it counts only " +
      "on the owner's MINE board. false while the comparison is blind and not yet voted on (it would tell which answer " +
      'came from which key).',
  })
  @Property({ type: 'boolean', default: false })
  customEndpoint: boolean = false;

  /**
   * MODEL: the model's own answer to the prompt (a battle on the leaderboard,
   * a candidate in votes and judging). FUSED: written by `fuseComparison` from
   * the responses in `sourceIds`; never a battle, never a vote's winner.
   */
  @Field(() => ResponseKind, {
    description: 'MODEL: a model answered the prompt; FUSED: merged from sources. Only MODEL ones are battles.',
  })
  @Property({ type: 'text', default: ResponseKind.MODEL })
  kind: ResponseKind = ResponseKind.MODEL;

  /** The responses a FUSED response merged, in the order given to the model; empty for MODEL. */
  @Property({ type: ArrayType, columnType: 'uuid[]', default: '{}' })
  sourceIds: string[] = [];

  /** The rest of the call's measurements are `ModelCallEntity`'s. */
  @Field(() => Int, { nullable: true })
  @Property({ type: 'integer', nullable: true })
  timeToFirstTokenMs?: number | null;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  settledAt?: Date | null;

  /** The foreign key under the name plain reads use (see `db/plain.ts`). */
  get comparisonId(): string {
    return this.comparison.id;
  }

  /**
   * The lease of a running response: the instance running it, and its last
   * heartbeat (database time). Any instance settles an unsettled response
   * whose heartbeat is older than COMPARISON_LEASE_MS (see ComparisonRunner).
   */
  @Property({ type: 'text', nullable: true })
  leaseOwner?: string | null;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', defaultRaw: 'now()' })
  heartbeatAt?: Date;
}

/** A response as read paths return it (a plain row); an entity fits too. */
export type ComparisonResponseView = Pick<
  ComparisonResponse,
  | 'id'
  | 'createdAt'
  | 'comparisonId'
  | 'position'
  | 'provider'
  | 'model'
  | 'keyLabel'
  | 'status'
  | 'content'
  | 'error'
  | 'timeToFirstTokenMs'
  | 'customEndpoint'
  | 'kind'
  | 'sourceIds'
  | ModelCallField
  | 'settledAt'
>;
