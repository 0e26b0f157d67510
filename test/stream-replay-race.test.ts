/**
 * A subscriber whose replay reads the responses from PostgreSQL (`comparisonEventStream` without every
 * publisher at hand) while a response running here settles: the row it read is still unsettled, and by the
 * time it looks for the response's publisher, the runner has dropped it from `live` (and its snapshot from
 * the cache). The replay must still carry the text so far (here: the whole answer, as settled), never an
 * empty first event. Seen under load in comparison.test.ts ("gives a late subscriber the content so far…"):
 * two answers of the same length settle within a few ms, and a late subscriber's read fell between them.
 *
 * The interleaving is made exact, not waited for: the stream's `find` returns the rows it read, and only
 * then (before the stream goes on) the response settles and leaves `live`, as the runner does.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import {
  type ComparisonEvent,
  comparisonEventStream,
  ResponsePublisher,
  type StreamItem,
} from '../src/modules/comparison/comparison-events';
import { ResponseStatus } from '../src/modules/comparison/comparison.entity';
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestApp, type TestApp } from './helpers/test-app';

const START = `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id responses { id } } }`;

let fake: FakeLlmServer;
let t: TestApp;
let token: string;

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  t = await createTestApp({ env: fake.providerEnv() });
  ({ token } = await t.signUp('replayrace'));
  for (const input of [
    { provider: 'OPENAI', apiKey: 'sk-race-1111' },
    { provider: 'ANTHROPIC', apiKey: 'sk-race-2222' },
  ]) {
    await t.gql(`mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`, { input }, token);
  }
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

it('replays a response that settles and leaves `live` while its row is read with the settled text', async () => {
  // The runner's own calls are held before their first event: the rows stay PENDING for this test's publishers.
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  fake.setBehavior('replay-race', { beforeEvent: () => held });
  try {
    await replaysSettled(release);
  } finally {
    release();
  }
});

async function replaysSettled(release: () => void) {
  const started = await t.gql(START, { input: { prompt: 'race me', models: ['openai:replay-race', 'anthropic:replay-race'] } }, token);
  expect(started.errors).toBeUndefined();
  const comparisonId = started.data.startComparison.id as string;
  const [running, settling] = started.data.startComparison.responses.map((r: { id: string }) => r.id) as [string, string];

  // This test's own publishers stand for the runner's (its `live` map): one still running, one about to settle.
  const deps = { pubsub: t.app.pubsub, cache: t.app.cache };
  const live = new Map<string, ResponsePublisher>();
  const stillRunning = new ResponsePublisher(deps, comparisonId, running);
  const aboutToSettle = new ResponsePublisher(deps, comparisonId, settling);
  live.set(running, stillRunning).set(settling, aboutToSettle);
  stillRunning.status(ResponseStatus.STREAMING);
  stillRunning.delta('half of ');
  aboutToSettle.status(ResponseStatus.STREAMING);
  aboutToSettle.delta('the whole ');
  aboutToSettle.delta('answer');

  // The rows are read unsettled; then, before the stream looks at `live`, the answer settles and its publisher goes.
  const em = t.app.orm.em.fork() as EntityManager;
  const find = em.find.bind(em) as EntityManager['find'];
  em.find = (async (...args: Parameters<EntityManager['find']>) => {
    const rows = await find(...args);
    await aboutToSettle.settled(ResponseStatus.COMPLETED, 'the whole answer', null);
    live.delete(settling);
    return rows;
  }) as EntityManager['find'];

  const stream = comparisonEventStream({ ...deps, live }, em, comparisonId, true);
  const events: ComparisonEvent[] = [];
  const next = async () => ((await stream.next()) as IteratorYieldResult<StreamItem>).value as ComparisonEvent;
  events.push(await next(), await next());
  const replay = new Map(events.map((e) => [e.responseId, e]));
  expect(replay.get(running)).toMatchObject({ content: 'half of ', delta: null });
  // The settled state, once: the replay carries the whole text (not '' from a row read a moment too early).
  expect(replay.get(settling)).toMatchObject({ status: ResponseStatus.COMPLETED, content: 'the whole answer', delta: null });

  // The one still running streams on, and the stream ends with its settle (nothing more for the settled one).
  stillRunning.delta('it');
  await stillRunning.settled(ResponseStatus.COMPLETED, 'half of it', null);
  for await (const item of stream) events.push(item as ComparisonEvent);
  expect(events.slice(2).map((e) => [e.responseId, e.status, e.delta, e.content])).toEqual([
    [running, ResponseStatus.STREAMING, 'it', null],
    [running, ResponseStatus.COMPLETED, null, 'half of it'],
  ]);
  // The runner's own calls, held so far, finish (and settle the rows) before the app closes.
  release();
  await t.app.services.runner.settled(comparisonId);
}
