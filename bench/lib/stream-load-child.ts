/**
 * The subscribers of `npm run bench:stream`, in their own process (forked by
 * lib/stream-load.ts). Per level: every comparison is started at once (a
 * burst of startComparison calls on instance A), each is followed by one
 * comparisonEvents subscriber on A opened as soon as its start answers, and
 * every `bEvery`-th also by one on instance B opened `bDelayMs` after its start
 * was sent (it catches up by replay). In relay mode each subscriber is one
 * POST /relay to the bare relay instead. Every loop is bounded: starts and
 * streams have timeouts.
 *
 * Every token in a replay `content` or a `delta` is checked (lib/stream-tokens.ts);
 * the settled `content` is checked on its own and never counts as delivery.
 */
import http from 'node:http';
import type { AnswerMisses, Percentiles, SideResult, StartsResult, StreamLoadResult, StreamLoadSpec } from './stream-load';
import { MODEL_INDEX, nowMs, TOKEN_RE } from './stream-tokens';

/** BENCH_LATENCY_DUMP=<file>: every timed delta as `side,comparison,model,index,sentMs,latencyMs` (a debugging aid). */
const DUMP: string[] | null = process.env.BENCH_LATENCY_DUMP ? [] : null;
function flushDump(): void {
  if (DUMP?.length) require('node:fs').writeFileSync(process.env.BENCH_LATENCY_DUMP!, `${DUMP.splice(0).join('\n')}\n`, { flag: 'a' });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const SUBSCRIPTION = 'subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status delta content error } }';
const START = 'mutation Start($input: RunComparisonInput!) { startComparison(input: $input) { id responses { id model } } }';
const STATUSES = 'query Statuses($id: ID!) { comparison(id: $id) { responses { status } } }';
const SETTLED = new Set(['COMPLETED', 'FAILED', 'TIMED_OUT']);

class Samples {
  private values = new Float64Array(1024);
  private n = 0;
  push(value: number): void {
    if (this.n === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.n++] = value;
  }
  summary(): Percentiles {
    const sorted = this.values.subarray(0, this.n).sort();
    const at = (p: number) =>
      sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]! : NaN;
    let sum = 0;
    for (const v of sorted) sum += v;
    return {
      n: sorted.length,
      p50: at(50),
      p90: at(90),
      p99: at(99),
      max: sorted.length ? sorted[sorted.length - 1]! : NaN,
      mean: sorted.length ? sum / sorted.length : NaN,
    };
  }
}

class Side {
  readonly result: Omit<SideResult, 'latencyMs' | 'latencyInclOpenMs' | 'openMs' | 'firstEventMs'> = {
    subscribers: 0,
    completed: 0,
    timedOut: 0,
    errors: 0,
    errorKinds: {},
    answers: 0,
    settled: 0,
    settledTextOk: 0,
    lost: 0,
    unwritten: 0,
    duplicated: 0,
    outOfOrder: 0,
    misrouted: 0,
    answersWithLoss: 0,
    answersEmpty: 0,
    replayTokens: 0,
    deltaTokens: 0,
    deltaEvents: 0,
    replayedAfterRequest: 0,
  };
  readonly latency = new Samples();
  readonly latencyInclOpen = new Samples();
  readonly open = new Samples();
  readonly firstEvent = new Samples();

  constructor(
    readonly name: 'a' | 'b',
    private readonly misses: AnswerMisses[],
  ) {}

  error(message: string, kind: string): void {
    this.result.errors++;
    this.result.errorKinds[kind] = (this.result.errorKinds[kind] ?? 0) + 1;
    this.result.firstError ??= message.slice(0, 300);
  }

  missed(k: number, m: number, missing: number[]): void {
    this.misses.push({ k, m, side: this.name, missing });
  }

  summary(): SideResult {
    return {
      ...this.result,
      latencyMs: this.latency.summary(),
      latencyInclOpenMs: this.latencyInclOpen.summary(),
      openMs: this.open.summary(),
      firstEventMs: this.firstEvent.summary(),
    };
  }
}

