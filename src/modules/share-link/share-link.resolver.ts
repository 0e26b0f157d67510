import {
  Arg,
  Args,
  ArgsType,
  Ctx,
  Extensions,
  Field,
  ID,
  InputType,
  Int,
  Mutation,
  ObjectType,
  Query,
  Resolver,
  registerEnumType,
} from 'type-graphql';
import { requireUser, TokenScope } from '../../auth/principal';
import { tokenAccess } from '../../auth/token-scopes';
import { SHARE_LINKS } from '../../db/read-plan';
import { badInput } from '../../errors';
import { cacheHint } from '../../read-cache/cache-policy';
import { ResponseStatus } from '../comparison/comparison.entity';
import { Connection, PageArgsOf } from '../common/connection';
import type { Context } from '../common/context';
import { MessageRole } from '../message/message.entity';
import { documentFormat, ExportFormat } from '../conversation/export.service';
import { renderSharedView } from './shared-export';
import { type ShareLinkView, type SharedViewData, sharedScope } from './share-link.service';

export enum ShareTarget {
  CONVERSATION = 'CONVERSATION',
  COMPARISON = 'COMPARISON',
}
registerEnumType(ShareTarget, { name: 'ShareTarget' });

/** Seconds an HTTP cache may keep an anonymous shared read: short, so a revoked link stops being served soon everywhere. */
export const SHARED_MAX_AGE_SECONDS = 5;

/**
 * Anonymous pages of a link are stored in the read cache under the link's own
 * scope (`share:<sha256>`: the generation its revocation, or its
 * conversation's deletion, bumps), never past the link's expiry (the resolver
 * tells the edge: `publicEntryLimit`) and at most a minute.
 */
const SHARED_CACHE = cacheHint({
  publicMaxAge: SHARED_MAX_AGE_SECONDS,
  publicEntry: { argument: 'token', scope: sharedScope, ttlMs: 60_000 },
});

/** The link's snapshot for this request, and the edge told how long an answer built from it may be stored. */
async function readShared(ctx: Context, token: string): Promise<SharedViewData | null> {
  const { view, expiresAt } = await ctx.services.shareLinks.read(token, ctx.clientIp, ctx.publicReadAdmitted === true);
  if (expiresAt !== null && ctx.publicEntryLimit) {
    ctx.publicEntryLimit.expiresAt = Math.min(ctx.publicEntryLimit.expiresAt ?? Infinity, expiresAt);
  }
  return view;
}

@ObjectType({ simpleResolvers: true })
export class ShareLink {
  @Field(() => ID)
  id!: string;

  @Field(() => ShareTarget)
  target!: ShareTarget;

  @Field(() => ID)
  targetId!: string;

  @Field(() => Date)
  createdAt!: Date;

  @Field(() => Date, { nullable: true })
  expiresAt!: Date | null;

  @Field(() => Date, { nullable: true })
  revokedAt!: Date | null;

  @Field(() => Int, { description: 'Answered reads of the link; counted in batches, so up to a second behind.' })
  views!: number;

  @Field(() => String, {
    description: 'The link. Whole only in createShareLink\'s answer; listed links show the token\'s first characters and "…".',
  })
  url!: string;
}

@ObjectType({ simpleResolvers: true })
export class ShareLinkSecret {
  @Field(() => String, { description: 'The token, shown this once: it is stored hashed and cannot be shown again.' })
  token!: string;

  @Field(() => ShareLink)
  link!: ShareLinkView;
}

@InputType()
export class ShareLinkInput {
  @Field(() => ID, { nullable: true, description: 'One of your conversations (exactly one of conversationId, comparisonId).' })
  conversationId?: string | null;

  @Field(() => ID, { nullable: true, description: 'One of your comparisons.' })
  comparisonId?: string | null;

  @Field(() => Int, { nullable: true, description: 'Hours until the link stops working (1 to 8760); null: it does not expire.' })
  expiresInHours?: number | null;

  @Field(() => Boolean, {
    nullable: true,
    defaultValue: false,
    description: 'Only false: a link shows the conversation as it was when shared.',
  })
  includeLaterMessages?: boolean | null;
}

