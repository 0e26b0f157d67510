/**
 * The byte budget of one response (`MAX_RESPONSE_BYTES`).
 *
 * Two halves:
 * - up front, the cost rule (`operation-cost.ts`) weighs each field by what
 *   it can return: {@link byteWeightedFields} lists the fields whose value
 *   may be large (an answer's or a message's text, up to
 *   `LLM_MAX_OUTPUT_BYTES`; an export, up to `MAX_RESPONSE_BYTES`), so eight
 *   aliases of `comparisons(first: 100) { nodes { responses { content } } }`
 *   are refused before anything runs;
 * - while the response is built, every large value is counted as its field
 *   resolves (the wrapped resolvers of those fields), and an export reserves
 *   its size before it loads a row. Past the budget the request stops
 *   growing: the field fails, and the response is replaced by one
 *   `RESPONSE_TOO_LARGE` error (`extensions.maxBytes`), so the body is never
 *   built, let alone serialised, beyond the limit. Compiled reads (SQL-built
 *   JSON) and the last check before any body is sent compare its length
 *   with the same limit.
 */
import { defaultFieldResolver, type GraphQLFieldResolver, type GraphQLFormattedError, type GraphQLSchema, isObjectType } from 'graphql';
import { AppError } from '../errors';

/** The response bytes counted so far for one request. */
export class ResponseBytes {
  used = 0;
  exceeded = false;

  constructor(readonly maxBytes: number) {}

  /** Counts `bytes` more; throws RESPONSE_TOO_LARGE once the total passes the limit. */
  charge(bytes: number): void {
    this.used += bytes;
    if (this.used > this.maxBytes) {
      this.exceeded = true;
      throw responseTooLarge(this.maxBytes);
    }
  }
}

export function responseTooLarge(maxBytes: number): AppError {
  return new AppError(
    'RESPONSE_TOO_LARGE',
    `The response would be larger than ${maxBytes} bytes: ask for fewer items (a smaller first, fewer aliases) or fewer large fields`,
    { maxBytes },
  );
}

/** The whole body of a response cut off for its size. */
export function responseTooLargeBody(maxBytes: number): string {
  const error: GraphQLFormattedError = {
    message: responseTooLarge(maxBytes).message,
    extensions: { code: 'RESPONSE_TOO_LARGE', maxBytes },
  };
  return `${JSON.stringify({ errors: [error] })}\n`;
}

/** `Type.field` → the most bytes its value may hold. */
export function byteWeightedFields(limits: { maxOutputBytes: number; maxResponseBytes: number }): Record<string, number> {
  return {
    'ComparisonResponse.content': limits.maxOutputBytes,
    'Message.content': limits.maxOutputBytes,
    'Query.exportConversation': limits.maxResponseBytes,
  };
}

const COUNTED = Symbol('countsResponseBytes');
const PLAIN = Symbol('readsTheRow');

/** True for a resolver wrapped here around the default one: it reads the row as a field without resolver does, and counts the bytes. */
export function isByteCountingResolver(resolve: unknown): boolean {
  return typeof resolve === 'function' && (resolve as { [PLAIN]?: boolean })[PLAIN] === true;
}

/**
 * Wraps the resolvers of the string fields in `fields` so their values are
 * counted against the request's {@link ResponseBytes} (when it has one: event
 * streams do not). Idempotent (a schema may be shared by apps in one process).
 */
export function countResponseBytes(schema: GraphQLSchema, fields: Iterable<string>): void {
  for (const coordinate of fields) {
    const [typeName, fieldName] = coordinate.split('.') as [string, string];
    const type = schema.getType(typeName);
    const field = type && isObjectType(type) ? type.getFields()[fieldName] : undefined;
    if (!field || (field.resolve as { [COUNTED]?: boolean } | undefined)?.[COUNTED]) continue;
    const inner: GraphQLFieldResolver<unknown, unknown> = field.resolve ?? defaultFieldResolver;
    const plain = field.resolve === undefined;
    const counted: GraphQLFieldResolver<unknown, { responseBytes?: ResponseBytes }> = (source, args, context, info) => {
      const value = inner(source, args, context, info);
      const budget = context?.responseBytes;
      if (!budget) return value;
      if (budget.exceeded) throw responseTooLarge(budget.maxBytes);
      if (typeof value === 'string') {
        budget.charge(value.length);
        return value;
      }
      if (value && typeof (value as Promise<unknown>).then === 'function') {
        return (value as Promise<unknown>).then((v) => {
          if (typeof v === 'string') budget.charge(v.length);
          return v;
        });
      }
      return value;
    };
    Object.defineProperty(counted, COUNTED, { value: true });
    Object.defineProperty(counted, PLAIN, { value: plain });
    field.resolve = counted;
  }
}
