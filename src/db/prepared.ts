/**
 * Named prepared statements for the hottest reads (`graphql/compiled-read.ts`).
 *
 * `em.getConnection().execute()` inlines parameters into the SQL text, so
 * PostgreSQL parses and plans every statement on every request. For the
 * history page that planning (~0.6 ms for the conversations statement alone)
 * cost as much as executing it. A named statement is parsed once per pooled
 * connection, and after five executions PostgreSQL keeps a generic plan when
 * it is as good, so later requests only bind and execute.
 *
 * The connection is taken from the ORM's own pool (the same bounds, the same
 * `/health` stats) as a `'read'` connection: with read replicas
 * (`replicas.ts`) the request's route decides which pool, and a statement a
 * failing replica could not answer runs again on the primary. Every statement is reported to the query observer
 * like the ORM's (metrics, slow-query log, per-request SQL counts; with
 * `inlineParams` on, the listener gets the text with its values inlined, as
 * MikroORM does, so tests can EXPLAIN it).
 *
 * Bounded: each distinct text is one statement kept by PostgreSQL on every
 * connection that ran it, so only the first {@link MAX_NAMED} distinct texts
 * of the process get a name; later ones run as unnamed parameterised
 * statements (parsed and planned each time, as before). `DB_PREPARED_STATEMENTS=off`
 * runs them all unnamed: session state does not survive a transaction-pooling
 * PgBouncer older than 1.21.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import { createHash } from 'node:crypto';
import type { QueryObserver } from './query-observer';
import type { ReadRouter } from './replicas';
import { numberedPlaceholders } from './sql';

const MAX_NAMED = 200;

/** A statement written with `?` placeholders, ready to run with its parameters. */
export interface PreparedStatement {
  /** The text as written (`?` placeholders): what MikroORM would inline values into. */
  readonly source: string;
  /** The same text with `$1`, `$2`, … */
  readonly text: string;
  /** Undefined once {@link MAX_NAMED} names are taken: runs unnamed. */
  readonly name: string | undefined;
  /** How many parameters the text takes. */
  readonly params: number;
}

interface PgConnection {
  query(config: { name?: string; text: string; values: unknown[] }): Promise<{ rows: unknown[] }>;
  /** pg's record of the statements this connection has parsed (by name). */
  connection?: { parsedStatements?: Record<string, string> };
}

/** SQLSTATE invalid_sql_statement_name: the server no longer has a statement pg believes it parsed. */
const STATEMENT_GONE = '26000';
interface KnexClient {
  acquireConnection(): Promise<PgConnection>;
  releaseConnection(connection: PgConnection): Promise<void>;
}

export class PreparedStatements {
  /** The names given so far (at most {@link MAX_NAMED}). */
  private readonly names = new Set<string>();

  constructor(
    private readonly em: EntityManager,
    private readonly observer: QueryObserver | undefined,
    /** False (`DB_PREPARED_STATEMENTS=off`): every statement runs unnamed, e.g. behind a transaction-pooling PgBouncer. */
    private readonly named = true,
    /** With read replicas: which connections are replicas, and what to do when one fails. */
    private readonly router?: Pick<ReadRouter, 'replicaIndexOf' | 'retriesOnPrimary' | 'replicaFailed'>,
    /** `'write'`: statements that write, always on the primary (the comparison start). */
    private readonly connectionType: 'read' | 'write' = 'read',
  ) {}

  /**
   * Prepares `source`, whose only `?` characters are placeholders (the
   * callers build it from identifiers and constants, never from values).
   */
  prepare(source: string): PreparedStatement {
    const { text, count: n } = numberedPlaceholders(source);
    if (!this.named) return { source, text, name: undefined, params: n };
    let name: string | undefined = `llmselect_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    if (!this.names.has(name)) {
      if (this.names.size < MAX_NAMED) this.names.add(name);
      else name = undefined;
    }
    return { source, text, name, params: n };
  }

  async query<Row>(statement: PreparedStatement, params: unknown[]): Promise<Row[]> {
    if (params.length !== statement.params) throw new Error(`statement takes ${statement.params} parameters, got ${params.length}`);
    // The request's route (`replicas.ts`): a replica, or the primary (always, without replicas).
    const source = this.em.getConnection(this.connectionType);
    const started = performance.now();
    let failed = false;
    try {
      return (await this.runOn(source, statement, params).catch((error: unknown) => {
        const replica = this.router?.replicaIndexOf(source);
        if (replica === undefined || !this.router!.retriesOnPrimary(error)) throw error;
        this.router!.replicaFailed(replica, error);
        return this.runOn(this.em.getConnection('write'), statement, params);
      })) as Row[];
    } catch (error) {
      failed = true;
      // As MikroORM words a failed statement ("<sql> - <message>"): the error log shows the text (placeholders, no values).
      if (error instanceof Error && typeof (error as { severity?: unknown }).severity === 'string')
        error.message = `${statement.text} - ${error.message}`;
      throw error;
    } finally {
      this.report(statement, params, performance.now() - started, failed);
    }
  }

  private async runOn(source: { getKnex(): unknown }, statement: PreparedStatement, params: unknown[]): Promise<unknown[]> {
    const client = (source.getKnex() as { client: KnexClient }).client;
    let connection: PgConnection | undefined;
    try {
      connection = await client.acquireConnection();
      return await this.run(connection, statement, params);
    } finally {
      // The release may not replace the statement's own answer or error.
      if (connection) await client.releaseConnection(connection).catch(() => undefined);
    }
  }

  /**
   * Runs on `connection`; when the server has lost a named statement pg thinks
   * it parsed (`DISCARD ALL`, `DEALLOCATE`, a pooler that swapped the backend),
   * pg's record is dropped and the statement is parsed again, once.
   */
  private async run(connection: PgConnection, statement: PreparedStatement, params: unknown[]): Promise<unknown[]> {
    const config = { name: statement.name, text: statement.text, values: params };
    try {
      return (await connection.query(config)).rows;
    } catch (error) {
      const parsed = connection.connection?.parsedStatements;
      if (!statement.name || (error as { code?: string }).code !== STATEMENT_GONE || !parsed) throw error;
      delete parsed[statement.name];
      return (await connection.query(config)).rows;
    }
  }

  private report(statement: PreparedStatement, params: unknown[], tookMs: number, failed: boolean): void {
    if (!this.observer) return;
    try {
      const sql = this.observer.inlineParams ? this.em.getPlatform().formatQuery(statement.source, params as never[]) : statement.text;
      this.observer.observe(sql, tookMs, failed);
    } catch {
      this.observer.observe(statement.text, tookMs, failed);
    }
  }
}
