/**
 * Writes of one row (and a touch of its parent) without the unit of work's
 * implicit transaction: a flush wraps even one INSERT in BEGIN … COMMIT, three
 * round trips (five with an UPDATE of the parent) where one statement is atomic
 * on its own. The row's columns come from the ORM's own mapping (its query
 * builder), so nothing here restates an entity.
 *
 * The entity must be made with `em.create(…, { persist: false })`: it is not
 * managed, so no later flush writes it again.
 */
import type { EntityManager } from '@mikro-orm/postgresql';

/** INSERTs `entity`, then runs `thenSql` (e.g. an UPDATE of its parent, `?` placeholders) in the same statement. */
export async function insertThen(em: EntityManager, entity: object, thenSql: string, params: unknown[]): Promise<void> {
  const insert = em
    .createQueryBuilder(entity.constructor.name)
    .insert(entity as never)
    .getKnexQuery()
    .toSQL();
  await em.getConnection().execute(`with inserted as (${insert.sql}) ${thenSql}`, [...insert.bindings, ...params]);
}
