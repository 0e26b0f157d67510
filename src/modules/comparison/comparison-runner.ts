/**
 * Runs comparisons: one prompt, 2..8 models, all called at once, each with its
 * own timeout and AbortController. Each response row is written when its
 * model settles (COMPLETED / FAILED / TIMED_OUT); one model failing, timing out
 * or lacking a key never affects the others. Deltas go to the comparison's
 * channel (see comparison-events.ts). The work runs on its own EntityManager
 * forks, so a client that disconnects does not stop it.
 *
 * Settling is a conditional update (`where status in (PENDING, STREAMING)`):
 * the runner, a cancel on any instance, and the startup sweep race safely and
 * the first writer wins.
 */
import type { CachePort } from '../../cache/cache.port';
import type { UserCacheInvalidator } from '../../cache/invalidation';
import type { PubSub } from '../../cache/pubsub';
import type { Orm } from '../../db/orm';
import type { Principal } from '../../graphql/auth';
import { badInput, notFound } from '../../graphql/errors';
import { codePointLength, sliceCodePoints } from '../../graphql/text-input';
import { isUuid } from '../../db/pagination';
import { costUsd, findCatalogEntry } from '../../llm/catalog';
import { type ModelId, parseModelId, toGraphqlProvider } from '../../llm/model-id';
import { ProviderCallError } from '../../llm/providers';
import { CancelledError, type ChatTurn, OutputLimitError, streamCompletion } from '../../llm/stream-completion';
import type { Logger } from '../../observability/logger';
import type { Metrics } from '../../observability/metrics';
import { Provider } from '../api-key/api-key.entity';
import type { ModelAccess } from '../api-key/model-access';
import type { ConversationService } from '../conversation/conversation.service';
import { validatePrompt } from '../message/chat.service';
import { historiesByModel } from '../message/history';
import { Message, MessageRole } from '../message/message.entity';
import { type ComparisonEvent, comparisonEventStream, CONTROL_CHANNEL, ResponsePublisher } from './comparison-events';
import { ComparisonResponse, ComparisonResult, ResponseStatus } from './comparison.entity';

export const MIN_MODELS = 2;
export const MAX_MODELS = 8;
const UNSETTLED = [ResponseStatus.PENDING, ResponseStatus.STREAMING];

export interface RunComparisonArgs {
  prompt: string;
  models: string[];
  conversationId?: string | null;
}

export interface ComparisonRunnerDeps {
  orm: Orm;
  cache: CachePort;
  pubsub: PubSub;
  invalidation: UserCacheInvalidator;
  conversations: ConversationService;
  models: ModelAccess;
  requestTimeoutMs: number;
  /** Per-response output limit (UTF-8 bytes); a longer answer is cut and settles FAILED with the text so far. */
  maxOutputBytes: number;
  logger: Logger;
  metrics: Metrics;
}

interface Job {
  response: { id: string; comparisonId: string; model: ModelId };
  history: ChatTurn[];
  userId: string;
}

export class ComparisonRunner {
  /** Responses running in this process, for cancel and shutdown. */
  private readonly running = new Map<string, { comparisonId: string; controller: AbortController; reason?: string }>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly done = new Map<string, Promise<void>>();
  private unsubscribeControl: (() => Promise<void>) | undefined;

  constructor(private readonly deps: ComparisonRunnerDeps) {}

  /** Listens for cancels issued on other instances. */
  async start(): Promise<void> {
    this.unsubscribeControl = await this.deps.pubsub.subscribe<{ cancel: string }>(CONTROL_CHANNEL, (m) => {
      if (m?.cancel) this.abortLocal(m.cancel, 'Cancelled');
    });
  }

  /**
   * Validates, stores the comparison (prompt message + PENDING responses) in one
   * transaction, starts every model, and returns the comparison id at once.
   */
  async begin(principal: Principal, args: RunComparisonArgs): Promise<string> {
    const prompt = validatePrompt(args.prompt, 'prompt');
    const models = parseModels(args.models);
    const em = this.deps.orm.em.fork();
    const conversation = args.conversationId
      ? await this.deps.conversations.get(em, principal, args.conversationId)
      : await this.deps.conversations.create(em, principal, titleFrom(prompt));
    const modelIds = [...new Set(models.map((m) => m.id))];
    const histories = await historiesByModel(em, conversation.id, modelIds);

    const comparison = em.create(ComparisonResult, { owner: principal.userId, conversation, prompt });
    em.create(Message, { conversation, role: MessageRole.USER, content: prompt, comparison, createdAt: comparison.createdAt });
    const responses = models.map((model, position) =>
      em.create(ComparisonResponse, {
        comparison,
        position,
        provider: Provider[toGraphqlProvider(model.provider)],
        model: model.id,
        keyLabel: model.label,
        createdAt: comparison.createdAt,
      }),
    );
    conversation.updatedAt = new Date();
    await em.flush();
    await this.deps.invalidation.invalidateUser(principal.userId);

    const jobs: Job[] = responses.map((r, i) => ({
      response: { id: r.id, comparisonId: comparison.id, model: models[i]! },
      history: [...(histories.get(models[i]!.id) ?? []), { role: 'user', content: prompt }],
      userId: principal.userId,
    }));
    this.track(comparison.id, Promise.all(jobs.map((job) => this.execute(job))).then(() => undefined));
    return comparison.id;
  }