/** One answer (response) as one subscriber sees it. */
class Answer {
  readonly counts: Uint16Array;
  maxSeq = -1;
  tokens = 0;
  seenFirst = false;
  settled = false;
  settledTextOk = false;
  constructor(
    readonly k: number,
    readonly m: number,
    deltas: number,
  ) {
    this.counts = new Uint16Array(deltas);
  }
}

/** True when `text` is exactly the tokens 0..deltas-1 of (k, m), in order. */
function wholeText(text: string, k: number, m: number, deltas: number): boolean {
  let expected = 0;
  for (const match of text.matchAll(TOKEN_RE)) {
    if (Number(match[1]) !== k || Number(match[2]) !== m || Number(match[3]) !== expected) return false;
    expected++;
  }
  return expected === deltas;
}

function post(url: string, body: string, headers: Record<string, string>, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * One SSE subscriber: reads until `event: complete`, the end of the response,
 * an error or the timeout, checking every token; adds what it saw to `side`.
 */
function follow(
  side: Side,
  url: string,
  body: string,
  headers: Record<string, string>,
  answers: Map<string, Answer>,
  spec: StreamLoadSpec,
): Promise<void> {
  side.result.subscribers++;
  side.result.answers += answers.size;
  return new Promise((resolve) => {
    const sentAt = nowMs();
    let openedAt = Infinity;
    let gotEvent = false;
    let finished = false;
    let timedOut = false;

    const tokens = (answer: Answer, text: string, source: 'replay' | 'delta', at: number) => {
      for (const match of text.matchAll(TOKEN_RE)) {
        const k = Number(match[1]);
        const m = Number(match[2]);
        const i = Number(match[3]);
        if (k !== answer.k || m !== answer.m || i >= answer.counts.length) {
          side.result.misrouted++;
          continue;
        }
        answer.tokens++;
        if (++answer.counts[i]! > 1) side.result.duplicated++;
        else if (i < answer.maxSeq) side.result.outOfOrder++;
        answer.maxSeq = Math.max(answer.maxSeq, i);
        const sent = Number(match[4]);
        if (sent >= sentAt) side.latencyInclOpen.push(at - sent);
        if (source === 'replay') {
          side.result.replayTokens++;
          if (sent >= sentAt) side.result.replayedAfterRequest++;
          continue;
        }
        side.result.deltaTokens++;
        if (sent >= openedAt) side.latency.push(at - sent);
        if (DUMP && sent >= openedAt) DUMP.push(`${side.name},${k},${m},${i},${sent.toFixed(1)},${(at - sent).toFixed(2)}`);
        if (side.result.firstDeltaAt === undefined || at < side.result.firstDeltaAt) side.result.firstDeltaAt = at;
        if (side.result.lastDeltaAt === undefined || at > side.result.lastDeltaAt) side.result.lastDeltaAt = at;
      }
    };

    const onEvent = (name: string, data: string, at: number) => {
      if (name === 'complete') {
        side.result.completed++;
        return;
      }
      if (name !== 'next') return;
      let payload: {
        data?: { comparisonEvents?: { responseId: string; status: string; delta: string | null; content: string | null } };
        errors?: Array<{ message: string; extensions?: { code?: string } }>;
      };
      try {
        payload = JSON.parse(data);
      } catch {
        side.error(`unparsable event data: ${data.slice(0, 200)}`, 'unparsable event');
        return;
      }
      if (payload.errors?.length) {
        const code = payload.errors[0]!.extensions?.code ?? 'no code';
        side.error(`GraphQL error in the stream: ${code} ${payload.errors[0]!.message}`, `in-stream ${code}`);
        return;
      }
      const event = payload.data?.comparisonEvents;
      if (!event) return;
      if (!gotEvent) {
        gotEvent = true;
        side.firstEvent.push(at - sentAt);
      }
      const answer = answers.get(event.responseId);
      if (!answer) {
        side.result.misrouted++;
        return;
      }
      if (!answer.seenFirst) {
        // The replay: the content so far (all of it when the answer has settled already).
        answer.seenFirst = true;
        if (event.content !== null) tokens(answer, event.content, 'replay', at);
        if (event.delta !== null) tokens(answer, event.delta, 'delta', at);
        if (SETTLED.has(event.status)) {
          answer.settled = true;
          answer.settledTextOk =
            event.status === 'COMPLETED' && event.content !== null && wholeText(event.content, answer.k, answer.m, answer.counts.length);
        }
        return;
      }
      if (event.delta !== null) {
        side.result.deltaEvents++;
        tokens(answer, event.delta, 'delta', at);
      }
      if (event.content !== null || SETTLED.has(event.status)) {
        // The settled text: checked, never counted as delivery.
        answer.settled = answer.settled || SETTLED.has(event.status);
        answer.settledTextOk =
          event.status === 'COMPLETED' && event.content !== null && wholeText(event.content, answer.k, answer.m, answer.counts.length);
      }
    };

    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      for (const answer of answers.values()) {
        const missing: number[] = [];
        for (const [i, c] of answer.counts.entries()) if (c === 0) missing.push(i);
        side.missed(answer.k, answer.m, missing);
        if (answer.settled) side.result.settled++;
        if (answer.settledTextOk) side.result.settledTextOk++;
      }
      resolve();
    };

    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          accept: 'text/event-stream',
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
          ...headers,
        },
      },
      (res) => {
        openedAt = nowMs();
        side.open.push(openedAt - sentAt);
        if (res.statusCode !== 200) {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => {
            side.error(`HTTP ${res.statusCode}: ${Buffer.concat(parts).toString('utf8').slice(0, 200)}`, `HTTP ${res.statusCode}`);
            finish();
          });
          return;
        }
        res.setEncoding('utf8');
        let buffer = '';
        res.on('data', (chunk: string) => {
          const at = nowMs();
          buffer += chunk;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let name = '';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) name = line.slice(6).trim();
              else if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(line.startsWith('data: ') ? 6 : 5);
            }
            if (name) onEvent(name, data, at);
          }
        });
        res.on('end', finish);
        res.on('error', (error) => {
          if (!timedOut) side.error(`stream: ${error.message}`, 'stream error');
          finish();
        });
      },
    );
    req.on('socket', (socket) => socket.setNoDelay(true));
    req.on('error', (error) => {
      if (!timedOut) side.error(`request: ${error.message}`, 'request error');
      finish();
    });
    const timer = setTimeout(() => {
      timedOut = true;
      side.result.timedOut++;
      req.destroy();
      finish();
    }, spec.streamTimeoutMs);
    req.end(body);
  });
}

