/**
 * Look-ahead: what a list resolver's client asked for below it, so the list
 * can load the children in its own statement (one round trip instead of two)
 * and prime the children's DataLoader. Purely an optimisation: when the
 * answer is ambiguous (the child field asked twice with different arguments,
 * under @skip/@include, or not at all) the caller loads nothing extra and the
 * loaders do their usual work.
 */
import {
  type FieldNode,
  getArgumentValues,
  type GraphQLObjectType,
  type GraphQLResolveInfo,
  getNamedType,
  isObjectType,
  Kind,
  type SelectionSetNode,
} from 'graphql';

/**
 * The arguments of the field at `path` below the current field (e.g.
 * `['nodes', 'messages']`), when every selection of it agrees on them;
 * `undefined` otherwise.
 */
export function childFieldArgs(info: GraphQLResolveInfo, path: readonly string[]): Record<string, unknown> | undefined {
  let nodes: readonly FieldNode[] = info.fieldNodes;
  let parentType = getNamedType(info.returnType);
  for (const name of path) {
    if (!isObjectType(parentType)) return undefined;
    const next: FieldNode[] = [];
    for (const node of nodes) if (node.selectionSet && !collect(info, node.selectionSet, name, next)) return undefined;
    if (next.length === 0) return undefined;
    const field = (parentType as GraphQLObjectType).getFields()[name];
    if (!field) return undefined;
    if (name === path[path.length - 1]) {
      const args = next.map((node) => getArgumentValues(field, node, info.variableValues));
      const first = JSON.stringify(args[0]);
      return args.every((a) => JSON.stringify(a) === first) ? args[0] : undefined;
    }
    nodes = next;
    parentType = getNamedType(field.type);
  }
  return undefined;
}

/** Adds the selections of field `name` to `into`; false when a conditional or unknown shape makes the answer unsure. */
function collect(info: GraphQLResolveInfo, set: SelectionSetNode, name: string, into: FieldNode[]): boolean {
  for (const selection of set.selections) {
    if (selection.directives?.length) return false;
    if (selection.kind === Kind.FIELD) {
      if (selection.name.value === name) into.push(selection);
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      if (!collect(info, selection.selectionSet, name, into)) return false;
    } else {
      const fragment = info.fragments[selection.name.value];
      if (!fragment || !collect(info, fragment.selectionSet, name, into)) return false;
    }
  }
  return true;
}
