import type { EntityManager } from '@mikro-orm/postgresql';
import DataLoader from 'dataloader';
import type { Principal } from '../../graphql/auth';
import { indexByKey } from '../../db/loader-utils';
import { Vote } from './vote.entity';

export function createVoteLoaders(em: EntityManager, principal: Principal | null) {
  return {
    /** The viewer's own vote on each comparison. */
    voteByComparisonIdLoader: new DataLoader<string, Vote | null>(async (ids) => {
      if (!principal) return ids.map(() => null);
      const votes = await em.find(Vote, { comparison: { $in: [...ids] }, user: principal.userId });
      return indexByKey(ids, votes, (v) => v.comparison.id);
    }),
  };
}
