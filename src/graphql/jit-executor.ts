/**
 * Runs operations with graphql-jit: each (document, operation) is compiled
 * once into a function that resolves and completes exactly the fields it
 * selects, instead of graphql-js walking the AST and re-deriving argument
 * values for every field of every row. Same schema, same resolvers, same
 * errors.
 *
 * Apollo Server 5 has no executor option; its gateway interface is the
 * supported way to supply one (a gateway that serves a fixed schema).
 * Compiled queries are kept per parsed document (Apollo's document store
 * keeps one DocumentNode per query string), so they live exactly as long as
 * Apollo keeps the document.
 */
import type { GatewayExecutor, GatewayInterface } from '@apollo/server-gateway-interface';
import { type DocumentNode, type ExecutionResult, GraphQLError, type GraphQLSchema, printSchema } from 'graphql';
import { type CompiledQuery, compileQuery, isCompiledQuery } from 'graphql-jit';

export function jitGateway(schema: GraphQLSchema): GatewayInterface {
  const compiled = new WeakMap<DocumentNode, Map<string, CompiledQuery>>();
  const executor: GatewayExecutor = async (rc) => {
    const operationName = rc.request.operationName ?? undefined;
    let byOperation = compiled.get(rc.document);
    if (!byOperation) compiled.set(rc.document, (byOperation = new Map()));
    let query = byOperation.get(operationName ?? '');
    if (!query) {
      const result = compileQuery(schema, rc.document, operationName);
      if (!isCompiledQuery(result)) return withStandardErrors(result);
      query = result;
      byOperation.set(operationName ?? '', query);
    }
    return withStandardErrors(await query.query(undefined, rc.context, rc.request.variables ?? {}));
  };
  return {
    load: async () => ({ executor }),
    onSchemaLoadOrUpdate(callback) {
      callback({ apiSchema: schema, coreSupergraphSdl: printSchema(schema) });
      return () => undefined;
    },
    stop: async () => undefined,
  };
}

/**
 * graphql-jit's errors leave `extensions` undefined when the thrown error had
 * none; Apollo and graphql-js expect an object. Rebuilt as graphql-js errors
 * with the same message, path, locations and original error; variables it
 * refused are BAD_USER_INPUT, as Apollo reports them for graphql-js.
 */
function withStandardErrors<T extends ExecutionResult>(result: T): T {
  if (!result.errors?.some((e) => !e.extensions)) return result;
  // No `data` at all: the variables were refused before execution (as graphql-js, Apollo calls that BAD_USER_INPUT).
  const extensions = 'data' in result ? undefined : { code: 'BAD_USER_INPUT' };
  const errors = result.errors.map((e) => {
    if (e.extensions) return e;
    const error = new GraphQLError(e.message, { path: e.path, originalError: e.originalError ?? undefined, extensions });
    if (e.locations) Object.defineProperty(error, 'locations', { value: e.locations, enumerable: true });
    return error;
  });
  return { ...result, errors };
}
