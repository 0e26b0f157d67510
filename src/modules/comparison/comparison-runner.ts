/**
 * Runs comparisons: one prompt, 2..8 models, all called at once, each with its
 * own timeout and AbortController. Each response row is written when its
 * model settles (COMPLETED / FAILED / TIMED_OUT); one model failing, timing out
 * or lacking a key never affects the others. Deltas go to the comparison's
 * channel (see comparison-events.ts). The work runs on its own EntityManager
 * forks, so a client that disconnects does not stop it.
 *
 * Settling is a conditional update (`where status in (PENDING, STREAMING)`):
 * the runner, a cancel on any instance, and the lease sweep race safely and
 * the first writer wins.
 *
 * Nothing stays running forever (leases):
 * - every response row carries a lease: the instance running it
 *   (`lease_owner`) and a heartbeat (`heartbeat_at`, database time), set when
 *   the row is written and refreshed every quarter of COMPARISON_LEASE_MS
 *   while this process runs it (one statement for all of them);
 * - every instance, every quarter of the lease and once at start, settles the
 *   unsettled responses whose heartbeat is older than the lease as FAILED
 *   (`LEASE_EXPIRED`), tells their subscribers and bumps their owner's
 *   cache generation: a crashed instance's responses settle within about
 *   1.25 × the lease, whichever instances survive;
 * - the final write is retried on connection errors; if the outcome of a
 *   failed attempt is unknown and the row is found settled, the stored state
 *   is announced, so subscribers never wait for a write that did happen;
 * - at shutdown, running responses get SHUTDOWN_GRACE_MS to finish, then are
 *   settled FAILED `INTERRUPTED_BY_SHUTDOWN` (retryable like any FAILED one),
 *   and open event streams end with their final events.
 */
import type { CachePort } from '../../cache/cache.port';
import type { ReadCacheInvalidation } from '../../read-cache/invalidation';
import type { PubSub } from '../../pubsub/pubsub.port';
import type { Orm } from '../../db/orm';
import type { EntityManager } from '@mikro-orm/postgresql';
import { raw } from '@mikro-orm/core';
import { hostname } from 'node:os';
import { randomBytes, randomUUID } from 'node:crypto';
import { BurstGate } from '../../db/burst-gate';
import type { CalmGate, TurnGate } from '../../turns';
import type { PreparedStatement, PreparedStatements } from '../../db/prepared';
import { sleep } from '../../timeout';
import { isRetryableDatabaseError } from '../../db/connection-errors';
import { excludedFromDeadline, outsideDeadline } from '../../db/request-deadline';
import { tracingOn, withSpan } from '../../observability/tracing';
import { isUuid } from '../../db/pagination';
import { pgArray } from '../../db/sql';
import type { Principal } from '../../auth/principal';
import { AppError, badInput, notFound } from '../../errors';
import { codePointLength, sliceCodePoints } from '../../input/text-input';
import { costUsd, findCatalogEntry } from '../../llm/catalog';
import { endpointKey, type ModelId, parseModelId, toProvider } from '../../llm/model-id';
import { logProviderFailure } from '../../llm/provider-failure-log';
import { ProviderCallError } from '../../llm/provider-errors';
import type { ProviderThreads } from '../../llm/provider-threads';
import { CancelledError, type ChatTurn, OutputLimitError } from '../../llm/stream-completion';
import type { Logger } from '../../observability/logger';
import type { Metrics } from '../../observability/metrics';
import type { ModelAccess, ResolvedModel } from '../api-key/model-access';
import { cleanTitle, type ConversationService } from '../conversation/conversation.service';
import { validatePrompt } from '../message/chat.service';
import { plannedCall, type ProviderCallAdmission } from '../usage/usage.service';
import { historiesByModel } from '../message/history';
import { Message, MessageRole } from '../message/message.entity';
import { REVEALED } from '../../db/read-plan';
import { assertNothingHidden, responseLabel, shuffled } from './blind';
import { categorize, parseCategory } from './category';
import {
  type ComparisonEventStream,
  comparisonEventStream,
  CONTROL_CHANNEL,
  type ControlMessage,
  ResponsePublisher,
} from './comparison-events';
import {
  ComparisonResponse,
  type ComparisonResponseView,
  ComparisonResult,
  type ComparisonView,
  ResponseKind,
  ResponseStatus,
  SETTLED_STATUSES,
} from './comparison.entity';
import { SettleWriter } from './settle-writer';

export const MIN_MODELS = 2;
export const MAX_MODELS = 8;
const UNSETTLED = [ResponseStatus.PENDING, ResponseStatus.STREAMING];

/** Reasons stored in `error` (both are FAILED, so `retryComparisonResponse` accepts them). */
export const INTERRUPTED_BY_SHUTDOWN = 'Interrupted by shutdown: the server stopped before this model answered; retry it';
export const LEASE_EXPIRED = 'Interrupted: the server running this model stopped (its lease expired); retry it';
export const UNSTORABLE = 'Internal error: the answer could not be stored; retry it';

/**
 * Marks SQL the runner sends on its own schedule (heartbeats, lease sweeps),
 * not on behalf of a request: it shows in the slow-query log with this tag,
 * and statement counters that measure a request leave it out.
 */
export const BACKGROUND_SQL_TAG = '/* background */';

/** How long the final write of a response is retried on connection errors (at most one lease: then other instances settle it). */
const SETTLE_RETRY_MS = 10_000;
/** At shutdown, how long open event streams get to send their final events. */
const STREAM_SHUTDOWN_MS = 2_000;