  /** The live event stream of a comparison the caller has already been authorised for. */
  events(comparisonId: string): AsyncIterableIterator<ComparisonEvent> {
    return comparisonEventStream(this.deps, this.deps.orm.em.fork(), comparisonId);
  }

  /** Resolves when every response this process started for the comparison has settled. */
  async settled(comparisonId: string): Promise<void> {
    await this.done.get(comparisonId);
  }

  /** Re-runs one FAILED / TIMED_OUT response with the history its comparison had, and waits for it. */
  async retry(principal: Principal, responseId: string): Promise<void> {
    // A malformed id is a missing one, answered before any SQL.
    if (!isUuid(responseId)) throw notFound('Comparison response');
    const em = this.deps.orm.em.fork();
    const [response] = await em.find(ComparisonResponse, { id: responseId, comparison: { owner: principal.userId } }, { populate: ['comparison'] });
    if (!response) throw notFound('Comparison response');
    if (response.status !== ResponseStatus.FAILED && response.status !== ResponseStatus.TIMED_OUT) {
      throw badInput(`Only FAILED or TIMED_OUT responses can be retried (this one is ${response.status})`, 'id');
    }
    const comparison = response.comparison.getEntity();
    const reset = await em.nativeUpdate(
      ComparisonResponse,
      { id: response.id, status: { $in: [ResponseStatus.FAILED, ResponseStatus.TIMED_OUT] } },
      { status: ResponseStatus.PENDING, content: '', error: null, latencyMs: null, timeToFirstTokenMs: null, promptTokens: null, completionTokens: null, costUsd: null, settledAt: null },
    );
    if (!reset) throw badInput('This response is already being retried', 'id');
    await this.deps.invalidation.invalidateUser(principal.userId);

    const model = parseModelId(`${response.model}@${response.keyLabel}`);
    const promptMessage = await em.findOne(Message, { comparison: comparison.id, role: MessageRole.USER });
    const history = promptMessage
      ? ((await historiesByModel(em, promptMessage.conversation.id, [model.id], promptMessage)).get(model.id) ?? [])
      : [];
    const job = this.execute({ response: { id: response.id, comparisonId: comparison.id, model }, history: [...history, { role: 'user', content: comparison.prompt }], userId: principal.userId });
    this.track(`retry:${response.id}`, job);
    await job;
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
      await this.settle(response.id, comparisonId, principal.userId, { status: ResponseStatus.FAILED, error: 'Cancelled' }, new ResponsePublisher(this.deps.pubsub, this.deps.cache, comparisonId, response.id));
    }
  }

  /**
   * Marks responses that no process can still be running (older than the
   * timeout plus a margin) as FAILED, e.g. after a crash. Run at startup.
   */
  async sweepInterrupted(): Promise<number> {
    const before = new Date(Date.now() - this.deps.requestTimeoutMs - 5 * 60_000);
    return this.deps.orm.em.fork().nativeUpdate(
      ComparisonResponse,
      { status: { $in: UNSETTLED }, createdAt: { $lt: before } },
      { status: ResponseStatus.FAILED, error: 'Interrupted: the server stopped before this model answered', settledAt: new Date() },
    );
  }

  /** Aborts everything still running here (marked FAILED) and waits for the writes. */
  async close(): Promise<void> {
    await this.unsubscribeControl?.();
    for (const [, run] of this.running) {
      run.reason = 'Interrupted: the server is shutting down';
      run.controller.abort();
    }
    await Promise.allSettled([...this.inFlight]);
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

  /** One model: call, stream, settle. Never throws. */
  private async execute(job: Job): Promise<void> {
    const { id, comparisonId, model } = job.response;
    const publisher = new ResponsePublisher(this.deps.pubsub, this.deps.cache, comparisonId, id);
    const controller = new AbortController();
    const run = { comparisonId, controller, reason: undefined as string | undefined };
    this.running.set(id, run);
    const em = this.deps.orm.em.fork();
    const started = performance.now();
    let outcome: ResponseStatus = ResponseStatus.FAILED;
    try {
      const languageModel = await this.deps.models.languageModel(em, job.userId, model);
      let streaming = false;
      const result = await streamCompletion({
        provider: model.provider,
        model: languageModel,
        messages: job.history,
        timeoutMs: this.deps.requestTimeoutMs,
        maxOutputBytes: this.deps.maxOutputBytes,
        signal: controller.signal,
        onDelta: (delta) => {
          if (!streaming) {
            streaming = true;
            publisher.status(ResponseStatus.STREAMING);
            void em
              .fork()
              .nativeUpdate(ComparisonResponse, { id, status: ResponseStatus.PENDING }, { status: ResponseStatus.STREAMING })
              .then(() => this.deps.invalidation.invalidateUser(job.userId))
              .catch(() => undefined);
          }
          publisher.delta(delta);
        },
      });
      outcome = ResponseStatus.COMPLETED;
      await this.settle(id, comparisonId, job.userId, {
        status: ResponseStatus.COMPLETED,
        content: result.text,
        latencyMs: result.latencyMs,
        timeToFirstTokenMs: result.timeToFirstTokenMs,
        promptTokens: result.promptTokens,
        completionTokens: result.completionTokens,
        costUsd: costUsd(findCatalogEntry(model.provider, model.name), result.promptTokens, result.completionTokens),
      }, publisher);
    } catch (error) {
      const latencyMs = Math.round(performance.now() - started);
      if (error instanceof ProviderCallError) {
        const status = error.reason === 'TIMEOUT' ? ResponseStatus.TIMED_OUT : ResponseStatus.FAILED;
        outcome = status;
        // A cut answer keeps what arrived up to the limit.
        const kept = error instanceof OutputLimitError ? { content: error.partialText } : {};
        await this.settle(id, comparisonId, job.userId, { status, error: `${error.reason}: ${error.message}`, latencyMs, ...kept }, publisher);
      } else if (error instanceof CancelledError) {
        await this.settle(id, comparisonId, job.userId, { status: ResponseStatus.FAILED, error: run.reason ?? 'Cancelled', latencyMs }, publisher);
      } else {
        this.deps.logger.error({ err: error, responseId: id }, 'comparison response failed unexpectedly');
        await this.settle(id, comparisonId, job.userId, { status: ResponseStatus.FAILED, error: 'Internal error', latencyMs }, publisher);
      }
    } finally {
      this.running.delete(id);
      this.deps.metrics.llmLatency.observe({ provider: model.provider }, (performance.now() - started) / 1000);
      this.deps.metrics.llmCalls.inc({ provider: model.provider, status: outcome });
    }
  }

  /** Writes the final state if nobody else settled it first, then tells subscribers. */
  private async settle(
    id: string,
    comparisonId: string,
    userId: string,
    fields: Partial<Pick<ComparisonResponse, 'content' | 'error' | 'latencyMs' | 'timeToFirstTokenMs' | 'promptTokens' | 'completionTokens' | 'costUsd'>> & { status: ResponseStatus },
    publisher: ResponsePublisher,
  ): Promise<void> {
    const content = fields.content ?? '';
    const written = await this.deps.orm.em
      .fork()
      .nativeUpdate(ComparisonResponse, { id, status: { $in: UNSETTLED } }, { content, error: null, ...fields, settledAt: new Date() })
      .catch((err) => {
        this.deps.logger.error({ err, responseId: id }, 'could not store a comparison response');
        return 0;
      });
    if (!written) return;
    await this.deps.invalidation.invalidateUser(userId);
    await publisher.settled(fields.status, content, fields.error ?? null);
  }
}

function parseModels(raw: readonly string[]): ModelId[] {
  const models = raw.map((m) => parseModelId(m));
  if (new Set(models.map((m) => m.id)).size !== models.length) throw badInput('models must be distinct', 'models');
  if (models.length < MIN_MODELS || models.length > MAX_MODELS) {
    throw badInput(`A comparison takes ${MIN_MODELS} to ${MAX_MODELS} models, got ${models.length}`, 'models');
  }
  return models;
}

function titleFrom(prompt: string): string {
  const line = prompt.split('\n')[0]!.trim();
  // Cut between code points: half a surrogate pair would be stored as U+FFFD.
  return codePointLength(line) > 80 ? `${sliceCodePoints(line, 77)}...` : line;
}
