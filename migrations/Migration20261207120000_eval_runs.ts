import { Migration } from '@mikro-orm/migrations';

/**
 * Eval runs (issue 18, items 3–6): a run of a prompt set against 1–8 models,
 * its cells (item × model × repeat, each one pg-boss job) and its pairwise
 * judge verdicts.
 *
 * - A run belongs to its prompt set: deleting the set deletes its runs, their
 *   cells and verdicts (FK cascade), and the run's spend reservation with them
 *   (`spend_reservations.eval_run_id`, cascade). A cell job that arrives for a
 *   deleted cell finds no row and is acknowledged; an in-flight call's result
 *   finds no row to update and is dropped (its cost was never recorded).
 * - A cell snapshots its item (position, prompt, system, reference, effective
 *   assertions) when the run starts: editing or deleting items later changes
 *   no run. `item_id` is therefore not a foreign key.
 * - `(run_id, item_id, model, repeat)` is unique, and `idempotency_key` (sent
 *   to the provider as `Idempotency-Key`) is derived from it.
 * - pg-boss keeps its own schema (`pgboss`), installed by pg-boss at start.
 */
export class Migration20261207120000_eval_runs extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table "eval_runs" (
      "id" uuid not null, "created_at" timestamptz(3) not null,
      "owner_id" uuid not null, "prompt_set_id" uuid not null, "api_token_id" uuid null,
      "models" text[] not null, "judge_model" text null, "repeats" int not null, "temperature" float8 not null,
      "max_output_tokens" int null, "baseline_run_id" uuid null, "reuse_answers" boolean not null default false,
      "status" text not null,
      "started_at" timestamptz(3) null, "finished_at" timestamptz(3) null,
      "cells_total" int not null default 0, "cells_done" int not null default 0, "cells_failed" int not null default 0,
      "judge_calls_total" int not null default 0, "judge_calls_done" int not null default 0,
      "spent_usd" float8 not null default 0,
      constraint "eval_runs_pkey" primary key ("id"));`);
    this.addSql(`create index "eval_runs_owner_created_idx" on "eval_runs" ("owner_id", "created_at" desc, "id" desc);`);
    this.addSql(`create index "eval_runs_set_created_idx" on "eval_runs" ("prompt_set_id", "created_at" desc, "id" desc);`);
    this.addSql(
      `alter table "eval_runs" add constraint "eval_runs_owner_id_foreign" foreign key ("owner_id") references "users" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "eval_runs" add constraint "eval_runs_prompt_set_id_foreign" foreign key ("prompt_set_id") references "prompt_sets" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "eval_runs" add constraint "eval_runs_baseline_run_id_foreign" foreign key ("baseline_run_id") references "eval_runs" ("id") on update cascade on delete set null;`,
    );

    this.addSql(`create table "eval_cells" (
      "id" uuid not null, "created_at" timestamptz(3) not null,
      "run_id" uuid not null, "owner_id" uuid not null, "item_id" uuid not null,
      "position" int not null, "prompt" text not null, "system" text null, "reference" text null, "assertions" jsonb not null,
      "model" text not null, "repeat" int not null,
      "status" text not null,
      "content" text null, "latency_ms" int null, "ttft_ms" int null, "input_tokens" int null, "output_tokens" int null,
      "cost_usd" float8 null, "judge_cost_usd" float8 null, "reused" boolean not null default false, "passed" boolean null,
      "assertion_results" jsonb null, "error" text null, "attempts" int not null default 0,
      "idempotency_key" text not null, "reuse_key" text null,
      "lease_owner" text null, "heartbeat_at" timestamptz(3) null,
      "started_at" timestamptz(3) null, "finished_at" timestamptz(3) null,
      constraint "eval_cells_pkey" primary key ("id"));`);
    this.addSql(`alter table "eval_cells" add constraint "eval_cells_cell_key" unique ("run_id", "item_id", "model", "repeat");`);
    this.addSql(`alter table "eval_cells" add constraint "eval_cells_idempotency_key_key" unique ("idempotency_key");`);
    this.addSql(`create index "eval_cells_page_idx" on "eval_cells" ("run_id", "model", "position", "repeat", "id");`);
    this.addSql(
      `create index "eval_cells_failed_idx" on "eval_cells" ("run_id", "model", "position", "repeat", "id") where "status" = 'FAILED';`,
    );
    this.addSql(`create index "eval_cells_running_idx" on "eval_cells" ("owner_id", "heartbeat_at") where "status" = 'RUNNING';`);
    this.addSql(
      `create index "eval_cells_reuse_idx" on "eval_cells" ("owner_id", "reuse_key") where "status" = 'COMPLETED' and "reuse_key" is not null;`,
    );
    this.addSql(
      `create index "eval_cells_spend_idx" on "eval_cells" ("owner_id", "finished_at") where "cost_usd" is not null or "judge_cost_usd" is not null;`,
    );
    this.addSql(
      `alter table "eval_cells" add constraint "eval_cells_run_id_foreign" foreign key ("run_id") references "eval_runs" ("id") on update cascade on delete cascade;`,
    );

    this.addSql(`create table "eval_pair_verdicts" (
      "id" uuid not null, "created_at" timestamptz(3) not null,
      "run_id" uuid not null, "owner_id" uuid not null, "item_id" uuid not null, "repeat" int not null,
      "model_a" text not null, "model_b" text not null,
      "verdict_ab" text null, "verdict_ba" text null, "outcome" text null,
      "status" text not null default 'QUEUED',
      "error" text null, "cost_usd" float8 null, "attempts" int not null default 0,
      "lease_owner" text null, "heartbeat_at" timestamptz(3) null, "finished_at" timestamptz(3) null,
      constraint "eval_pair_verdicts_pkey" primary key ("id"));`);
    this.addSql(
      `alter table "eval_pair_verdicts" add constraint "eval_pair_verdicts_pair_key" unique ("run_id", "item_id", "repeat", "model_a", "model_b");`,
    );
    this.addSql(
      `alter table "eval_pair_verdicts" add constraint "eval_pair_verdicts_run_id_foreign" foreign key ("run_id") references "eval_runs" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `create index "eval_pair_verdicts_running_idx" on "eval_pair_verdicts" ("owner_id", "heartbeat_at") where "status" = 'RUNNING';`,
    );
    this.addSql(
      `create index "eval_pair_verdicts_spend_idx" on "eval_pair_verdicts" ("owner_id", "finished_at") where "cost_usd" is not null;`,
    );

    this.addSql(`alter table "spend_reservations" add column "eval_run_id" uuid null;`);
    this.addSql(
      `alter table "spend_reservations" add constraint "spend_reservations_eval_run_id_foreign" foreign key ("eval_run_id") references "eval_runs" ("id") on update cascade on delete cascade;`,
    );
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "spend_reservations" drop column if exists "eval_run_id";`);
    this.addSql(`drop table if exists "eval_pair_verdicts" cascade;`);
    this.addSql(`drop table if exists "eval_cells" cascade;`);
    this.addSql(`drop table if exists "eval_runs" cascade;`);
  }
}
