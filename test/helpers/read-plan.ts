/**
 * What the read-plan tests share: the compiled read's dependencies built
 * without an app (entity metadata from MikroORM without a connection, the
 * code-first schema), and a compile of one document.
 */
import 'reflect-metadata';
import { MikroORM } from '@mikro-orm/postgresql';
import { type DocumentNode, type GraphQLSchema, Kind, type OperationDefinitionNode, parse, validate } from 'graphql';
import { ENTITIES } from '../../mikro-orm.config';
import { createOrmOptions } from '../../src/db/orm';
import { CursorCodec } from '../../src/db/pagination';
import { PreparedStatements } from '../../src/db/prepared';
import { type CompiledRead, type CompiledReadDeps, compileRead } from '../../src/graphql/compiled-read';
import { getSchema } from '../../src/graphql/schema';

/** The production default of MAX_RESPONSE_BYTES (`config.ts`): root lists' SQL depends on it. */
export const DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

/** Metadata only: no connection is opened (`connect: false`). */
export async function metadataOrm(): Promise<MikroORM> {
  const options = createOrmOptions({
    clientUrl: 'postgres://nobody@127.0.0.1:1/none',
    pool: { min: 0, max: 1, acquireTimeoutMs: 1000, idleTimeoutMs: 1000 },
    entities: ENTITIES,
  });
  return (await MikroORM.init({ ...options, connect: false } as Parameters<typeof MikroORM.init>[0])) as unknown as MikroORM;
}

export async function compileDeps(orm: MikroORM, overrides: Partial<CompiledReadDeps> = {}): Promise<CompiledReadDeps> {
  const schema: GraphQLSchema = await getSchema();
  return {
    schema,
    em: orm.em,
    prepared: new PreparedStatements(orm.em, undefined),
    cursors: new CursorCodec('read-plan-test-secret'),
    maxResponseBytes: DEFAULT_MAX_RESPONSE_BYTES,
    checkOperation: () => undefined,
    ...overrides,
  };
}

/** Parses and validates `source` (throws on an invalid document) and compiles its one operation: null when not compiled. */
export function compile(deps: CompiledReadDeps, source: string): { read: CompiledRead | null; document: DocumentNode } {
  const document = parse(source);
  const errors = validate(deps.schema, document);
  if (errors.length) throw new Error(`invalid document ${source}: ${errors.map((e) => e.message).join('; ')}`);
  const operation = document.definitions.find((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION)!;
  return { read: compileRead(deps, document, operation), document };
}
