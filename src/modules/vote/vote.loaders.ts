import type { EntityManager } from '@mikro-orm/postgresql';
import DataLoader from 'dataloader';
import type { Principal } from '../../auth/principal';
import { indexByKey } from '../../db/loader-utils';
import { selectPlain } from '../../db/plain';
import { pgArray } from '../../db/sql';
import { Vote, type VoteView } from './vote.entity';

export function createVoteLoaders(em: EntityManager, principal: Principal | null) {
  return {
    /** The viewer's own vote on each comparison. */
    voteByComparisonIdLoader: new DataLoader<string, VoteView | null>(async (ids) => {
      if (!principal) return ids.map(() => null);
      const votes = await selectPlain<VoteView>(em, Vote, 'v', 'v.comparison_id = any(?::uuid[]) and v.user_id = ?', [
        pgArray([...ids]),
        principal.userId,
      ]);
      return indexByKey(ids, votes, (v) => v.comparisonId);
    }),
  };
}
