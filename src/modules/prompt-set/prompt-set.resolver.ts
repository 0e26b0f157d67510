import { Arg, Args, ArgsType, Ctx, Extensions, FieldResolver, ID, Int, Mutation, ObjectType, Query, Resolver, Root } from 'type-graphql';
import { requireUser } from '../../auth/principal';
import { TokenScope, tokenAccess } from '../../auth/token-scopes';
import { PROMPT_ITEMS } from '../../db/read-plan';
import { cacheHint } from '../../read-cache/cache-policy';
import { Connection, PageArgs, PageArgsOf, totalCountResolver } from '../common/connection';
import type { Context } from '../common/context';
import { ImportFormat } from './prompt-item-import';
import { PromptItem, PromptSet, type PromptSetView } from './prompt-set.entity';
import { PromptItemInput, PromptSetInput } from './prompt-set.inputs';

@ObjectType({ simpleResolvers: true })
export class PromptSetConnection extends Connection(PromptSet) {}

@ObjectType({ simpleResolvers: true })
export class PromptItemConnection extends Connection(PromptItem) {}

/** A set's items: the `PROMPT_ITEMS` read plan's default page unless asked. */
@ArgsType()
class PromptItemPageArgs extends PageArgsOf(PROMPT_ITEMS.page.default) {}

export const PromptSetConnectionResolver = totalCountResolver(PromptSetConnection, (ctx: Context) =>
  ctx.services.promptSets.count(ctx.em, requireUser(ctx.principal)),
);

@Resolver(() => PromptSet)
export class PromptSetResolver {
  @Extensions(cacheHint({ perUser: true }))
  @Query(() => PromptSetConnection, { description: 'Your prompt sets, newest first.' })
  promptSets(@Args(() => PageArgs) { first, after }: PageArgs, @Ctx() ctx: Context) {
    return ctx.services.promptSets.list(ctx.em, requireUser(ctx.principal), first, after);
  }

  @Extensions(cacheHint({ perUser: true }))
  @Query(() => PromptSet, { nullable: true, description: "Null for an unknown id and for another user's set." })
  promptSet(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    requireUser(ctx.principal);
    return ctx.loaders.promptSetByIdLoader.load(id);
  }

  @Extensions(tokenAccess(TokenScope.EVAL))
  @Mutation(() => PromptSet, { description: 'With up to 1,000 items, all written or none.' })
  createPromptSet(@Arg('input', () => PromptSetInput) input: PromptSetInput, @Ctx() ctx: Context) {
    return ctx.services.promptSets.create(ctx.em, requireUser(ctx.principal), input);
  }

  @Extensions(tokenAccess(TokenScope.EVAL))
  @Mutation(() => PromptSet, {
    description: 'Appends the items of a JSONL or CSV file (at most 5 MB): all of them, or none with the first bad line named.',
  })
  importPromptItems(
    @Arg('promptSetId', () => ID) promptSetId: string,
    @Arg('format', () => ImportFormat) format: ImportFormat,
    @Arg('data', () => String) data: string,
    @Ctx() ctx: Context,
  ) {
    return ctx.services.promptSets.importItems(ctx.em, requireUser(ctx.principal), promptSetId, format, data);
  }

  @Extensions(tokenAccess(TokenScope.EVAL))
  @Mutation(() => PromptItem, { description: 'Replaces the whole item (its position stays).' })
  updatePromptItem(@Arg('id', () => ID) id: string, @Arg('input', () => PromptItemInput) input: PromptItemInput, @Ctx() ctx: Context) {
    return ctx.services.promptSets.updateItem(ctx.em, requireUser(ctx.principal), id, input);
  }

  @Extensions(tokenAccess(TokenScope.EVAL))
  @Mutation(() => Boolean)
  deletePromptItem(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    return ctx.services.promptSets.deleteItem(ctx.em, requireUser(ctx.principal), id);
  }

  @Extensions(tokenAccess(TokenScope.EVAL))
  @Mutation(() => Boolean, { description: 'With its items.' })
  deletePromptSet(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    return ctx.services.promptSets.deleteSet(ctx.em, requireUser(ctx.principal), id);
  }

  @FieldResolver(() => Int)
  itemCount(@Root() set: PromptSetView, @Ctx() ctx: Context) {
    return ctx.loaders.promptItemCountBySetIdLoader.load(set.id);
  }

  @FieldResolver(() => PromptItemConnection, { description: 'In position order.' })
  items(@Root() set: PromptSetView, @Args(() => PromptItemPageArgs) { first, after }: PromptItemPageArgs, @Ctx() ctx: Context) {
    return ctx.loaders.promptItemPageBySetLoader.load(ctx.services.promptSets.itemPageKey(set.id, first, after));
  }
}
