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
import { type DocumentNode, type GraphQLSchema, printSchema } from 'graphql';
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
      if (!isCompiledQuery(result)) return result;
      query = result;
      byOperation.set(operationName ?? '', query);
    }
    return query.query(undefined, rc.context, rc.request.variables ?? {});
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