const sleepUntil = (at: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, at - nowMs())));

async function runOurs(spec: StreamLoadSpec): Promise<StreamLoadResult> {
  const t0 = nowMs();
  const misses: AnswerMisses[] = [];
  const a = new Side('a', misses);
  const b = new Side('b', misses);
  const startLatency = new Samples();
  const starts: Omit<StartsResult, 'latencyMs'> = { sent: 0, ok: 0, refused: {}, spanMs: 0 };
  let lastStartAnswered = t0;
  const unsettled: string[] = [];
  const startBody = (prompt: string) => JSON.stringify({ query: START, variables: { input: { prompt, models: spec.models } } });

  await Promise.all(
    spec.comparisons.map(async (c, index) => {
      const auth = { authorization: `Bearer ${c.token}` };
      const sentAt = nowMs();
      starts.sent++;
      let id: string;
      let responses: Array<{ id: string; model: string }>;
      try {
        const answer = await post(`${spec.urlA}/graphql`, startBody(c.prompt), auth, spec.startTimeoutMs);
        lastStartAnswered = Math.max(lastStartAnswered, nowMs());
        startLatency.push(nowMs() - sentAt);
        let parsed: any;
        try {
          parsed = JSON.parse(answer.body);
        } catch {
          parsed = undefined;
        }
        const started = parsed?.data?.startComparison;
        if (answer.status !== 200 || !started) {
          const code = parsed?.errors?.[0]?.extensions?.code ?? `HTTP ${answer.status}`;
          starts.refused[code] = (starts.refused[code] ?? 0) + 1;
          starts.firstError ??= `${code}: ${parsed?.errors?.[0]?.message ?? answer.body.slice(0, 200)}`;
          return;
        }
        id = started.id;
        responses = started.responses;
      } catch (error) {
        starts.refused.socket = (starts.refused.socket ?? 0) + 1;
        starts.firstError ??= `socket: ${(error as Error).message}`;
        return;
      }
      starts.ok++;
      const answersFor = () =>
        new Map(responses.map((r) => [r.id, new Answer(c.k, Number(MODEL_INDEX.exec(r.model)?.[1] ?? 0), spec.deltas)]));
      const body = JSON.stringify({ query: SUBSCRIPTION, variables: { id } });
      const answersA = answersFor();
      const followers = [follow(a, `${spec.urlA}/graphql/stream`, body, auth, answersA, spec)];
      if (spec.urlB && index % spec.bEvery === 0) {
        followers.push(
          sleepUntil(sentAt + spec.bDelayMs).then(() => follow(b, `${spec.urlB}/graphql/stream`, body, auth, answersFor(), spec)),
        );
      }
      await Promise.all(followers);
      if ([...answersA.values()].some((x) => !x.settled)) unsettled.push(`${id}\n${c.token}`);
    }),
  );

  // What the database says about the answers A's subscriber did not see settle.
  const dbStatuses: Record<string, number> = {};
  for (const entry of unsettled) {
    const [id, token] = entry.split('\n') as [string, string];
    try {
      const answer = await post(
        `${spec.urlA}/graphql`,
        JSON.stringify({ query: STATUSES, variables: { id } }),
        { authorization: `Bearer ${token}`, 'cache-control': 'no-cache' },
        10_000,
      );
      for (const r of JSON.parse(answer.body)?.data?.comparison?.responses ?? []) dbStatuses[r.status] = (dbStatuses[r.status] ?? 0) + 1;
    } catch {
      dbStatuses.unknown = (dbStatuses.unknown ?? 0) + spec.models.length;
    }
  }
  return {
    starts: { ...starts, latencyMs: startLatency.summary(), spanMs: lastStartAnswered - t0 },
    a: a.summary(),
    b: spec.urlB ? b.summary() : undefined,
    unsettledOnA: { comparisons: unsettled.length, dbStatuses },
    misses,
    wallMs: nowMs() - t0,
  };
}

async function runRelay(spec: StreamLoadSpec): Promise<StreamLoadResult> {
  const t0 = nowMs();
  const misses: AnswerMisses[] = [];
  const a = new Side('a', misses);
  const names = spec.models.map((m) => m.slice(m.indexOf(':') + 1));
  await Promise.all(
    spec.comparisons.map((c) => {
      const answers = new Map(names.map((name) => [name, new Answer(c.k, Number(MODEL_INDEX.exec(name)?.[1] ?? 0), spec.deltas)]));
      return follow(a, `${spec.urlA}/relay`, JSON.stringify({ prompt: c.prompt, models: names }), {}, answers, spec);
    }),
  );
  return { a: a.summary(), misses, wallMs: nowMs() - t0 };
}

process.on('message', (message: { type: 'run'; spec: StreamLoadSpec }) => {
  if (message.type !== 'run') return;
  const run = message.spec.mode === 'relay' ? runRelay : runOurs;
  run(message.spec).then(
    (result) => {
      flushDump();
      process.send!({ type: 'result', result });
    },
    (error: Error) => process.send!({ type: 'error', message: error.stack ?? String(error) }),
  );
});
process.on('disconnect', () => process.exit(0));