export interface RunComparisonArgs {
  prompt: string;
  models: string[];
  conversationId?: string | null;
  /** Shuffle the models (crypto RNG) and hide them until the vote (`blind.ts`). */
  blind?: boolean | null;
  /** Given category (validated by `parseCategory`); absent: assigned by `categorize`. */
  category?: string | null;
}

export interface FuseComparisonArgs {
  comparisonId: string;
  /** The model that writes the merged answer, `provider:name[@label]`. */
  model: string;
  /** What to favour when merging; default: keep what is correct and complete, drop repetition. */
  instruction?: string | null;
}

/** A comparison just stored: its row and its PENDING responses as read paths return them. */
export interface StartedComparison {
  view: ComparisonView;
  responses: ComparisonResponseView[];
}

/** Fused answers a comparison may hold (labels stay letters: 8 models + 8 fused ≤ "P"). */
export const MAX_FUSED_PER_COMPARISON = 8;

/** The most a fuse may send: the prompt, every answer and the instruction together (UTF-8 bytes). */
export const MAX_FUSE_INPUT_BYTES = 256 * 1024;

const FUSE_SYSTEM =
  'You are given a prompt and several answers to it, each under a label. Write one answer to the prompt that merges ' +
  'the best of them: keep what is correct and complete, resolve disagreements, drop repetition. Answer the prompt ' +
  'directly; do not mention the labels or that answers were merged.';

/** What a fusing model is sent: labels only while the comparison is unrevealed (model names would undo a blind test). */
export function fuseTurns(
  prompt: string,
  sources: ReadonlyArray<Pick<ComparisonResponse, 'position' | 'model' | 'content'>>,
  hidden: boolean,
  instruction: string | null,
): ChatTurn[] {
  const answers = sources.map((r) => {
    const name = hidden ? `Answer ${responseLabel(r.position)}` : `Answer ${responseLabel(r.position)} (${r.model})`;
    return `${name}:\n${r.content}`;
  });
  const ask = instruction ? `\n\nInstruction: ${instruction}` : '';
  return [
    { role: 'system', content: FUSE_SYSTEM },
    { role: 'user', content: `Prompt:\n${prompt}\n\n${answers.join('\n\n')}${ask}` },
  ];
}

export interface ComparisonRunnerDeps {
  orm: Orm;
  cache: CachePort;
  pubsub: PubSub;
  invalidation: ReadCacheInvalidation;
  conversations: ConversationService;
  models: ModelAccess;
  /** Rate limit and spend budget, checked before any provider is called. */
  usage: ProviderCallAdmission;
  /** Where answers are streamed from (worker threads, or in-process). */
  providerStreams: ProviderThreads;
  requestTimeoutMs: number;
  /** A lease not renewed for this long is expired (see the header). */
  leaseMs: number;
  /** Per-response output limit (UTF-8 bytes); a longer answer is cut and settles FAILED with the text so far. */
  maxOutputBytes: number;
  logger: Logger;
  metrics: Metrics;
  /** Named statements outside the unit of work (the start's write). */
  prepared: PreparedStatements;
  /**
   * Starts storing at once (the rest wait their turn, up to
   * {@link START_QUEUE_MS}); default 8. Half the pool leaves room for
   * everything else.
   */
  startConcurrency?: number;
  /** A burst of starts and provider calls takes one event-loop turn each (`../../turns.ts`); absent: no turns. */
  turns?: Pick<TurnGate, 'take'>;
  /** Provider calls start only while the event loop keeps up (`CalmGate`, PACE_PROVIDER_CALLS); absent: at once (or by `turns`). */
  callGate?: Pick<CalmGate, 'take'>;
}

/**
 * A start's rows, written by one statement (atomic on its own): a new
 * conversation (`$5` true) or the existing one's `updated_at`, the
 * comparison, its prompt message (at the comparison's time, before the
 * answers) and one PENDING response per model, leased to this instance. The
 * columns are the entities' (`comparison.entity.ts`, `message.entity.ts`,
 * `conversation.entity.ts`); foreign keys are checked at the end of the
 * statement, when every row is there.
 */
const START_SQL = `with new_conversation as (
    insert into conversations (id, created_at, updated_at, owner_id, title)
    select $1::uuid, $2::timestamptz, $2, $3::uuid, $4::text where $5::boolean
  ), touched as (
    update conversations set updated_at = $2 where id = $1 and not $5
  ), comparison as (
    insert into comparison_results (id, created_at, owner_id, conversation_id, prompt, blind, category)
    values ($6::uuid, $2, $3, $1, $7::text, $8::boolean, $9::text)
  ), prompt as (
    insert into messages (id, created_at, conversation_id, role, content, comparison_id, version)
    values ($10::uuid, $2, $1, 'USER', $7, $6, 1)
  )
  insert into comparison_responses
    (id, created_at, api_token_id, comparison_id, position, provider, model, key_label, status, content, lease_owner)
  select r.id, $2, $11::uuid, $6, r.position, r.provider::provider, r.model, r.key_label, 'PENDING', '', $12::text
    from unnest($13::uuid[], $14::smallint[], $15::text[], $16::text[], $17::text[]) as r(id, position, provider, model, key_label)`;

/** How long a response's first delta may wait to be stored as STREAMING (batched with the others of that window). */
const STREAMING_MARK_MS = 50;

/** How long a start may wait behind others (a burst) before it is refused with SERVICE_UNAVAILABLE. */
export const START_QUEUE_MS = 30_000;

