/**
 * Every limit on what one GraphQL request may ask for, in one place, applied
 * the same way to `/graphql` (Apollo) and `/graphql/stream` (graphql-sse).
 * Each refusal happens before any resolver runs, costs work bounded by the
 * size of the document, and answers a stable code:
 *
 * | check                                  | when                 | how                                     | code                  |
 * |----------------------------------------|----------------------|-----------------------------------------|-----------------------|
 * | body size (`maxBodyBytes`)             | reading the body     | `http.ts` / `sse.ts`, HTTP 413          | BAD_USER_INPUT        |
 * | lexical tokens, comments (`maxTokens`) | parsing              | graphql-js `maxLexicalTokens`           | QUERY_TOO_COMPLEX     |
 * | validation work (overlapping fields, fragment expansion) | validation | graphql-js's own budgets  | QUERY_TOO_COMPLEX     |
 * | aliases (`maxAliases`)                 | validation           | graphql-armor max-aliases               | QUERY_TOO_COMPLEX     |
 * | directives (`maxDirectives`)           | validation           | graphql-armor max-directives            | QUERY_TOO_COMPLEX     |
 * | depth (`maxDepth`)                     | validation           | graphql-armor max-depth (memoised)      | QUERY_TOO_COMPLEX     |
 * | one provider-calling mutation field    | validation           | `documentLimitsRule` (`providerCalls`)  | QUERY_TOO_COMPLEX     |
 * | more than 10 validation errors         | validation           | graphql-js `maxErrors`                  | GRAPHQL_VALIDATION_FAILED |
 * | cost with variables (`maxCost`)        | operation resolved   | `operation-cost.ts`                     | QUERY_TOO_COMPLEX     |
 * | bytes a field may return, in the cost  | operation resolved   | `operation-cost.ts` (`byteWeights`)     | QUERY_TOO_COMPLEX     |
 * | bytes built (`maxResponseBytes`)       | execution            | `response-bytes.ts`, `http.ts`          | RESPONSE_TOO_LARGE    |
 * | NUL / unpaired surrogate in any string | operation resolved   | `input/text-input.ts`                   | BAD_USER_INPUT        |
 * | "Did you mean …" suggestions           | production           | graphql `hideSuggestions` + formatError | (message only)        |
 *
 * Why these numbers (all configurable, see README): 15 aliases and 2,000
 * tokens are well above what a screen needs (the benchmark's whole history
 * query — conversations, messages, comparisons, votes — is 67 tokens without
 * aliases) and far below what the abuse cases used (300–1,000 aliases, 26 KB
 * documents); a cost of 10,000 fields lets a page of 20
 * conversations with 50 messages each through (~5,000) but not
 * `conversations(first: 100) { nodes { messages(first: 100) … } }` (~20,000).
 * Depth is measured with fragments memoised: the old rule walked the expanded
 * tree, and 24 fragments that each spread the next twice took ~17 s.
 *
 * The validation-time limits all run when validation enters the Document, so
 * before any of graphql-js's own rules (which run per node). When one of
 * them refuses, validation is stopped there (graphql-js's own abort signal),
 * so a refused document never pays for, say, 300 × 300 overlapping-field
 * comparisons: the refusal costs one memoised walk of the document.
 */
