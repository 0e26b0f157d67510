/**
 * `npx ts-node --transpile-only bench/seed-db.ts --scale=N --name=DB`: one bench database, kept (not dropped), to
 * EXPLAIN the app's statements on the scale bench's data without running the bench. Creates DB on
 * BENCH_DATABASE_URL's server (default postgres://postgres@127.0.0.1:5432/postgres), applies the migrations (the
 * app's own `migrate()`), seeds WORKLOAD × N users exactly as `npm run bench -- --scale=N` does (lib/seed.ts) and
 * ANALYZEs. Prints the database URL; drop it with `dropdb -h 127.0.0.1 -U postgres DB` when done.
 */
import 'reflect-metadata';
import { argv } from 'node:process';
import argon2 from 'argon2';
import { ENTITIES } from '../mikro-orm.config';
import { connectOrm, createOrmOptions, migrate } from '../src/db/orm';
import { DEFAULT_ADMIN_URL, withClient } from './lib/db';
import { BENCH_PASSWORD, seed, WORKLOAD } from './lib/seed';

async function main(): Promise<void> {
  const arg = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const scale = Number(arg('scale') ?? '1');
  const name = arg('name');
  if (!name || !/^[a-z_][a-z0-9_]*$/.test(name) || !(scale >= 1)) throw new Error('usage: bench/seed-db.ts --scale=N --name=db_name');
  const adminUrl = process.env.BENCH_DATABASE_URL ?? DEFAULT_ADMIN_URL;
  await withClient(adminUrl, (c) => c.query(`create database ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const orm = await connectOrm(
    createOrmOptions({
      clientUrl: url.toString(),
      pool: { min: 0, max: 2, acquireTimeoutMs: 60_000, idleTimeoutMs: 10_000 },
      entities: ENTITIES,
    }),
  );
  try {
    console.log(`migrated: ${(await migrate(orm)).length} migrations`);
  } finally {
    await orm.close(true);
  }
  const passwordHash = await argon2.hash(BENCH_PASSWORD, { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 });
  const seeded = await withClient(url.toString(), (c) => seed(c, { ...WORKLOAD, users: WORKLOAD.users * scale }, passwordHash));
  console.log(`seeded in ${seeded.seconds.toFixed(1)} s: ${JSON.stringify(seeded.rows)} ${JSON.stringify(seeded.stepSeconds)}`);
  console.log(url.toString());
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
