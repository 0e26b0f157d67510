/**
 * `npm run bench -- --soak [--requests=N]`: N (default 100,000) mixed requests
 * against ours at c=10, with the server's RSS sampled every second. The mix,
 * per 20 requests: 10 history pages (cache hits and, after writes, misses),
 * 4 message pages with an `after` cursor, 2 votes, createConversation,
 * renameConversation, sendMessage and runComparison (2 models) against the
 * fake providers of the test suite (in their own process). A short unmeasured
 * warm-up, then five equal chunks: RSS (median of the chunk's samples) must
 * stay within 10% from the first chunk to the last, with 0 errors; the process
 * exits non-zero otherwise.
 *
 * The soak replays a few users far faster than people vote or call models, and
 * its question is memory, not policy: ours runs with the per-user model-call
 * rate limit and the daily vote cap off, and a vote change window longer than
 * the seeded votes' age (each would otherwise refuse most of the mix).
 */
import { fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LoadGenerator, type LoadRequest, totalErrors } from './load';
import type { Options } from './options';
import { HISTORY } from './queries';
import { markdownTable } from './report';
import { type Cleanup, type Environment, graphql, log, mapLimit, prepare, ROOT } from './setup';

const KEY_USERS = 10;
const CURSOR_USERS = 50;
const CONNECTIONS = 10;

function request(token: string, query: string, variables: object = {}): LoadRequest {
  return {
    method: 'POST',
    path: '/graphql',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  };
}

const MESSAGE_PAGE = `query Page($id: ID!, $after: String) { conversation(id: $id) { id messages(first: 4, after: $after) { nodes { id role content createdAt } pageInfo { endCursor hasNextPage } } } }`;
const VOTE = `mutation Vote($input: VoteInput!) { vote(input: $input) { id outcome } }`;
const CREATE = `mutation Create($title: String) { createConversation(title: $title) { id title } }`;
const RENAME = `mutation Rename($id: ID!, $title: String!) { renameConversation(id: $id, title: $title) { id title } }`;
const SEND = `mutation Send($input: SendMessageInput!) { sendMessage(input: $input) { id role content } }`;
const COMPARE = `mutation Compare($input: RunComparisonInput!) { runComparison(input: $input) { id responses { id status } } }`;

async function buildMix(env: Environment): Promise<LoadRequest[]> {
  const url = env.ours.url;
  const keyUsers = env.users.slice(0, KEY_USERS);
  await mapLimit(keyUsers, 4, async (u) => {
    for (const provider of ['OPENAI', 'ANTHROPIC']) {
      await graphql(
        url,
        `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id last4 } }`,
        { input: { provider, apiKey: `sk-bench-soak-${u.n}-${provider.toLowerCase()}` } },
        u.token,
      );
    }
  });
  // Signed cursors and ids come from ours itself.
  const perUser = await mapLimit(env.users.slice(0, CURSOR_USERS), 8, async (u) => {
    const data = await graphql(
      url,
      `{ conversations(first: 20) { nodes { id messages(first: 4) { pageInfo { endCursor } } } } comparisons(first: 10) { nodes { id responses { id } } } }`,
      {},
      u.token,
    );
    return {
      user: u,
      conversations: data.conversations.nodes.map((c: any) => ({ id: c.id as string, cursor: c.messages.pageInfo.endCursor as string })),
      comparisons: data.comparisons.nodes.map((c: any) => ({ id: c.id as string, responses: c.responses.map((r: any) => r.id as string) })),
    };
  });

  const mix: LoadRequest[] = [];
  for (let round = 0; round < 100; round++) {
    const pick = perUser[round % perUser.length]!;
    const keyUser = perUser[round % KEY_USERS]!;
    const conversation = pick.conversations[round % pick.conversations.length]!;
    const comparison = pick.comparisons[round % pick.comparisons.length]!;
    for (let i = 0; i < 10; i++) mix.push(request(env.users[(round * 10 + i) % env.users.length]!.token, HISTORY));
    for (let i = 0; i < 4; i++) {
      const c = pick.conversations[(round + i) % pick.conversations.length]!;
      mix.push(request(pick.user.token, MESSAGE_PAGE, { id: c.id, after: c.cursor }));
    }
    mix.push(request(pick.user.token, VOTE, { input: { comparisonId: comparison.id, outcome: 'TIE' } }));
    mix.push(
      request(pick.user.token, VOTE, {
        input: {
          comparisonId: comparison.id,
          outcome: 'WINNER',
          winnerResponseId: comparison.responses[round % comparison.responses.length],
        },
      }),
    );
    mix.push(request(pick.user.token, CREATE, { title: `Soak ${round}` }));
    mix.push(request(pick.user.token, RENAME, { id: conversation.id, title: `Renamed ${round}` }));
    const keyConversation = keyUser.conversations[round % keyUser.conversations.length]!;
    mix.push(
      request(keyUser.user.token, SEND, {
        input: { conversationId: keyConversation.id, content: `soak ${round}`, model: 'openai:gpt-4o' },
      }),
    );
    mix.push(
      request(keyUser.user.token, COMPARE, {
        input: { prompt: `soak compare ${round}`, models: ['openai:gpt-4o', 'anthropic:claude-sonnet-4-5'] },
      }),
    );
  }
  return mix;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)]! : NaN;
}

