import { Entity, Index, ManyToOne, Property, type Ref } from '@mikro-orm/core';
import { BaseEntity } from '../../db/base.entity';
import { EvalRun } from '../eval/eval.entity';
import { User } from '../user/user.entity';

/**
 * Budget held by provider calls that are running (see `usage.service.ts`):
 * written under the user's advisory lock when a call is admitted, deleted
 * once its cost is recorded. A crashed instance's rows stop counting at
 * `expiresAt`.
 */
@Entity({ tableName: 'spend_reservations' })
@Index({ name: 'spend_reservations_user_idx', properties: ['user', 'expiresAt'] })
export class SpendReservation extends BaseEntity {
  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  user!: Ref<User>;

  /** Worst-case cost in USD of the calls; null when a model's price is unknown (unbounded). */
  @Property({ type: 'double', nullable: true })
  reservedUsd?: number | null;

  @Property({ type: 'Date', columnType: 'timestamptz(3)' })
  expiresAt!: Date;

  /** The personal API token the calls go through (null: a signed-in session): held against its cap too. */
  @Property({ type: 'uuid', nullable: true })
  apiTokenId?: string | null;

  /** An eval run's reservation (its cells' worst case, shrinking as they settle): deleted with the run. */
  @ManyToOne(() => EvalRun, { ref: true, nullable: true, deleteRule: 'cascade' })
  evalRun?: Ref<EvalRun> | null;
}
