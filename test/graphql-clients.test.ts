/**
 * The clients a frontend uses, end to end through a whole comparison: Apollo
 * Client 4 (an HttpLink for the mutation and a GraphQLWsLink for the
 * subscription, split as Apollo's docs show) and graphql-sse's own client
 * (the official client of the SSE protocol our `/graphql/stream` speaks).
 * Each rebuilds every answer from its events and gets the stored text exactly.
 */
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { createClient as createWsClient } from 'graphql-ws';
import { createClient as createSseClient } from 'graphql-sse';
import WebSocket from 'ws';
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestApp, type TestApp } from './helpers/test-app';

const START = 'mutation Start($input: RunComparisonInput!) { startComparison(input: $input) { id responses { id status } } }';
const GET = 'query($id: ID!) { comparison(id: $id) { responses { id status content } } }';
const EVENTS = 'subscription Events($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status delta content } }';
const MODELS = ['openai:gpt-4o', 'openai:gpt-4o-mini'];

type Event = { responseId: string; status: string; delta: string | null; content: string | null };

let fake: FakeLlmServer;
let t: TestApp;
let user: { token: string; userId: string };

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  t = await createTestApp({ env: { ...fake.providerEnv() } });
  user = await t.signUp('clients');
  const key = 'mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }';
  await t.gql(key, { input: { provider: 'OPENAI', apiKey: 'sk-clients-000001' } }, user.token);
});

/**
 * Each answer is held after its first event until the subscriber has seen an
 * event, so some text must reach it as deltas: on a loaded machine the whole
 * answer could otherwise finish before the subscription opens, and arrive only
 * in the first event's text so far.
 */
function holdUntilSubscribed(): () => void {
  let subscribed!: () => void;
  const seen = new Promise<void>((resolve) => {
    subscribed = resolve;
  });
  for (const model of ['gpt-4o', 'gpt-4o-mini']) {
    fake.setBehavior(model, { chunkDelayMs: 5, beforeEvent: (index) => (index >= 1 ? seen : Promise.resolve()) });
  }
  return subscribed;
}
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

/** Each response's text from its events (the first carries the text so far, then deltas), and its last status. */
function rebuild(events: Event[]): Map<string, { text: string; status: string; deltas: number }> {
  const out = new Map<string, { text: string; status: string; deltas: number }>();
  for (const e of events) {
    const seen = out.get(e.responseId);
    if (!seen) out.set(e.responseId, { text: e.content ?? '', status: e.status, deltas: 0 });
    else {
      if (e.delta !== null) {
        seen.text += e.delta;
        seen.deltas++;
      }
      seen.status = e.status;
    }
  }
  return out;
}

async function expectStored(comparisonId: string, events: Event[]): Promise<void> {
  const stored = (await t.gql(GET, { id: comparisonId }, user.token)).data.comparison.responses as Array<{
    id: string;
    status: string;
    content: string;
  }>;
  const rebuilt = rebuild(events);
  expect(stored.map((r) => r.status)).toEqual(['COMPLETED', 'COMPLETED']);
  expect(stored.map((r) => [r.id, rebuilt.get(r.id)?.text, rebuilt.get(r.id)?.status])).toEqual(
    stored.map((r) => [r.id, r.content, 'COMPLETED']),
  );
  expect([...rebuilt.values()].reduce((n, r) => n + r.deltas, 0)).toBeGreaterThan(0);
}

it('Apollo Client 4: HttpLink for the mutation, GraphQLWsLink for comparisonEvents', async () => {
  const ws = createWsClient({
    url: `${t.url.replace(/^http/, 'ws')}/graphql/ws`,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${user.token}` },
    retryAttempts: 0,
  });
  const http = new HttpLink({ uri: `${t.url}/graphql`, headers: { authorization: `Bearer ${user.token}` } });
  const link = ApolloLink.split(
    ({ query }) => {
      const definition = getMainDefinition(query);
      return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
    },
    new GraphQLWsLink(ws),
    http,
  );
  const apollo = new ApolloClient({ link, cache: new InMemoryCache() });
  const subscribed = holdUntilSubscribed();
  try {
    const started = await apollo.mutate<{ startComparison: { id: string; responses: Array<{ id: string; status: string }> } }>({
      mutation: gql(START),
      variables: { input: { prompt: 'through Apollo Client', models: MODELS } },
    });
    const id = started.data!.startComparison.id;
    expect(started.data!.startComparison.responses.map((r) => r.status)).toEqual(['PENDING', 'PENDING']);
    const events = await new Promise<Event[]>((resolve, reject) => {
      const seen: Event[] = [];
      apollo.subscribe<{ comparisonEvents: Event }>({ query: gql(EVENTS), variables: { id }, fetchPolicy: 'no-cache' }).subscribe({
        next: (result) => {
          if (result.error) reject(result.error);
          else if (result.data) {
            seen.push(result.data.comparisonEvents);
            subscribed();
          }
        },
        error: reject,
        complete: () => resolve(seen),
      });
    });
    await expectStored(id, events);
  } finally {
    apollo.stop();
    await ws.dispose();
  }
});

it("graphql-sse's client through /graphql/stream", async () => {
  const sse = createSseClient({ url: `${t.url}/graphql/stream`, headers: { authorization: `Bearer ${user.token}` }, retryAttempts: 0 });
  const subscribed = holdUntilSubscribed();
  try {
    const started = await t.gql(START, { input: { prompt: 'through graphql-sse', models: MODELS } }, user.token);
    const id = started.data.startComparison.id;
    const events: Event[] = [];
    for await (const result of sse.iterate<{ comparisonEvents: Event }>({ query: EVENTS, variables: { id } })) {
      expect(result.errors).toBeUndefined();
      events.push(result.data!.comparisonEvents);
      subscribed();
    }
    await expectStored(id, events);
  } finally {
    sse.dispose();
  }
});