export async function runSoak(options: Options, cleanup: Cleanup): Promise<number> {
  const started = new Date();
  const fake = fork(join(__dirname, 'fake-llm-child.ts'), [], {
    execArgv: ['--require', 'ts-node/register'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  cleanup.add('stop the fake LLM server', async () => {
    if (fake.exitCode !== null) return;
    const exited = new Promise((resolve) => fake.once('exit', resolve));
    fake.disconnect();
    await exited;
  });
  const baseUrls = await new Promise<Record<string, string>>((resolve, reject) => {
    fake.once('message', (m: { baseUrls: Record<string, string> }) => resolve(m.baseUrls));
    fake.once('exit', (code) => reject(new Error(`the fake LLM server exited (${code})`)));
  });
  const env = await prepare(options, cleanup, {
    OPENAI_BASE_URL: baseUrls.openai!,
    ANTHROPIC_BASE_URL: baseUrls.anthropic!,
    GOOGLE_BASE_URL: baseUrls.google!,
    MISTRAL_BASE_URL: baseUrls.mistral!,
    RATE_LIMIT_PROVIDER_CALLS: '0',
    VOTE_DAILY_CAP: '0',
    VOTE_CHANGE_WINDOW_SECONDS: String(10 * 365 * 24 * 3600),
  });
  const mix = await buildMix(env);
  const load = LoadGenerator.start();
  cleanup.add('stop the load generator', () => load.stop());

  const total = options.soakRequests;
  const chunk = Math.max(1, Math.floor(total / 5));
  const warmup = Math.min(5_000, Math.max(200, Math.floor(total / 20)));
  const samples: Array<{ seconds: number; chunk: number; rssMb: number }> = [];
  const t0 = performance.now();
  let current = 0;
  const sampler = setInterval(() => {
    if (env.ours.alive()) samples.push({ seconds: (performance.now() - t0) / 1000, chunk: current, rssMb: env.ours.rssMb() });
  }, 1_000);
  cleanup.add('stop the RSS sampler', async () => clearInterval(sampler));

  log(`soak: ${warmup} warm-up requests (not counted), then 5 × ${chunk} mixed requests at c=${CONNECTIONS}, RSS sampled every second`);
  const spec = {
    url: env.ours.url,
    connections: CONNECTIONS,
    warmupSeconds: 0,
    seconds: 3_600,
    timeoutSeconds: 30,
    verify: true,
    requests: mix,
  };
  const warm = await load.run({ ...spec, amount: warmup });
  const chunks: Array<{
    chunk: number;
    requests: number;
    rps: number;
    p99: number;
    errors: number;
    firstError?: string;
    rssMb: { min: number; median: number; max: number; end: number };
  }> = [];
  for (let i = 1; i <= 5; i++) {
    current = i;
    const { result } = await load.run({ ...spec, amount: chunk });
    const rss = samples.filter((s) => s.chunk === i).map((s) => s.rssMb);
    const end = env.ours.rssMb();
    rss.push(end);
    chunks.push({
      chunk: i,
      requests: result.requests,
      rps: result.rps,
      p99: result.p99,
      errors: totalErrors(result),
      firstError: result.firstError,
      rssMb: { min: Math.min(...rss), median: median(rss), max: Math.max(...rss), end },
    });
    log(
      `chunk ${i}/5: ${result.requests} requests, ${result.rps.toFixed(0)} req/s, ${totalErrors(result)} errors, RSS median ${median(rss).toFixed(0)} MB`,
    );
  }
  clearInterval(sampler);

  const first = chunks[0]!.rssMb.median;
  const last = chunks[chunks.length - 1]!.rssMb.median;
  const change = (last - first) / first;
  const errors = chunks.reduce((n, c) => n + c.errors, 0) + totalErrors(warm.result);
  const pass = Math.abs(change) <= 0.1 && errors === 0;
  const table = markdownTable(
    ['chunk', 'requests', 'req/s', 'p99 ms', 'errors', 'RSS min MB', 'RSS median MB', 'RSS max MB'],
    chunks.map((c) => [
      String(c.chunk),
      String(c.requests),
      c.rps.toFixed(0),
      c.p99.toFixed(1),
      String(c.errors),
      c.rssMb.min.toFixed(1),
      c.rssMb.median.toFixed(1),
      c.rssMb.max.toFixed(1),
    ]),
    ['r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  );
  // At most 30 samples per chunk on screen (evenly spaced); all of them are in the JSON.
  const sampleLines = [1, 2, 3, 4, 5].map((i) => {
    const own = samples.filter((s) => s.chunk === i);
    const step = Math.max(1, Math.ceil(own.length / 30));
    return `  chunk ${i}: ${own
      .filter((_, k) => k % step === 0)
      .map((s) => s.rssMb.toFixed(0))
      .join(' ')}${step > 1 ? ` (every ${step} s)` : ''}`;
  });
  const firstErrors = chunks.filter((c) => c.firstError).map((c) => `  chunk ${c.chunk}: ${c.firstError!.slice(0, 200)}`);
  process.stdout.write(
    [
      '',
      table,
      '',
      'RSS samples (MB):',
      ...sampleLines,
      ...(firstErrors.length ? ['first error per chunk:', ...firstErrors] : []),
      '',
      `${pass ? 'PASS' : 'FAIL'}: RSS ${first.toFixed(1)} MB (first ${chunk}) → ${last.toFixed(1)} MB (last ${chunk}): ${(change * 100).toFixed(1)}% (limit ±10%), ${errors} errors (warm-up included)`,
      '',
    ].join('\n'),
  );

  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `soak-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    file,
    JSON.stringify(
      {
        startedAt: started.toISOString(),
        finishedAt: new Date().toISOString(),
        requests: total,
        warmup,
        connections: CONNECTIONS,
        chunks,
        samples,
        change,
        errors,
        pass,
      },
      null,
      2,
    ) + '\n',
  );
  log(`results: ${file.slice(ROOT.length + 1)}`);
  return pass ? 0 : 1;
}