import type { ApolloServerPlugin } from '@apollo/server';
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesRule } from '@escape.tech/graphql-armor-max-directives';
import {
  type DocumentNode,
  type GraphQLError,
  type GraphQLSchema,
  Kind,
  type OperationDefinitionNode,
  parse,
  type ParseOptions,
  type SelectionSetNode,
  specifiedRules,
  validate,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
import type { DocumentLimits } from '../config';
import type { GraphqlContext } from './context';
import { badInput } from '../errors';
import { findUnsafeText } from '../input/text-input';
import { QueryTooComplexError } from './format-error';
import { operationCost } from './operation-cost';

/** Unpaged lists (`responses`, `comparisons` of a conversation, `apiKeys`) are costed at this size. */
export const DEFAULT_LIST_SIZE = 10;

export interface DocumentGuardOptions {
  limits: DocumentLimits;
  production: boolean;
  /** Root mutation fields that call an LLM provider: at most one per operation. */
  providerCallingFields: readonly string[];
  /** `Type.field` → the most bytes it may return (`response-bytes.ts`): the cost rule weighs these fields by it. */
  byteWeights?: Readonly<Record<string, number>>;
}

export interface DocumentGuard {
  /** For Apollo's `parseOptions`. */
  parseOptions: ParseOptions;
  /** For Apollo's `validationRules` (graphql's specified rules run too). */
  validationRules: ValidationRule[];
  /** For Apollo's `validationOptions`: suggestions hidden in production, at most 10 errors. */
  validationOptions: { hideSuggestions: boolean; maxErrors: number };
  /** Runs `checkOperation` once Apollo has resolved the operation (before execution, cache hits included). */
  plugin: ApolloServerPlugin<GraphqlContext>;
  /** Parse with the token limit (graphql-sse). Throws the parser's GraphQLError. */
  parse(source: string): DocumentNode;
  /** All validation rules, specified ones included (graphql-sse). */
  validate(schema: GraphQLSchema, document: DocumentNode): readonly GraphQLError[];
  /** The checks that need variables: text inputs, then cost. Throws AppError / QueryTooComplexError. */
  checkOperation(
    schema: GraphQLSchema,
    document: DocumentNode,
    operationName: string | null | undefined,
    variables: Record<string, unknown> | undefined,
  ): void;
}

export function createDocumentGuard(opts: DocumentGuardOptions): DocumentGuard {
  const { limits } = opts;
  const validationRules: ValidationRule[] = [documentLimitsRule(limits, new Set(opts.providerCallingFields))];
  // graphql-js stops the lexer itself; comments are not tokens, so they get the same cap.
  const parseOptions: ParseOptions = { maxLexicalTokens: limits.maxTokens, maxComments: limits.maxTokens };
  const validationOptions = { hideSuggestions: opts.production, maxErrors: 10 };

  const checkOperation: DocumentGuard['checkOperation'] = (schema, document, operationName, variables) => {
    const unsafe = findUnsafeText(document, variables);
    if (unsafe) {
      throw badInput(
        `${unsafe === 'a string literal' ? 'A string literal' : `$${unsafe}`} contains a NUL character or an unpaired UTF-16 surrogate`,
        unsafe,
      );
    }
    const measured = operationCost(schema, document, operationName, variables, DEFAULT_LIST_SIZE, opts.byteWeights);
    if (measured && measured.cost > limits.maxCost) {
      throw new QueryTooComplexError(
        `Query cost ${Math.round(measured.cost)} exceeds the limit of ${limits.maxCost} ` +
          '(each field counts 1, and 1 more per 64 KB it may return, multiplied by the page sizes above it)',
      );
    }
  };

  return {
    parseOptions,
    validationRules,
    validationOptions,
    checkOperation,
    parse: (source) => parse(source, parseOptions),
    validate: (schema, document) => validate(schema, document, [...specifiedRules, ...validationRules], validationOptions),
    plugin: {
      async requestDidStart() {
        return {
          async didResolveOperation(rc) {
            try {
              checkOperation(rc.schema, rc.document, rc.operationName, rc.request.variables);
            } catch (error) {
              rc.response.http.status ??= 400;
              throw error;
            }
          },
        };
      },
    },
  };
}

/**
 * graphql-js stops `validate` when a rule throws this (its own work budgets
 * use it). Internal to graphql-js 16.15, so looked up defensively: without
 * it, refusals are still reported, only validation runs to the end.
 */
const VALIDATION_ABORTED: unknown = (() => {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('graphql/validation/validationAbortedError') as { validationAbortedError?: unknown }).validationAbortedError;
  } catch {
    return undefined;
  }
})();

type ArmorVisitor = { OperationDefinition?: { enter?: (this: unknown, node: OperationDefinitionNode) => void } };

/**
 * graphql-armor's aliases, directives and depth limits and the one-provider-
 * call limit, run for every operation as validation enters the Document.
 * graphql-armor reports through `onReject`; here that reports
 * QUERY_TOO_COMPLEX to the validation context (instead of throwing).
 */
export function documentLimitsRule(limits: DocumentLimits, providerCallingFields: ReadonlySet<string>): ValidationRule {
  return (context) => {
    let refused = false;
    const onReject = [
      (ctx: ValidationContext | null, error: GraphQLError) => {
        refused = true;
        ctx?.reportError(new QueryTooComplexError(error.message.replace(/^Syntax Error: /, '')));
      },
    ];
    const armor = { propagateOnRejection: false, onReject, exposeLimits: true };
    const visitors = [
      maxAliasesRule({ ...armor, n: limits.maxAliases })(context),
      maxDirectivesRule({ ...armor, n: limits.maxDirectives })(context),
      // flattenFragments: a fragment adds the depth of what it selects, not a level of its own (as before).
      maxDepthRule({ ...armor, n: limits.maxDepth, flattenFragments: true, ignoreIntrospection: true })(context),
    ] as unknown as ArmorVisitor[];
    return {
      Document(document) {
        for (const definition of document.definitions) {
          if (definition.kind !== Kind.OPERATION_DEFINITION) continue;
          for (const visitor of visitors) visitor.OperationDefinition?.enter?.call(visitor, definition);
          const calls = providerCalls(context, definition, providerCallingFields);
          if (calls.length > 1) {
            refused = true;
            context.reportError(
              new QueryTooComplexError(
                `An operation may call at most one model-calling field, found ${calls.length} ` +
                  `(${calls.join(', ')}): send them as separate requests`,
              ),
            );
          }
        }
        if (refused && VALIDATION_ABORTED) throw VALIDATION_ABORTED;
      },
    };
  };
}

/**
 * The root mutation fields of `operation` that call a provider, by response
 * key (a field repeated under one key runs once), through fragments and
 * inline fragments: 100 aliased `startComparison`s of 8 models were 800 paid
 * calls.
 */
function providerCalls(context: ValidationContext, operation: OperationDefinitionNode, fields: ReadonlySet<string>): string[] {
  if (operation.operation !== 'mutation') return [];
  const keys = new Set<string>();
  const seen = new Set<string>();
  const walk = (set: SelectionSetNode) => {
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        if (fields.has(selection.name.value)) keys.add(selection.alias?.value ?? selection.name.value);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        walk(selection.selectionSet);
      } else if (!seen.has(selection.name.value)) {
        seen.add(selection.name.value);
        const fragment = context.getFragment(selection.name.value);
        if (fragment) walk(fragment.selectionSet);
      }
    }
  };
  walk(operation.selectionSet);
  return [...keys];
}
