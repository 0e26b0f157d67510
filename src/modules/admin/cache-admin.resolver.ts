import { Arg, Ctx, Field, Mutation, ObjectType, Resolver, registerEnumType } from 'type-graphql';
import { requireAdmin } from '../../auth/principal';
import type { Context } from '../common/context';
import { CacheScope } from './cache-admin.service';

registerEnumType(CacheScope, {
  name: 'CacheScope',
  valuesConfig: {
    ALL: { description: 'Responses, model registry and persisted queries (never the per-user generation counters).' },
    RESPONSES: { description: 'The per-user resolver cache.' },
    MODEL_REGISTRY: { description: "The providers' cached model lists." },
    PERSISTED_QUERIES: { description: 'Registered APQ documents (the trusted-documents manifest is not affected).' },
  },
});

@ObjectType({ simpleResolvers: true })
export class FlushResult {
  @Field(() => CacheScope)
  scope!: CacheScope;

  @Field(() => Date)
  flushedAt!: Date;
}

@Resolver()
export class CacheAdminResolver {
  @Mutation(() => FlushResult, { description: 'ADMIN only. CACHE_UNAVAILABLE when the cache store is down.' })
  flushCaches(
    @Arg('scope', () => CacheScope, { nullable: true, defaultValue: CacheScope.ALL }) scope: CacheScope | null,
    @Ctx() ctx: Context,
  ): Promise<FlushResult> {
    const admin = requireAdmin(ctx.principal);
    return ctx.services.cacheAdmin.flush(admin, scope ?? CacheScope.ALL, ctx.logger);
  }
}
