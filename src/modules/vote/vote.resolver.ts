import { Ctx, FieldResolver, Resolver, Root } from 'type-graphql';
import type { Context } from '../../graphql/context';
import { ComparisonResponse } from '../comparison/comparison.entity';
import { Vote } from './vote.entity';

@Resolver(() => Vote)
export class VoteResolver {
  @FieldResolver(() => ComparisonResponse, { nullable: true })
  winner(@Root() vote: Vote, @Ctx() ctx: Context) {
    return vote.winner ? ctx.loaders.responseByIdLoader.load(vote.winner.id) : null;
  }
}
