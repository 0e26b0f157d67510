/**
 * Lists are cursor-paged connections (`db/pagination.ts` makes the pages):
 *
 *   type XConnection { nodes: [X!]! pageInfo: PageInfo! totalCount: Int! }
 *
 * `Connection(X)` is the base class of every `XConnection` (type-graphql's
 * generic types: a function returning an abstract class); `PageInfo` and the
 * page arguments (`first`, `after`) are shared; `totalCountResolver` adds
 * `totalCount` to the connections that have one, computed only when selected.
 */
import { ArgsType, type ClassType, Ctx, Field, FieldResolver, Int, ObjectType, Resolver } from 'type-graphql';
import type { PageInfo } from '../../db/pagination';

@ObjectType('PageInfo', { simpleResolvers: true })
export class PageInfoType implements PageInfo {
  @Field(() => Boolean)
  hasNextPage!: boolean;

  @Field(() => String, { nullable: true })
  endCursor!: string | null;
}

/** The base of a connection of `node`s: `@ObjectType({ simpleResolvers: true }) class XConnection extends Connection(X) {}`. */
export function Connection<T extends object>(node: ClassType<T>) {
  // Never emitted itself: type-graphql 2 emits only the types reachable from the resolvers.
  @ObjectType({ simpleResolvers: true })
  abstract class ConnectionType {
    @Field(() => [node])
    nodes!: T[];

    @Field(() => PageInfoType)
    pageInfo!: PageInfoType;
  }
  return ConnectionType;
}

/** `first` (default `defaultFirst`, 1..100) and `after` (a previous page's `endCursor`). */
export function PageArgsOf(defaultFirst: number) {
  @ArgsType()
  class PageArgsType {
    @Field(() => Int, { nullable: true, defaultValue: defaultFirst })
    first?: number;

    @Field(() => String, { nullable: true })
    after?: string | null;
  }
  return PageArgsType;
}

/** The page arguments of the top-level lists (20 per page unless asked). */
@ArgsType()
export class PageArgs extends PageArgsOf(20) {}

/**
 * `totalCount` on `connection`: the whole list's size, for the signed-in viewer (UNAUTHENTICATED otherwise).
 * `C` is the resolvers' `Context` (not imported here: the services' result types extend `Connection`).
 */
export function totalCountResolver<C>(connection: ClassType, count: (ctx: C) => Promise<number>): ClassType {
  @Resolver(() => connection)
  class TotalCountResolver {
    @FieldResolver(() => Int)
    totalCount(@Ctx() ctx: C): Promise<number> {
      return count(ctx);
    }
  }
  return TotalCountResolver;
}