@ObjectType({ simpleResolvers: true })
export class SharedMessage {
  @Field(() => MessageRole)
  role!: MessageRole;

  @Field(() => String)
  content!: string;

  @Field(() => String, { nullable: true })
  model!: string | null;

  @Field(() => Date)
  createdAt!: Date;
}

@ObjectType({ simpleResolvers: true })
export class SharedResponse {
  @Field(() => String)
  label!: string;

  @Field(() => String, { nullable: true, description: 'null when the comparison was blind and not voted on when shared.' })
  model!: string | null;

  @Field(() => String)
  content!: string;

  @Field(() => ResponseStatus)
  status!: ResponseStatus;

  @Field(() => String, { description: 'MODEL or FUSED.' })
  kind!: string;
}

@ObjectType({ simpleResolvers: true })
export class SharedComparison {
  @Field(() => String)
  prompt!: string;

  @Field(() => Boolean)
  blind!: boolean;

  @Field(() => Boolean, { description: 'Revealed when shared: a vote after sharing shows nothing more through this link.' })
  revealed!: boolean;

  @Field(() => [SharedResponse])
  responses!: SharedResponse[];

  @Field(() => Date)
  createdAt!: Date;
}

@ObjectType({ simpleResolvers: true })
export class SharedView {
  @Field(() => String, { nullable: true })
  title!: string | null;

  @Field(() => [SharedMessage])
  messages!: SharedMessage[];

  @Field(() => [SharedComparison])
  comparisons!: SharedComparison[];

  @Field(() => Date)
  sharedAt!: Date;
}

@ObjectType({ simpleResolvers: true })
export class ShareLinkConnection extends Connection(ShareLink) {}

/** The list's page: the `SHARE_LINKS` read plan's default unless asked. */
@ArgsType()
class ShareLinkPageArgs extends PageArgsOf(SHARE_LINKS.page.default) {}

@Resolver()
export class ShareLinkResolver {
  @Query(() => SharedView, {
    nullable: true,
    description: 'A shared snapshot, without signing in. null for an unknown, expired or revoked token (never FORBIDDEN).',
  })
  @Extensions(SHARED_CACHE)
  shared(@Arg('token', () => String) token: string, @Ctx() ctx: Context): Promise<SharedViewData | null> {
    return readShared(ctx, token);
  }

  @Query(() => String, {
    nullable: true,
    description: 'The shared snapshot as a file (JSON or Markdown), exactly what shared(token) shows; null as shared answers null.',
  })
  @Extensions(SHARED_CACHE)
  async exportShared(
    @Arg('token', () => String) token: string,
    @Arg('format', () => ExportFormat, { nullable: true, defaultValue: ExportFormat.JSON }) format: ExportFormat | null,
    @Ctx() ctx: Context,
  ): Promise<string | null> {
    const document = documentFormat(format);
    const view = await readShared(ctx, token);
    return view && renderSharedView(view, document);
  }

  @Query(() => ShareLinkConnection, { description: 'Your share links, newest first, with their view counts.' })
  shareLinks(@Args(() => ShareLinkPageArgs) { first, after }: ShareLinkPageArgs, @Ctx() ctx: Context) {
    return ctx.services.shareLinks.list(ctx.em, requireUser(ctx.principal), first, after);
  }

  @Mutation(() => ShareLinkSecret, { description: 'NOT_FOUND for a conversation or comparison that is not yours or is deleted.' })
  @Extensions(tokenAccess(TokenScope.COMPARE))
  createShareLink(@Arg('input', () => ShareLinkInput) input: ShareLinkInput, @Ctx() ctx: Context) {
    if (input.includeLaterMessages) throw badInputLater();
    return ctx.services.shareLinks.create(ctx.em, requireUser(ctx.principal), input);
  }

  @Mutation(() => ShareLink, { description: 'Every instance stops serving the link within a second.' })
  @Extensions(tokenAccess(TokenScope.COMPARE))
  revokeShareLink(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    return ctx.services.shareLinks.revoke(ctx.em, requireUser(ctx.principal), id);
  }
}

function badInputLater() {
  return badInput('includeLaterMessages: only false is supported (a link shows the conversation as it was when shared)', 'input');
}
