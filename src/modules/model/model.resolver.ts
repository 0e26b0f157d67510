import { Arg, Ctx, Extensions, Field, Float, ID, Int, ObjectType, Query, Resolver } from 'type-graphql';
import { cacheHint } from '../../read-cache/cache-policy';
import type { Context } from '../common/context';
import { formatModelId, toProvider } from '../../llm/model-id';
import type { RegistryModel } from '../../llm/model-registry';
import { Provider } from '../api-key/api-key.entity';

@ObjectType('Model', {
  simpleResolvers: true,
  description: "A model id is 'provider:name', e.g. 'openai:gpt-4o' or 'anthropic:claude-sonnet-4-5'.",
})
export class ModelType {
  @Field(() => ID)
  id!: string;

  @Field(() => Provider)
  provider!: Provider;

  @Field(() => String, { description: "The provider's API model name." })
  name!: string;

  @Field(() => String, { description: 'Human-readable name; the API name for models the curated catalog does not know.' })
  displayName!: string;

  @Field(() => Int, { nullable: true, description: 'Context window in tokens; null when unknown.' })
  contextWindow!: number | null;

  @Field(() => Float, { nullable: true, description: 'USD per million prompt tokens; null when unknown.' })
  inputCostPerMTok!: number | null;

  @Field(() => Float, { nullable: true, description: 'USD per million completion tokens; null when unknown.' })
  outputCostPerMTok!: number | null;
}

/** Anonymous answers are the catalog, the same for everyone: HTTP caches may keep them for an hour. */
const PUBLIC_CATALOG_MAX_AGE_S = 3600;

@Resolver(() => ModelType)
export class ModelResolver {
  @Query(() => [ModelType], {
    description:
      'Anonymous: the curated catalog (publicly cacheable). Signed in: the catalog merged with what each of your `default` keys can use.',
  })
  // Signed in, the answer is per user: the response sends `private, no-cache` then.
  @Extensions(cacheHint({ publicMaxAge: PUBLIC_CATALOG_MAX_AGE_S }))
  async models(@Arg('provider', () => Provider, { nullable: true }) provider: Provider | null, @Ctx() ctx: Context): Promise<ModelType[]> {
    const models = await ctx.services.models.list(ctx.em, ctx.principal, provider);
    return models.map(toModelType);
  }
}

function toModelType(m: RegistryModel): ModelType {
  return {
    id: formatModelId(m.provider, m.name),
    provider: toProvider(m.provider),
    name: m.name,
    displayName: m.displayName,
    contextWindow: m.contextWindow,
    inputCostPerMTok: m.inputCostPerMTok,
    outputCostPerMTok: m.outputCostPerMTok,
  };
}