type SettleFields = Partial<
  Pick<
    ComparisonResponse,
    'content' | 'error' | 'latencyMs' | 'timeToFirstTokenMs' | 'promptTokens' | 'completionTokens' | 'costUsd' | 'customEndpoint'
  >
> & {
  status: ResponseStatus;
};

interface Job {
  response: { id: string; comparisonId: string; model: ModelId };
  history: ChatTurn[];
  userId: string;
  /**
   * The comparison is blind and not yet voted on: the call leaves the key's
   * `lastUsedAt` to the reveal (see `ApiKeyService.credentials`).
   */
  blind: boolean;
}

export class ComparisonRunner {
  /** This process, as `lease_owner` of the responses it runs (host/pid/random: unique even across restarts). */
  readonly instanceId = `${hostname()}/${process.pid}/${randomBytes(3).toString('hex')}`;
  /** Responses running in this process, for cancel, heartbeats and shutdown. */
  private readonly running = new Map<string, { comparisonId: string; controller: AbortController; reason?: string }>();
  /** Publishers of the responses running here: local subscribers replay from them, others ask them to `sync`. */
  private readonly live = new Map<string, ResponsePublisher>();
  /**
   * Comparisons started here and not yet finished, with their owner and responses in position order: a
   * subscriber's authorisation and replay need no SQL while they run (`runsHere`). Only revealed ones
   * (blind ones can be revealed by a vote meanwhile); dropped when a fuse or retry adds a run.
   */
  private readonly startedHere = new Map<string, { ownerId: string; responseIds: string[] }>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly done = new Map<string, Promise<void>>();
  /** Open `comparisonEvents` streams, ended at shutdown. */
  private readonly streams = new Set<ComparisonEventStream>();
  /** Responses whose first delta arrived since the last flush (user id by response id): marked STREAMING in one statement. */
  private startedStreaming = new Map<string, string>();
  private unsubscribeControl: (() => Promise<void>) | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;
  private closing: Promise<void> | undefined;
  private readonly startGate: BurstGate;
  /** Settles of one turn of the event loop, written in one statement. */
  private readonly settleWriter: SettleWriter;
  private readonly startStatement: PreparedStatement;

  constructor(private readonly deps: ComparisonRunnerDeps) {
    this.startGate = new BurstGate(deps.startConcurrency ?? 8, START_QUEUE_MS);
    this.settleWriter = new SettleWriter(deps.orm);
    this.startStatement = deps.prepared.prepare(START_SQL);
  }

