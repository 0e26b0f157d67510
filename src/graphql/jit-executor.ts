/**
 * Runs operations with graphql-jit: each (document, operation) is compiled
 * once into a function that resolves and completes exactly the fields it
 * selects, instead of graphql-js walking the AST and re-deriving argument
 * values for every field of every row. Same schema, same resolvers, same
 * errors.
 *
 * Apollo Server 5 has no executor option; its gateway interface is the
 * supported way to supply one (a gateway that serves a fixed schema).
 * Compiled queries are kept in their document's entry of the document cache
 * (`document-cache.ts`), weighed with it against `DOCUMENT_CACHE_MB`, so they
 * live exactly as long as the document is kept; documents it does not keep
 * for compiling (anonymous ones) run with graphql-js.
 */
import type { GatewayExecutor, GatewayInterface } from '@apollo/server-gateway-interface';
import {
  type ExecutionArgs,
  type ExecutionResult,
  execute,
  GraphQLError,
  type GraphQLSchema,
  printSchema,
  subscribe,
  createSourceEventStream,
} from 'graphql';
import { type CompiledQuery, compileQuery, isCompiledQuery } from 'graphql-jit';
import { compiledWeight, type DocumentCache } from './document-cache';
import { LruMap } from '../lru-map';

export function jitGateway(schema: GraphQLSchema, documents: DocumentCache): GatewayInterface {
  const executor: GatewayExecutor = async (rc) => {
    const operationName = rc.request.operationName ?? undefined;
    let refused: ExecutionResult | undefined;
    const query = documents.compiled(rc.queryHash, operationName ?? '', () => {
      const result = compileQuery(schema, rc.document, operationName);
      if (isCompiledQuery(result)) return result;
      refused = result;
      return undefined;
    });
    if (refused) return withStandardErrors(refused);
    // Not kept (an anonymous document, or one the budget let go): graphql-js runs it, nothing is compiled.
    if (!query)
      return execute({
        schema,
        document: rc.document,
        contextValue: rc.context,
        variableValues: rc.request.variables ?? {},
        operationName,
      });
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

/**
 * `subscribe` for graphql-sse: graphql-js creates the source event stream (the
 * field's arguments, auth, errors), and each event is completed by code
 * compiled once per document (graphql-jit) instead of a graphql-js execution
 * per event. (graphql-jit's own `subscribe` hands the operation's variables to
 * the field's `subscribe` in place of its arguments, so it is not used.)
 * Compiled operations are kept per (query text, operation name) in an LRU
 * bounded by their estimated bytes (`maxBytes`, a share of `DOCUMENT_CACHE_MB`);
 * a call without a key (the caller keeps anonymous documents out) and
 * documents that do not compile take graphql-js's `subscribe` (same schema,
 * resolvers and errors).
 */
export function jitSubscribe(maxBytes: number): JitSubscribe {
  const compiled = new LruMap<string, CompiledQuery>(Number.MAX_SAFE_INTEGER, {
    maxWeight: maxBytes,
    weigh: (_query, key) => compiledWeight(key.length),
  });
  const run = async (args: ExecutionArgs, key: string | undefined) => {
    if (key === undefined) return subscribe(args);
    let query = compiled.get(key);
    if (!query) {
      const result = compileQuery(args.schema, args.document, args.operationName ?? undefined);
      if (!isCompiledQuery(result)) return subscribe(args);
      query = result;
      compiled.set(key, query);
    }
    const source = await createSourceEventStream(args);
    if (!isAsyncIterable(source)) return source;
    const complete = query;
    return mapResults(source[Symbol.asyncIterator](), async (event) =>
      withStandardErrors(await complete.query(event, args.contextValue, args.variableValues ?? {})),
    );
  };
  return Object.assign(run, { kept: () => ({ documents: compiled.size, bytes: compiled.totalWeight }) });
}

export interface JitSubscribe {
  (args: ExecutionArgs, key: string | undefined): Promise<AsyncIterable<ExecutionResult> | ExecutionResult>;
  /** Compiled documents kept and their estimated bytes. */
  kept(): { documents: number; bytes: number };
}

function isAsyncIterable<T>(value: unknown): value is AsyncIterable<T> {
  return typeof (value as AsyncIterable<T> | null)?.[Symbol.asyncIterator] === 'function';
}

/** The same iterator with each value passed through `map` (return and throw forwarded). */
function mapResults<T, R>(source: AsyncIterator<T>, map: (value: T) => Promise<R>): AsyncIterableIterator<R> {
  return {
    next: async () => {
      const item = await source.next();
      return item.done ? { done: true, value: undefined } : { done: false, value: await map(item.value) };
    },
    return: async () => {
      await source.return?.();
      return { done: true, value: undefined };
    },
    throw: async (error?: unknown) => {
      await source.throw?.(error);
      return { done: true, value: undefined };
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
