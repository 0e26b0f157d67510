/**
 * Reads are plain, writes are entities.
 *
 * GraphQL read paths (lists, pages, loaders) select rows with raw SQL through
 * the ORM's connection (so every statement is still observed and counted) and
 * map each row once to a plain object: no identity map, no unit of work, no
 * change-set snapshot. Measured: hydrating the 200 messages of one history
 * page through `em.map` / `em.find` cost more CPU than all of PostgreSQL's
 * work for the request.
 *
 * The select list comes from the entity's MikroORM metadata, so an entity is
 * still the one definition of its table:
 *  - scalar columns keep their property name (`created_at AS "createdAt"`);
 *  - a many-to-one relation becomes its foreign key, `<property>Id`
 *    (`conversation_id AS "conversationId"`); entities expose the same name as
 *    a getter, so a resolver reads `conversationId` from either shape;
 *  - timestamps are read as epoch milliseconds (PostgreSQL does the
 *    formatting work once) and become `Date`s;
 *  - lazy properties (the password hash) are never selected.
 */
import { type EntityMetadata, ReferenceKind } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';

/** A plain row of entity `T`: its own columns, and `<relation>Id` instead of each many-to-one reference. */
export interface PlainShape<T> {
  /** `alias.col AS "prop", …` for every column the plain view carries. */
  columns(alias: string): string;
  /** `json_build_object(...)` of the same plain view, for rows embedded in another statement (see {@link embeddedRows}). */
  json(alias: string): string;
  /** Converts one raw row (from {@link PlainShape.columns}) in place and returns it. */
  map(row: Record<string, unknown>): T;
  /** `insert into <table> (<every plain column>) values (?, …)`: one row, written outside the unit of work. */
  insertSql: string;
  /** The parameters of {@link PlainShape.insertSql} for a plain row (a column it lacks is null). */
  insertParams(row: T): unknown[];
}

const shapes = new Map<string, PlainShape<unknown>>();

export function plainShape<T>(em: EntityManager, entity: { name: string }): PlainShape<T> {
  let shape = shapes.get(entity.name);
  if (!shape) {
    shape = buildShape(em.getMetadata().get(entity.name));
    shapes.set(entity.name, shape);
  }
  return shape as PlainShape<T>;
}

function buildShape(meta: EntityMetadata): PlainShape<unknown> {
  const parts: Array<{ column: string; as: string; date: boolean }> = [];
  for (const prop of meta.props) {
    if (prop.persist === false || prop.lazy || prop.formula) continue;
    if (prop.kind === ReferenceKind.SCALAR) {
      const date = prop.type === 'Date' || /^timestamp/.test(prop.columnTypes?.[0] ?? '');
      parts.push({ column: prop.fieldNames[0]!, as: prop.name, date });
    } else if (prop.kind === ReferenceKind.MANY_TO_ONE && prop.fieldNames.length === 1) {
      parts.push({ column: prop.fieldNames[0]!, as: `${prop.name}Id`, date: false });
    }
  }
  const dates = parts.filter((p) => p.date).map((p) => p.as);
  return {
    insertSql: `insert into ${meta.tableName} (${parts.map((p) => p.column).join(', ')}) values (${parts.map(() => '?').join(', ')})`,
    insertParams: (row) => parts.map((p) => (row as Record<string, unknown>)[p.as] ?? null),
    json: (alias) =>
      `json_build_object(${parts
        .map((p) => `'${p.as}', ${p.date ? `(extract(epoch from ${alias}.${p.column}) * 1000)::float8` : `${alias}.${p.column}`}`)
        .join(', ')})`,
    columns: (alias) =>
      parts
        .map((p) =>
          p.date ? `(extract(epoch from ${alias}.${p.column}) * 1000)::float8 as "${p.as}"` : `${alias}.${p.column} as "${p.as}"`,
        )
        .join(', '),
    map(row) {
      for (const name of dates) {
        const ms = row[name];
        if (ms !== null && ms !== undefined) row[name] = new Date(ms as number);
      }
      return row;
    },
  };
}

/**
 * `select <plain columns> from <entity's table> <alias> where <where>`: the
 * one-statement plain read the services use (`where` may end in `order by`).
 */
export async function selectPlain<T>(
  em: EntityManager,
  entity: { name: string },
  alias: string,
  where: string,
  params: unknown[],
): Promise<T[]> {
  const shape = plainShape<T>(em, entity);
  const table = em.getMetadata().get(entity.name).tableName;
  const rows: Array<Record<string, unknown>> = await em
    .getConnection()
    .execute(`select ${shape.columns(alias)} from ${table} ${alias} where ${where}`, params);
  return rows.map(shape.map);
}

/**
 * A column that embeds child rows in the parent's statement, for a parent
 * list that already knows which children its client asked for (look-ahead):
 * `(select json_agg(<plain child> order by …) from (<child query>) x) as "<as>"`.
 * `read` turns one parent row's value into plain children and removes it from the row.
 */
export interface EmbeddedRows<T> {
  column: { sql: string; params: unknown[] };
  read(parent: Record<string, unknown>): T[];
}

export function embeddedRows<T>(
  em: EntityManager,
  entity: { name: string },
  opts: { as: string; childQuery: string; orderBy: string; params: unknown[] },
): EmbeddedRows<T> {
  const shape = plainShape<T>(em, entity);
  return {
    column: {
      sql:
        `(select coalesce(json_agg(${shape.json('x')} order by ${opts.orderBy}), '[]'::json) ` +
        `from (${opts.childQuery}) x) as "${opts.as}"`,
      params: opts.params,
    },
    read(parent) {
      const rows = (parent[opts.as] ?? []) as Array<Record<string, unknown>>;
      delete parent[opts.as];
      return rows.map(shape.map);
    },
  };
}