  /** Listens for cancels issued on other instances, settles expired leases, and starts heartbeats and sweeps. */
  async start(): Promise<void> {
    this.unsubscribeControl = await this.deps.pubsub.subscribe<ControlMessage>(CONTROL_CHANNEL, (m) => {
      if ('cancel' in m && typeof m.cancel === 'string') this.abortLocal(m.cancel, 'Cancelled');
      // A subscriber on another instance has this response's text up to `from` (its snapshot).
      else if ('sync' in m && typeof m.sync === 'string') this.live.get(m.sync)?.resend(Number(m.from));
    });
    const swept = await this.sweepExpiredLeases();
    if (swept) this.deps.logger.warn({ swept }, 'settled comparison responses whose instance stopped (lease expired) as FAILED');
    const every = Math.max(25, Math.floor(this.deps.leaseMs / 4));
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), every).unref();
    this.sweepTimer = setInterval(() => void this.sweepExpiredLeases(), every).unref();
  }

  /**
   * Validates, stores the comparison (prompt message + PENDING responses) in one
   * transaction, starts every model, and returns the comparison id at once.
   */
  async begin(principal: Principal, args: RunComparisonArgs): Promise<StartedComparison> {
    this.refuseWhenClosing();
    const prompt = validatePrompt(args.prompt, 'prompt');
    const blind = args.blind === true;
    // Positions (and so labels, ids and insertion order) follow this order: shuffled when blind.
    const models = blind ? shuffled(parseModels(args.models)) : parseModels(args.models);
    const category = parseCategory(args.category) ?? categorize(prompt);
    const em = this.deps.orm.em.fork();
    await this.deps.turns?.take();
    // The reads, the admission and the transaction: behind the gate, so a burst of starts queues here rather than at the pool.
    const { started, jobs, release } = await this.startGate.run(() => this.store(em, principal, args, prompt, blind, models, category));
    const comparison = started.view;
    // The keys of every model in one read; the reserved budget is given back once every response's cost is recorded.
    const languageModels = this.deps.models.resolveModels(em, principal.userId, models, !blind);
    // The model calls and their final writes outlive the request: never cut by its deadline (REQUEST_DEADLINE_MS).
    const all = outsideDeadline(() => Promise.all(jobs.map((job, i) => this.execute(job, languageModels[i]!))));
    const record = { ownerId: principal.userId, responseIds: jobs.map((job) => job.response.id) };
    if (comparison.revealed) this.startedHere.set(comparison.id, record);
    this.track(
      comparison.id,
      all
        .then(() => undefined)
        .finally(() => {
          if (this.startedHere.get(comparison.id) === record) this.startedHere.delete(comparison.id);
          return release();
        }),
    );
    return started;
  }

  /**
   * The responses (position order) of a revealed comparison of `userId` that
   * this process started and still runs; undefined otherwise (read it from
   * PostgreSQL). A subscriber to it needs no SQL (`comparisonEventStream`).
   */
  runsHere(comparisonId: string, userId: string): readonly string[] | undefined {
    const record = this.startedHere.get(comparisonId);
    return record && record.ownerId === userId ? record.responseIds : undefined;
  }

  /** Admits the calls and stores the prompt message, the comparison and its PENDING responses in one transaction. */
  private async store(
    em: EntityManager,
    principal: Principal,
    args: RunComparisonArgs,
    prompt: string,
    blind: boolean,
    models: ModelId[],
    category: ComparisonResult['category'],
  ): Promise<{ started: StartedComparison; jobs: Job[]; release: Awaited<ReturnType<ProviderCallAdmission['admit']>> }> {
    const existing = args.conversationId ? await this.deps.conversations.getForWrite(em, principal, args.conversationId) : null;
    if (existing) await assertNothingHidden(em, existing.id);
    const histories = existing ? await historiesByModel(em, existing.id, models.map(endpointKey)) : new Map<string, ChatTurn[]>();
    const turnsOf = (model: ModelId): ChatTurn[] => [...(histories.get(endpointKey(model)) ?? []), { role: 'user', content: prompt }];
    // Rate limit (a point per model) and budget, before anything is written or sent.
    const release = await this.deps.usage.admit(
      principal,
      models.map((m) => plannedCall(m, turnsOf(m))),
    );

    const createdAt = new Date();
    const conversationId = existing?.id ?? randomUUID();
    const comparison: ComparisonView = {
      id: randomUUID(),
      createdAt,
      ownerId: principal.userId,
      conversationId,
      prompt,
      blind,
      category,
      // Nothing voted on yet: the rule's answer for a comparison just written.
      revealed: REVEALED.check({ blind, voted: false }),
    };
    // The rows as written (what a read right after would return, before any model answers).
    const responses: ComparisonResponseView[] = models.map((model, position) => ({
      id: randomUUID(),
      createdAt,
      comparisonId: comparison.id,
      position,
      provider: toProvider(model.provider),
      model: model.id,
      keyLabel: model.label,
      status: ResponseStatus.PENDING,
      content: '',
      error: null,
      timeToFirstTokenMs: null,
      customEndpoint: false,
      kind: ResponseKind.MODEL,
      sourceIds: [],
      promptTokens: null,
      completionTokens: null,
      latencyMs: null,
      costUsd: null,
      settledAt: null,
    }));
    const responseIds = responses.map((r) => r.id);
    try {
      // One statement (its own transaction): no unit of work and one round trip on the hottest write.
      await this.deps.prepared.query(this.startStatement, [
        conversationId,
        createdAt,
        principal.userId,
        existing ? null : cleanTitle(titleFrom(prompt)),
        existing === null,
        comparison.id,
        prompt,
        blind,
        category,
        randomUUID(),
        principal.token?.id ?? null,
        this.instanceId,
        pgArray(responseIds),
        pgArray(models.map((_, position) => String(position))),
        pgArray(responses.map((r) => r.provider)),
        pgArray(responses.map((r) => r.model)),
        pgArray(responses.map((r) => r.keyLabel)),
      ]);
    } catch (error) {
      await release();
      throw error;
    }
    const jobs = responseIds.map((id, i) => ({
      response: { id, comparisonId: comparison.id, model: models[i]! },
      history: turnsOf(models[i]!),
      userId: principal.userId,
      blind,
    }));
    return { started: { view: comparison, responses }, jobs, release };
  }

  /**
   * The live event stream of a comparison the caller has already been
   * authorised for; `revealed` false (blind, not voted on) hides provider error texts;
   * `ready` paces it to its client (see `Context.streamReady`).
   */
  events(comparisonId: string, revealed: boolean, ready?: () => Promise<void> | void, localIds?: readonly string[]): ComparisonEventStream {
    const deps = { ...this.deps, live: this.live };
    const stream = comparisonEventStream(deps, this.deps.orm.em.fork(), comparisonId, revealed, ready, localIds);
    this.streams.add(stream);
    void stream.finished.then(() => this.streams.delete(stream));
    if (this.closing) void stream.shutdown();
    return stream;
  }

  /** Resolves when every response this process started for the comparison (or `fuse:<responseId>`: that fuse) has settled. */
  async settled(comparisonId: string): Promise<void> {
    // Waiting for models (bounded by LLM_TIMEOUT_MS) does not count against the request's deadline.
    await excludedFromDeadline(async () => this.done.get(comparisonId));
  }

  /** Re-runs one FAILED / TIMED_OUT response with the history its comparison had, and waits for it. */
  async retry(principal: Principal, responseId: string): Promise<void> {
    // A malformed id is a missing one, answered before any SQL.
    if (!isUuid(responseId)) throw notFound('Comparison response');
    this.refuseWhenClosing();
    const em = this.deps.orm.em.fork();
    const [response] = await em.find(
      ComparisonResponse,
      { id: responseId, comparison: { owner: principal.userId } },
      { populate: ['comparison'] },
    );
    if (!response) throw notFound('Comparison response');
    if (response.status !== ResponseStatus.FAILED && response.status !== ResponseStatus.TIMED_OUT) {
      throw badInput(`Only FAILED or TIMED_OUT responses can be retried (this one is ${response.status})`, 'id');
    }
    const comparison = response.comparison.getEntity();
    this.startedHere.delete(comparison.id);
    const model = parseModelId(`${response.model}@${response.keyLabel}`);
    const promptMessage = await em.findOne(Message, { comparison: comparison.id, role: MessageRole.USER });
    const history = promptMessage
      ? ((await historiesByModel(em, promptMessage.conversation.id, [endpointKey(model)], promptMessage)).get(endpointKey(model)) ?? [])
      : [];
    const turns: ChatTurn[] = [...history, { role: 'user', content: comparison.prompt }];
    // Still hidden (blind, no vote yet): the key's lastUsedAt waits for the reveal, as for the first call.
    const hidden = comparison.blind && !(await revealedById(em, comparison.id));
    const release = await this.deps.usage.admit(principal, [plannedCall(model, turns)]);
    let reset: number;
    try {
      reset = await em.nativeUpdate(
        ComparisonResponse,
        { id: response.id, status: { $in: [ResponseStatus.FAILED, ResponseStatus.TIMED_OUT] } },
        {
          status: ResponseStatus.PENDING,
          content: '',
          error: null,
          latencyMs: null,
          timeToFirstTokenMs: null,
          promptTokens: null,
          completionTokens: null,
          costUsd: null,
          settledAt: null,
          // The retry's cost counts against the token (if any) that asked for it.
          apiTokenId: principal.token?.id ?? null,
          leaseOwner: this.instanceId,
          heartbeatAt: raw('now()'),
        },
      );
    } catch (error) {
      await release();
      throw error;
    }
    if (!reset) {
      await release();
      throw badInput('This response is already being retried', 'id');
    }

    const model$ = this.deps.models.resolveModels(em, principal.userId, [model], !hidden)[0]!;
    const retried: Job = {
      response: { id: response.id, comparisonId: comparison.id, model },
      history: turns,
      userId: principal.userId,
      blind: hidden,
    };
    const job = outsideDeadline(() => this.execute(retried, model$)).finally(release);
    this.track(`retry:${response.id}`, job);
    await excludedFromDeadline(() => job);
  }

  /**
   * Fuses a comparison's settled answers (issue 19 item 4): `model` gets the
   * prompt and every COMPLETED MODEL answer, under its label only while the
   * comparison is blind and unrevealed (its model name too once revealed),
   * and writes one merged answer, stored as a FUSED response (`sourceIds`:
   * the answers it was given) and streamed on the comparison's channel like
   * any other. Admission (rate limit, budget) as for any call; nothing is
   * written when refused. It reveals nothing: no vote is written, and while
   * the comparison is unrevealed the fused response is concealed like the
   * others and the key's `lastUsedAt` waits for the reveal. Returns the new
   * response's id at once (PENDING); `settled(comparisonId)` waits for it.
   */
  async fuse(principal: Principal, args: FuseComparisonArgs): Promise<string> {
    if (!isUuid(args.comparisonId)) throw notFound('Comparison');
    this.refuseWhenClosing();
    const model = parseModelId(args.model);
    const instruction = args.instruction == null ? null : validatePrompt(args.instruction, 'instruction');
    const em = this.deps.orm.em.fork();
    const [comparison] = await em.find(ComparisonResult, { id: args.comparisonId, owner: principal.userId });
    if (!comparison) throw notFound('Comparison');
    // Its responses are no longer only the ones started with it.
    this.startedHere.delete(comparison.id);
    const hidden = !(await revealedById(em, comparison.id));
    const all = await em.find(ComparisonResponse, { comparison: comparison.id }, { orderBy: { position: 'asc' } });
    const sources = all.filter((r) => r.kind === ResponseKind.MODEL && r.status === ResponseStatus.COMPLETED);
    if (sources.length < 2) {
      throw badInput(`Fusing needs at least two COMPLETED answers; this comparison has ${sources.length}`, 'comparisonId');
    }
    const turns = fuseTurns(comparison.prompt, sources, hidden, instruction);
    const bytes = turns.reduce((n, t) => n + Buffer.byteLength(t.content, 'utf8'), 0);
    if (bytes > MAX_FUSE_INPUT_BYTES) {
      throw badInput(`The answers to fuse come to ${bytes} bytes; at most ${MAX_FUSE_INPUT_BYTES} can be fused`, 'comparisonId');
    }
    const release = await this.deps.usage.admit(principal, [plannedCall(model, turns)]);
    let id: string;
    try {
      id = await em.transactional(async (tx) => {
        // Under the comparison's row lock: two fuses at once get the next two positions (labels), never the same one.
        const ctx = tx.getTransactionContext();
        const run = <T extends object[]>(sql: string) => tx.getConnection().execute<T>(sql, [comparison.id], 'all', ctx);
        await run(`select 1 from comparison_results where id = ? for update`);
        // A statement of its own: its snapshot is taken after the lock, so it sees the fuse that held it.
        const [{ next, fused }] = await run<Array<{ next: number; fused: number }>>(
          `select coalesce(max(position), -1)::int + 1 as next, (count(*) filter (where kind = 'FUSED'))::int as fused
             from comparison_responses where comparison_id = ?`,
        );
        if (fused >= MAX_FUSED_PER_COMPARISON) {
          throw badInput(`A comparison holds at most ${MAX_FUSED_PER_COMPARISON} fused answers`, 'comparisonId');
        }
        const row = tx.create(ComparisonResponse, {
          comparison: comparison.id,
          position: next,
          kind: ResponseKind.FUSED,
          sourceIds: sources.map((r) => r.id),
          provider: toProvider(model.provider),
          model: model.id,
          keyLabel: model.label,
          leaseOwner: this.instanceId,
          apiTokenId: principal.token?.id ?? null,
        });
        return row.id;
      });
    } catch (error) {
      await release();
      throw error;
    }
    const model$ = this.deps.models.resolveModels(em, principal.userId, [model], !hidden)[0]!;
    const job: Job = { response: { id, comparisonId: comparison.id, model }, history: turns, userId: principal.userId, blind: hidden };
    this.track(`fuse:${id}`, outsideDeadline(() => this.execute(job, model$)).finally(release));
    return id;
  }

  /** Aborts the comparison's unsettled responses, on this instance and (through pub/sub) on every other. */
  async cancel(principal: Principal, comparisonId: string): Promise<void> {
    if (!isUuid(comparisonId)) throw notFound('Comparison');
    const em = this.deps.orm.em.fork();
    const [comparison] = await em.find(ComparisonResult, { id: comparisonId, owner: principal.userId });
    if (!comparison) throw notFound('Comparison');
    this.abortLocal(comparisonId, 'Cancelled');
    await this.deps.pubsub.publish(CONTROL_CHANNEL, { cancel: comparisonId });
    await this.settled(comparisonId);
    // Responses nobody is running any more (e.g. their instance died) are settled here.
    const stuck = await em.find(ComparisonResponse, { comparison: comparisonId, status: { $in: UNSETTLED } });
    for (const response of stuck) {
      await this.settle(
        response.id,
        comparisonId,
        principal.userId,
        { status: ResponseStatus.FAILED, error: 'Cancelled' },
        new ResponsePublisher(this.deps, comparisonId, response.id),
      );
    }
  }

  /**
   * Settles, as FAILED `LEASE_EXPIRED`, every unsettled response whose lease
   * was not renewed for `leaseMs` (whichever instance held it), announces the
   * settled state to subscribers and bumps the owners' cache generations.
   * Runs at start and every quarter of the lease; returns how many it settled.
   */
  sweepExpiredLeases(): Promise<number> {
    return (this.sweeping ??= this.sweep().finally(() => (this.sweeping = undefined)));
  }

  private async sweep(): Promise<number> {
    let rows: Array<{ id: string; comparison_id: string; owner_id: string; lease_owner: string | null }>;
    try {
      rows = await this.deps.orm.em.getConnection().execute(
        `${BACKGROUND_SQL_TAG} update comparison_responses r
            set status = 'FAILED', error = ?, content = '', settled_at = now()
           from comparison_results c
          where c.id = r.comparison_id
            and r.status in ('PENDING', 'STREAMING')
            and r.heartbeat_at < now() - make_interval(secs => ?)
        returning r.id, r.comparison_id, c.owner_id, r.lease_owner`,
        [LEASE_EXPIRED, this.deps.leaseMs / 1000],
      );
    } catch (err) {
      this.deps.logger.warn(failure(err), 'could not sweep expired comparison leases (will retry)');
      return 0;
    }
    for (const row of rows) {
      this.deps.logger.warn(
        { responseId: row.id, comparisonId: row.comparison_id, leaseOwner: row.lease_owner },
        'comparison response lease expired: settled FAILED',
      );
      await this.deps.invalidation.invalidateUser(row.owner_id);
      await new ResponsePublisher(this.deps, row.comparison_id, row.id).settled(ResponseStatus.FAILED, '', LEASE_EXPIRED);
    }
    return rows.length;
  }

  /** Renews the lease of every response this process runs, in one statement. */
  private async heartbeat(): Promise<void> {
    const ids = [...this.running.keys()];
    if (!ids.length) return;
    await this.deps.orm.em
      .getConnection()
      .execute(
        `${BACKGROUND_SQL_TAG} update comparison_responses set heartbeat_at = now()
          where id in (${ids.map(() => '?').join(', ')}) and lease_owner = ? and status in ('PENDING', 'STREAMING')`,
        [...ids, this.instanceId],
      )
      .catch((err: unknown) =>
        this.deps.logger.warn({ ...failure(err), responses: ids.length }, 'could not renew comparison leases (will retry)'),
      );
  }

  /**
   * Graceful shutdown, idempotent: refuses new comparisons, lets running
   * responses finish for up to `graceMs` (their leases kept alive), settles
   * the rest FAILED `INTERRUPTED_BY_SHUTDOWN`, then ends open event streams
   * with their final events.
   */
  close(graceMs = 0): Promise<void> {
    return (this.closing ??= this.shutdown(graceMs));
  }

  private async shutdown(graceMs: number): Promise<void> {
    clearInterval(this.sweepTimer);
    await this.sweeping;
    if (this.inFlight.size) {
      this.deps.logger.info({ responses: this.running.size, graceMs }, 'waiting for running comparisons to finish');
      await settledWithin([...this.inFlight], graceMs);
    }
    if (this.running.size) this.deps.logger.warn({ responses: this.running.size }, 'settling comparison responses interrupted by shutdown');
    for (const run of this.running.values()) {
      run.reason = INTERRUPTED_BY_SHUTDOWN;
      run.controller.abort();
    }
    await Promise.allSettled([...this.inFlight]);
    clearInterval(this.heartbeatTimer);
    await this.unsubscribeControl?.();
    await settledWithin(
      [...this.streams].map((stream) => stream.shutdown()),
      STREAM_SHUTDOWN_MS,
    );
  }

  private refuseWhenClosing(): void {
    if (this.closing) throw new AppError('SERVICE_UNAVAILABLE', 'The server is shutting down: retry in a moment');
  }

  private track(key: string, job: Promise<void>): void {
    const guarded = job.catch((err) => this.deps.logger.error({ err, key }, 'comparison job failed'));
    this.inFlight.add(guarded);
    this.done.set(key, guarded);
    void guarded.finally(() => {
      this.inFlight.delete(guarded);
      if (this.done.get(key) === guarded) this.done.delete(key);
    });
  }

  private abortLocal(comparisonId: string, reason: string): void {
    for (const run of this.running.values()) {
      if (run.comparisonId === comparisonId) {
        run.reason = reason;
        run.controller.abort();
      }
    }
  }

  /**
   * {@link respond} in a span of its own, a child of the span active where it starts (the request's
   * GraphQL operation): the background work continues the request's trace.
   */
  private execute(job: Job, model$: Promise<ResolvedModel>): Promise<void> {
    if (!tracingOn()) return this.respond(job, model$);
    const { id, comparisonId, model } = job.response;
    const attributes = {
      'llmselect.comparison_id': comparisonId,
      'llmselect.response_id': id,
      'gen_ai.provider.name': model.provider,
      'gen_ai.request.model': model.name,
    };
    return withSpan('comparison.response', { attributes }, () => this.respond(job, model$));
  }

  /** One model: call, stream, settle. Never throws (a model that could not be made, e.g. no key, settles FAILED). */
  private async respond(job: Job, model$: Promise<ResolvedModel>): Promise<void> {
    const { id, comparisonId, model } = job.response;
    const publisher = new ResponsePublisher(this.deps, comparisonId, id);
    const controller = new AbortController();
    const run = { comparisonId, controller, reason: undefined as string | undefined };
    this.running.set(id, run);
    this.live.set(id, publisher);
    const started = performance.now();
    let outcome: ResponseStatus = ResponseStatus.FAILED;
    // Known once the key is read: stored with whatever outcome the call has.
    let customEndpoint = false;
    try {
      const { spec, customEndpoint: custom } = await model$;
      customEndpoint = custom;
      let streaming = false;
      await (this.deps.callGate ?? this.deps.turns)?.take();
      const result = await this.deps.providerStreams.stream({
        spec,
        messages: job.history,
        timeoutMs: this.deps.requestTimeoutMs,
        maxOutputBytes: this.deps.maxOutputBytes,
        signal: controller.signal,
        onDelta: (delta) => {
          if (!streaming) {
            streaming = true;
            publisher.status(ResponseStatus.STREAMING);
            this.markStreaming(id, job.userId);
          }
          publisher.delta(delta);
        },
      });
      outcome = ResponseStatus.COMPLETED;
      await this.settle(
        id,
        comparisonId,
        job.userId,
        {
          status: ResponseStatus.COMPLETED,
          content: result.text,
          latencyMs: result.latencyMs,
          timeToFirstTokenMs: result.timeToFirstTokenMs,
          promptTokens: result.promptTokens,
          completionTokens: result.completionTokens,
          costUsd: costUsd(findCatalogEntry(model.provider, model.name), result.promptTokens, result.completionTokens),
          customEndpoint,
        },
        publisher,
      );
    } catch (error) {
      const latencyMs = Math.round(performance.now() - started);
      if (error instanceof ProviderCallError) {
        logProviderFailure(this.deps.logger, model, error, { responseId: id, comparisonId });
        const status = error.reason === 'TIMEOUT' ? ResponseStatus.TIMED_OUT : ResponseStatus.FAILED;
        outcome = status;
        // A cut answer keeps what arrived up to the limit; one that failed or timed out mid-stream, the text its
        // subscribers already saw.
        const kept = { content: error instanceof OutputLimitError ? error.partialText : publisher.content };
        await this.settle(
          id,
          comparisonId,
          job.userId,
          { status, error: `${error.reason}: ${error.message}`, latencyMs, customEndpoint, ...kept },
          publisher,
        );
      } else if (error instanceof CancelledError) {
        await this.settle(
          id,
          comparisonId,
          job.userId,
          // Stopped mid-answer: the text streamed so far stays, as it was shown.
          { status: ResponseStatus.FAILED, error: run.reason ?? 'Cancelled', latencyMs, customEndpoint, content: publisher.content },
          publisher,
        );
      } else {
        this.deps.logger.error({ err: error, responseId: id }, 'comparison response failed unexpectedly');
        await this.settle(
          id,
          comparisonId,
          job.userId,
          { status: ResponseStatus.FAILED, error: 'Internal error', latencyMs, customEndpoint, content: publisher.content },
          publisher,
        );
      }
    } finally {
      this.running.delete(id);
      if (this.live.get(id) === publisher) this.live.delete(id);
      const provider = this.deps.metrics.providerLabel(model.provider);
      this.deps.metrics.llmLatency.observe({ provider }, (performance.now() - started) / 1000);
      this.deps.metrics.llmCalls.inc({ provider, status: outcome });
    }
  }

  /**
   * Stores STREAMING for responses whose first delta arrived within {@link STREAMING_MARK_MS}, in one
   * statement for all of them (the live stream says so at once; a burst of starts would otherwise write
   * once per loop turn), then bumps the owners' cache generations of the rows it changed. Best effort
   * and background work (not the request's): the settle follows anyway.
   */
  private markStreaming(responseId: string, userId: string): void {
    if (!this.startedStreaming.size) setTimeout(() => void this.flushStreaming(), STREAMING_MARK_MS);
    this.startedStreaming.set(responseId, userId);
  }

  private async flushStreaming(): Promise<void> {
    const batch = this.startedStreaming;
    this.startedStreaming = new Map();
    try {
      const marked: Array<{ id: string }> = await this.deps.orm.em.getConnection().execute(
        `${BACKGROUND_SQL_TAG} update comparison_responses set status = 'STREAMING'
            where id = any(?::uuid[]) and status = 'PENDING' returning id`,
        [pgArray([...batch.keys()])],
      );
      // Only what changed: a response that settled in the meantime is not marked, and its owner's reads stay cached.
      for (const userId of new Set(marked.map((r) => batch.get(r.id)!))) await this.deps.invalidation.invalidateUser(userId);
    } catch (err) {
      this.deps.logger.debug({ ...failure(err), responses: batch.size }, 'could not mark comparison responses STREAMING');
    }
  }

  /** Writes the final state if nobody else settled it first, then tells subscribers. */
  private async settle(
    id: string,
    comparisonId: string,
    userId: string,
    fields: SettleFields,
    publisher: ResponsePublisher,
  ): Promise<void> {
    const content = fields.content ?? '';
    const outcome = await this.writeSettled(id, { content, error: null, ...fields });
    if (outcome === 'not-written') return;
    if (outcome === 'rejected') {
      // PostgreSQL refused what we tried to store: store the failure instead (once), so it does not wait for the lease.
      if (fields.error === UNSTORABLE) return;
      return this.settle(
        id,
        comparisonId,
        userId,
        { status: ResponseStatus.FAILED, error: UNSTORABLE, latencyMs: fields.latencyMs },
        publisher,
      );
    }
    if (outcome === 'unknown') {
      // An attempt failed after the statement may have reached PostgreSQL: if the
      // row is settled, announce what it holds (ours, or whoever settled it first).
      const stored = await this.deps.orm.em
        .fork()
        .findOne(ComparisonResponse, { id })
        .catch(() => null);
      if (!stored || !SETTLED_STATUSES.includes(stored.status)) return; // the lease sweep will settle it
      await this.deps.invalidation.invalidateUser(userId);
      await publisher.settled(stored.status, stored.content, stored.error ?? null);
      return;
    }
    await this.deps.invalidation.invalidateUser(userId);
    await publisher.settled(fields.status, content, fields.error ?? null);
  }

  /**
   * The conditional final update (batched with the other settles of this
   * turn, see `settle-writer.ts`), retried with backoff on connection errors
   * for up to SETTLE_RETRY_MS or one lease, whichever is shorter. `unknown`:
   * an earlier attempt failed in a way that may or may not have committed and
   * the retry found nothing left to update, or the database stayed
   * unreachable. `rejected`: PostgreSQL refused the statement itself (not the
   * connection).
   */
  private async writeSettled(
    id: string,
    data: SettleFields & { content: string; error: string | null },
  ): Promise<'written' | 'not-written' | 'unknown' | 'rejected'> {
    const deadline = Date.now() + Math.min(SETTLE_RETRY_MS, this.deps.leaseMs);
    let failedBefore = false;
    for (let attempt = 1; ; attempt++) {
      try {
        const written = await this.settleWriter.write({ id, ...data });
        if (written) return 'written';
        return failedBefore ? 'unknown' : 'not-written';
      } catch (err) {
        // Connection errors and lock / statement timeouts: retried.
        if (!isRetryableDatabaseError(err)) {
          this.deps.logger.error(
            { ...failure(err), responseId: id, attempt },
            'could not store a comparison response: the statement was refused',
          );
          return 'rejected';
        }
        failedBefore = true;
        if (Date.now() >= deadline) {
          this.deps.logger.error(
            { ...failure(err), responseId: id, attempt },
            'could not store a comparison response (its lease will expire and settle it)',
          );
          return 'unknown';
        }
        this.deps.logger.warn(
          { ...failure(err), responseId: id, attempt },
          'storing a comparison response failed on a connection error: retrying',
        );
        await sleep(Math.min(2_000, 50 * 2 ** attempt));
      }
    }
  }
}

