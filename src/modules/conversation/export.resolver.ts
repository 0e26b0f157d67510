import { Arg, Ctx, ID, Query, Resolver, registerEnumType } from 'type-graphql';
import { requireUser } from '../../auth/principal';
import type { Context } from '../common/context';
import { ExportFormat } from './export.service';

registerEnumType(ExportFormat, { name: 'ExportFormat' });

@Resolver()
export class ExportResolver {
  @Query(() => String, {
    nullable: true,
    description:
      'One conversation with its messages, comparisons, responses and your votes: pretty-printed JSON, or a Markdown document. ' +
      "null for a missing id or another user's conversation.",
  })
  exportConversation(
    @Arg('id', () => ID) id: string,
    @Arg('format', () => ExportFormat, { nullable: true, defaultValue: ExportFormat.JSON }) format: ExportFormat | null,
    @Ctx() ctx: Context,
  ) {
    return ctx.services.exports.export(ctx.em, requireUser(ctx.principal), id, format ?? ExportFormat.JSON, ctx.responseBytes);
  }
}
