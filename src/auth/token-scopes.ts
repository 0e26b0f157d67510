/**
 * What a personal API token may do: one declaration per root field, one
 * decision per document, one check for every path that answers.
 *
 * A root field declares the scope a personal token needs to run it with
 * type-graphql's `@Extensions`:
 *
 *   @Extensions(tokenAccess(TokenScope.COMPARE))   a token with COMPARE may run it
 *   @Extensions(tokenAccess('JWT_ONLY'))           never with a personal token (token, key and budget management)
 *
 * Undeclared root fields take their operation type's default, chosen to fail
 * closed where it matters: a query or a subscription needs READ (they only
 * read), a mutation needs a JWT. A JWT (a signed-in session) is never limited.
 *
 * | scope     | what it allows                                                                  |
 * | --------- | ------------------------------------------------------------------------------- |
 * | `READ`    | every query and subscription except `apiTokens`                                 |
 * | `COMPARE` | comparing and chatting: createConversation, start/run/retry/cancelComparison,   |
 * |           | startArenaBattle, sendMessage, judgeComparison, vote                            |
 * | `EVAL`    | the eval mutations (prompt sets, eval runs), declared by their resolvers         |
 * | JWT only  | every other mutation (tokens, provider keys, budgets, admin, renaming and        |
 * |           | deleting conversations) and the `apiTokens` query                               |
 *
 * Scopes do not imply one another: a CI job that starts comparisons and reads
 * their results asks for `READ` and `COMPARE`.
 *
 * Where it is checked, per document (memoised by {@link TokenAccessPolicy}):
 * Apollo's `didResolveOperation` (`graphql/plugins/token-scopes.ts`, before
 * the read cache's lookup inside Apollo), the SSE route before a stream opens
 * (`graphql/sse.ts`), and the `/graphql` edge, which answers a personal token
 * from the read cache or a compiled read only for a document already checked
 * and allowed (`graphql/http.ts`).
 */
import {
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLSchema,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { AppError } from '../errors';
import { LruMap } from '../lru-map';
import { type Principal, TokenScope } from './principal';

export { TokenScope };

/** What a personal token needs for a root field: a scope, or never (`JWT_ONLY`). */
export type TokenAccess = TokenScope | 'JWT_ONLY';

const EXTENSION = 'tokenAccess';

/** `@Extensions(tokenAccess(...))` on a root field. */
export function tokenAccess(access: TokenAccess): Record<string, TokenAccess> {
  return { [EXTENSION]: access };
}

const DEFAULTS: Record<OperationDefinitionNode['operation'], TokenAccess> = {
  query: TokenScope.READ,
  subscription: TokenScope.READ,
  mutation: 'JWT_ONLY',
};

/** Each root field of the operation (through fragments, whatever their directives) and what it needs. */
export function operationAccess(
  schema: GraphQLSchema,
  document: DocumentNode,
  operation: OperationDefinitionNode,
): Map<string, TokenAccess> {
  const root = schema.getRootType(operation.operation);
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const needs = new Map<string, TokenAccess>();
  const seen = new Set<string>();
  const visit = (selections: SelectionSetNode) => {
    for (const selection of selections.selections) {
      if (selection.kind === Kind.FIELD) {
        const name = selection.name.value;
        if (name.startsWith('__')) continue; // __typename; introspection is READ by the default below
        const declared = root?.getFields()[name]?.extensions?.[EXTENSION] as TokenAccess | undefined;
        needs.set(name, declared ?? DEFAULTS[operation.operation]);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        visit(selection.selectionSet);
      } else {
        const name = selection.name.value;
        const fragment = fragments.get(name);
        if (fragment && !seen.has(name)) {
          seen.add(name);
          visit(fragment.selectionSet);
        }
      }
    }
  };
  visit(operation.selectionSet);
  // Introspection alone (`__schema`, `__type`) reads the schema: READ.
  if (needs.size === 0) needs.set('__schema', TokenScope.READ);
  return needs;
}

/** The first root field the principal's personal token may not run, or undefined when it may run them all (a JWT may). */
export function refusedField(
  principal: Principal | null,
  needs: ReadonlyMap<string, TokenAccess>,
): { field: string; access: TokenAccess } | undefined {
  const token = principal?.token;
  if (!token) return undefined;
  for (const [field, access] of needs) if (access === 'JWT_ONLY' || !token.scopes.includes(access)) return { field, access };
  return undefined;
}

/** FORBIDDEN (HTTP 403) naming the field and what it needs; never the token. */
export function scopeError(refused: { field: string; access: TokenAccess }): AppError {
  const message =
    refused.access === 'JWT_ONLY'
      ? `\`${refused.field}\` needs a signed-in session (a JWT), not a personal API token`
      : `\`${refused.field}\` needs a personal API token with the ${refused.access} scope`;
  return new AppError('FORBIDDEN', message, { requiredScope: refused.access, http: { status: 403 } });
}

/** Documents (× operation names) whose needs are remembered. */
const ENTRIES = 2_000;

/** The needs of each (document hash, operation name), computed once; what the edge asks before answering a personal token. */
export class TokenAccessPolicy {
  private readonly needs = new LruMap<string, Map<string, TokenAccess>>(ENTRIES);

  constructor(private readonly schema: GraphQLSchema) {}

  /** Throws FORBIDDEN when the principal's token may not run the operation; remembers the document's needs. */
  check(principal: Principal | null, documentHash: string | undefined, document: DocumentNode, operation: OperationDefinitionNode): void {
    if (!principal?.token) return;
    const key = documentHash ? keyOf(documentHash, operation.name?.value ?? null) : undefined;
    let needs = key ? this.needs.get(key) : undefined;
    if (!needs) {
      needs = operationAccess(this.schema, document, operation);
      if (key) this.needs.set(key, needs);
    }
    const refused = refusedField(principal, needs);
    if (refused) throw scopeError(refused);
  }

  /**
   * Whether the `/graphql` edge may answer this request without Apollo: always
   * for a JWT or anonymous caller; for a personal token only when the document
   * was checked already (through Apollo) and its token may run it.
   */
  allowsAtEdge(principal: Principal | null, documentHash: string, operationName: string | null): boolean {
    if (!principal?.token) return true;
    const needs = this.needs.get(keyOf(documentHash, operationName));
    return needs !== undefined && refusedField(principal, needs) === undefined;
  }
}

function keyOf(documentHash: string, operationName: string | null): string {
  return operationName ? `${documentHash}:${operationName}` : documentHash;
}