/**
 * What a failed statement is logged with: its class and SQLSTATE / errno, not
 * its message (the driver's message quotes the statement with its values,
 * which here include the model's answer).
 */
function failure(err: unknown): { error: string; code?: string } {
  const code = (err as { code?: unknown } | null)?.code;
  return { error: err instanceof Error ? err.name : typeof err, ...(typeof code === 'string' ? { code } : {}) };
}

/** Waits for every promise to settle, or `ms`, whichever comes first. */
async function settledWithin(promises: Array<Promise<unknown>>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.allSettled(promises), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

function parseModels(raw: readonly string[]): ModelId[] {
  const models = raw.map((m) => parseModelId(m));
  // One model through two labels (two endpoints) is allowed; the same endpoint twice is not.
  if (new Set(models.map(endpointKey)).size !== models.length) {
    throw badInput("models must be distinct: the same model may appear twice only with different '@label's", 'models');
  }
  if (models.length < MIN_MODELS || models.length > MAX_MODELS) {
    throw badInput(`A comparison takes ${MIN_MODELS} to ${MAX_MODELS} models, got ${models.length}`, 'models');
  }
  return models;
}

async function revealedById(em: EntityManager, comparisonId: string): Promise<boolean> {
  const [row] = await em
    .getConnection()
    .execute<Array<{ revealed: boolean }>>(`select ${REVEALED.sql('r')} as revealed from comparison_results r where r.id = ?`, [
      comparisonId,
    ]);
  return row?.revealed === true;
}

function titleFrom(prompt: string): string {
  const line = prompt.split('\n')[0]!.trim();
  // Cut between code points: half a surrogate pair would be stored as U+FFFD.
  return codePointLength(line) > 80 ? `${sliceCodePoints(line, 77)}...` : line;
}
