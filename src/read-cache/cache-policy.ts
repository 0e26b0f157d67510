/**
 * Cache policy is declared on the schema and decided once per document.
 *
 * A root field says how it may be cached with type-graphql's `@Extensions`:
 *
 *   @Extensions(cacheHint({ perUser: true }))                          read cache, keyed by user
 *   @Extensions(cacheHint({ perUser: true, onlyIf: { scope: 'MINE' } })) only for these argument values
 *   @Extensions(cacheHint({ publicMaxAge: 3600 }))                      anonymous answers are public for an hour
 *   @Extensions(cacheHint({ publicMaxAge: 5, publicEntry: { … } }))      …and anonymous answers are stored, keyed by an argument
 *
 * `operationPolicy` reads those hints for one operation of a validated
 * document (root fields only: every field below a root field is data of that
 * root field), so nothing wraps or instruments individual fields at request
 * time. The result is memoised per document (see `response-cache.ts`).
 */
import {
  type FieldNode,
  type GraphQLSchema,
  Kind,
  type OperationDefinitionNode,
  type OperationTypeNode,
  valueFromASTUntyped,
} from 'graphql';

export interface CacheHint {
  /** The read cache may store this field's answer, keyed by the viewer (and their generation). */
  perUser?: boolean;
  /** …but only when these arguments have exactly these values. */
  onlyIf?: Record<string, unknown>;
  /** Anonymous answers may be cached by HTTP caches for this many seconds. */
  publicMaxAge?: number;
  /**
   * Anonymous answers may be stored in the read cache under a scope that the
   * value of one argument names (a share link's token: `share:<sha256>`), at
   * that scope's generation, for `ttlMs`. `scope` returns undefined for a value
   * that must not be stored. Every root field of an operation must name the
   * same scope for it to be stored.
   */
  publicEntry?: PublicEntryHint;
}

export interface PublicEntryHint {
  argument: string;
  scope(value: unknown): string | undefined;
  ttlMs: number;
}

/** Where an anonymous answer is stored: its scope (whose generation versions it) and for how long. */
export interface PublicEntry {
  scope: string;
  ttlMs: number;
}

const EXTENSION = 'cacheHint';

/** `@Extensions(cacheHint({...}))` on a root field. */
export function cacheHint(hint: CacheHint): Record<string, CacheHint> {
  return { [EXTENSION]: hint };
}

export interface OperationPolicy {
  readonly type: OperationTypeNode;
  /** Whether the per-user read cache may answer and store this operation with these variables. */
  cacheable(variables: Record<string, unknown>): boolean;
  /** Seconds an anonymous answer may be cached publicly; 0 for none. */
  readonly publicMaxAge: number;
  /** Where an anonymous answer with these variables is stored in the read cache; undefined: it is not. */
  publicEntry(variables: Record<string, unknown>): PublicEntry | undefined;
}

const NEVER = () => false;
const NOWHERE = () => undefined;

export function operationPolicy(schema: GraphQLSchema, operation: OperationDefinitionNode): OperationPolicy {
  const type = operation.operation;
  const root = schema.getRootType(type);
  if (type !== 'query' || !root) return { type, cacheable: NEVER, publicMaxAge: 0, publicEntry: NOWHERE };

  const conditions: Array<{ field: FieldNode; onlyIf: Record<string, unknown> }> = [];
  let perUser = true;
  let publicMaxAge = Infinity;
  const entries: Array<{ field: FieldNode; hint: PublicEntryHint }> = [];
  let everyPublicEntry = true;
  for (const selection of operation.selectionSet.selections) {
    // Fragments and directives at the root are legal but rare: not worth a cache decision.
    if (selection.kind !== Kind.FIELD || selection.directives?.length) {
      perUser = false;
      publicMaxAge = 0;
      everyPublicEntry = false;
      continue;
    }
    if (selection.name.value === '__typename') continue;
    const hint = (root.getFields()[selection.name.value]?.extensions?.[EXTENSION] ?? {}) as CacheHint;
    if (!hint.perUser) perUser = false;
    if (hint.onlyIf) conditions.push({ field: selection, onlyIf: hint.onlyIf });
    publicMaxAge = Math.min(publicMaxAge, hint.publicMaxAge ?? 0);
    if (hint.publicEntry) entries.push({ field: selection, hint: hint.publicEntry });
    else everyPublicEntry = false;
  }
  const cacheable = !perUser
    ? NEVER
    : conditions.length === 0
      ? () => true
      : (variables: Record<string, unknown>) => conditions.every(({ field, onlyIf }) => argumentsMatch(field, onlyIf, variables));
  const publicEntry =
    everyPublicEntry && entries.length > 0 && Number.isFinite(publicMaxAge) && publicMaxAge > 0
      ? (variables: Record<string, unknown>) => samePublicEntry(entries, variables)
      : NOWHERE;
  return { type, cacheable, publicMaxAge: Number.isFinite(publicMaxAge) ? publicMaxAge : 0, publicEntry };
}

/** The one scope every root field names with these variables (and the shortest ttl), or undefined. */
function samePublicEntry(entries: Array<{ field: FieldNode; hint: PublicEntryHint }>, variables: Record<string, unknown>) {
  let found: PublicEntry | undefined;
  for (const { field, hint } of entries) {
    const argument = field.arguments?.find((a) => a.name.value === hint.argument);
    const scope = argument ? hint.scope(valueFromASTUntyped(argument.value, variables)) : undefined;
    if (scope === undefined || (found && found.scope !== scope)) return undefined;
    found = { scope, ttlMs: Math.min(found?.ttlMs ?? Infinity, hint.ttlMs) };
  }
  return found;
}

function argumentsMatch(field: FieldNode, expected: Record<string, unknown>, variables: Record<string, unknown>): boolean {
  return Object.entries(expected).every(([name, value]) => {
    const argument = field.arguments?.find((a) => a.name.value === name);
    return !!argument && valueFromASTUntyped(argument.value, variables) === value;
  });
}
