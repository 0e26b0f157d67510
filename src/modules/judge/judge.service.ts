/**
 * Judge models (issue 10 item 6): a model compares each pair of a
 * comparison's COMPLETED responses, MT-Bench style, in BOTH orders.
 *
 * - The judge sees text only: the comparison's prompt and the two answers,
 *   labelled "Assistant A" / "Assistant B" — never a model name, provider or
 *   key label, so judging a blind comparison reveals nothing and the
 *   judge's own output cannot name the models.
 * - Position swap: call 1 shows (first, second) as (A, B), call 2 shows
 *   (second, first). The verdict is the pair's winner when both calls agree,
 *   TIE otherwise (including one tie and one winner), as MT-Bench's pairwise
 *   judge with swap does.
 * - Parsing: the verdict is the token "[[A]]", "[[B]]" or "[[C]]" (tie).
 *   Exactly one kind of token must appear (repeating it is fine); none or
 *   several kinds is UNPARSEABLE, unless the text reads like a refusal
 *   ("I can't …", "I cannot …", "I won't …", "I'm unable …"): REFUSED.
 * - Failure modes: a provider error (missing key, 401, 429, timeout, …)
 *   answers PROVIDER_ERROR with `provider` and `reason` (of the judge model);
 *   a refusal or unparseable output answers JUDGE_FAILED with `reason`
 *   (REFUSED / UNPARSEABLE), `pairsJudged` and `pairsFailed`. The verdicts of
 *   the pairs that did succeed are stored either way (ask again to retry the
 *   others); a failed pair's row keeps its cost and shows nowhere.
 * - Paid like a comparison: the user's own key for the judge model, the
 *   model-call rate limit (two points per pair) and the spend budget
 *   (`UsageService.admit`) before any call; each verdict records the cost of
 *   its two calls, which counts against the budget.
 * - Only the comparison's owner may judge it (NOT_FOUND otherwise, as for
 *   reads); a comparison with a response still running answers
 *   COMPARISON_NOT_SETTLED; fewer than two COMPLETED responses BAD_USER_INPUT.
 * - Judging a pair again with the same judge model replaces its verdict.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../auth/principal';
import { AppError, badInput } from '../../errors';
import { costUsd, findCatalogEntry } from '../../llm/catalog';
import { type ModelId, parseModelId } from '../../llm/model-id';
import { logProviderFailure } from '../../llm/provider-failure-log';
import { ProviderCallError } from '../../llm/provider-errors';
import { type ChatTurn, streamCompletion } from '../../llm/stream-completion';
import type { Logger } from '../../observability/logger';
import type { ModelAccess } from '../api-key/model-access';
import { ResponseKind, ResponseStatus } from '../comparison/comparison.entity';
import type { PresentedResponse } from '../comparison/blind';
import type { ComparisonService } from '../comparison/comparison.service';
import { plannedCall, type ProviderCallAdmission } from '../usage/usage.service';
import { VoteOutcome } from '../vote/vote.entity';

/** MT-Bench's pairwise judge prompt ("pair-v2"), unchanged in substance. */
export const JUDGE_SYSTEM_PROMPT =
  'Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants ' +
  'to the user question displayed below. ' +
  "You should choose the assistant that follows the user's instructions and answers the user's question better. " +
  'Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, ' +
  'and level of detail of their responses. ' +
  'Begin your evaluation by comparing the two responses and provide a short explanation. ' +
  'Avoid any position biases and ensure that the order in which the responses were presented does not influence your decision. ' +
  'Do not allow the length of the responses to influence your evaluation. ' +
  'Do not favor certain names of the assistants. Be as objective as possible. ' +
  'After providing your explanation, output your final verdict by strictly following this format: ' +
  '"[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.';

export function judgeUserPrompt(question: string, answerA: string, answerB: string): string {
  return (
    `[User Question]\n${question}\n\n` +
    `[The Start of Assistant A's Answer]\n${answerA}\n[The End of Assistant A's Answer]\n\n` +
    `[The Start of Assistant B's Answer]\n${answerB}\n[The End of Assistant B's Answer]`
  );
}

export type ShownVerdict = 'A' | 'B' | 'TIE';
export type JudgeFailure = 'REFUSED' | 'UNPARSEABLE';

const REFUSAL = /\b(I\s+(can(?:not|'t|’t)|won(?:'t|’t)|will\s+not|am\s+unable|am\s+not\s+able)|I['’]m\s+(unable|not\s+able|sorry))\b/i;

/** The verdict in a judge's output, or why there is none. */
export function parseJudgeVerdict(text: string): { verdict: ShownVerdict } | { failure: JudgeFailure } {
  const kinds = new Set([...text.matchAll(/\[\[([ABC])\]\]/g)].map((m) => m[1]));
  if (kinds.size === 1) {
    const [kind] = kinds;
    return { verdict: kind === 'C' ? 'TIE' : (kind as 'A' | 'B') };
  }
  if (kinds.size === 0 && REFUSAL.test(text)) return { failure: 'REFUSED' };
  return { failure: 'UNPARSEABLE' };
}

/** A verdict in the pair's own terms. */
type PairVerdict = 'FIRST' | 'SECOND' | 'TIE';

/** Combines the two orders: agreement gives the verdict, disagreement a tie. */
export function combineSwapped(forward: ShownVerdict, swapped: ShownVerdict): PairVerdict {
  const f: PairVerdict = forward === 'A' ? 'FIRST' : forward === 'B' ? 'SECOND' : 'TIE';
  const s: PairVerdict = swapped === 'A' ? 'SECOND' : swapped === 'B' ? 'FIRST' : 'TIE';
  return f === s ? f : 'TIE';
}

/** A stored verdict as the API returns it. */
export interface JudgeVerdictView {
  id: string;
  comparisonId: string;
  judgeModel: string;
  firstId: string;
  secondId: string;
  outcome: VoteOutcome;
  winnerId: string | null;
  createdAt: Date;
}

export interface JudgeServiceDeps {
  comparisons: ComparisonService;
  models: ModelAccess;
  usage: ProviderCallAdmission;
  requestTimeoutMs: number;
  maxOutputBytes: number;
  logger: Logger;
  /** After verdicts were stored: the JUDGE board is stale. */
  onVerdicts: () => Promise<void>;
}

/** Judge calls of one request run at most this many at a time. */
const CONCURRENCY = 4;
const MAX_JUDGE_OUTPUT_TOKENS = 2048;

interface CallResult {
  verdict?: ShownVerdict;
  failure?: JudgeFailure;
  providerError?: ProviderCallError;
  costUsd: number | null;
  /** The judge was served by the user's own endpoint (see `isCustomEndpoint`). */
  customEndpoint?: boolean;
}

export class JudgeService {
  constructor(private readonly deps: JudgeServiceDeps) {}

  async judge(em: EntityManager, principal: Principal, comparisonId: string, judgeModel: string): Promise<JudgeVerdictView[]> {
    const model = parseModelId(judgeModel);
    const comparison = await this.deps.comparisons.get(em, principal, comparisonId);
    const responses = await this.deps.comparisons.responsesByComparisonIds(em, [comparison.id]);
    if (responses.some((r) => r.status === ResponseStatus.PENDING || r.status === ResponseStatus.STREAMING)) {
      throw new AppError('COMPARISON_NOT_SETTLED', 'Comparison is still running: judge it once every response has settled', {
        field: 'comparisonId',
      });
    }
    // Only the models' own answers are judged: a FUSED one is no battle.
    const completed = responses
      .filter((r) => r.status === ResponseStatus.COMPLETED && r.kind !== ResponseKind.FUSED)
      .sort((a, b) => a.position - b.position);
    if (completed.length < 2) throw badInput('A comparison needs at least two COMPLETED responses to be judged', 'comparisonId');

    const pairs: Array<[PresentedResponse, PresentedResponse]> = [];
    for (let i = 0; i < completed.length; i++) for (let j = i + 1; j < completed.length; j++) pairs.push([completed[i]!, completed[j]!]);
    const turns = pairs.flatMap(([first, second]) => [
      conversation(comparison.prompt, first.content, second.content),
      conversation(comparison.prompt, second.content, first.content),
    ]);
    // The system prompt counts in the worst-case input size too.
    const release = await this.deps.usage.admit(
      principal,
      turns.map((t) => plannedCall(model, [{ content: JUDGE_SYSTEM_PROMPT }, ...t])),
    );
    let results: CallResult[];
    try {
      results = await this.callAll(em, principal.userId, model, turns, comparison.id);
      await this.store(em, principal, comparison.id, judgeModel, pairs, results);
    } finally {
      await release();
    }
    await this.deps.onVerdicts();

    const providerError = results.find((r) => r.providerError)?.providerError;
    const failed = pairs.filter((_, p) => !pairOk(results[2 * p]!, results[2 * p + 1]!)).length;
    if (providerError) {
      throw new AppError('PROVIDER_ERROR', providerError.message, { provider: providerError.provider, reason: providerError.reason });
    }
    if (failed > 0) {
      const reason = results.some((r) => r.failure === 'UNPARSEABLE') ? 'UNPARSEABLE' : 'REFUSED';
      throw new AppError(
        'JUDGE_FAILED',
        reason === 'REFUSED'
          ? 'The judge model refused to give a verdict'
          : 'The judge model gave no verdict in the expected format ([[A]], [[B]] or [[C]])',
        { reason, pairsJudged: pairs.length - failed, pairsFailed: failed },
      );
    }
    return this.verdicts(em, comparison.id, judgeModel);
  }

  private async callAll(
    em: EntityManager,
    userId: string,
    model: ModelId,
    turns: ChatTurn[][],
    comparisonId: string,
  ): Promise<CallResult[]> {
    let languageModel;
    let customEndpoint = false;
    try {
      const resolved = await this.deps.models.resolveModels(em, userId, [model])[0]!;
      ({ customEndpoint } = resolved);
      languageModel = this.deps.models.build(resolved.spec);
    } catch (error) {
      if (!(error instanceof ProviderCallError)) throw error;
      logProviderFailure(this.deps.logger, model, error, { comparisonId, judge: true });
      return turns.map(() => ({ providerError: error, costUsd: null }));
    }
    const results: CallResult[] = new Array(turns.length);
    let next = 0;
    const worker = async () => {
      while (next < turns.length) {
        const i = next++;
        try {
          const result = await streamCompletion({
            provider: model.provider,
            model: languageModel,
            system: JUDGE_SYSTEM_PROMPT,
            messages: turns[i]!,
            timeoutMs: this.deps.requestTimeoutMs,
            maxOutputBytes: this.deps.maxOutputBytes,
            maxOutputTokens: MAX_JUDGE_OUTPUT_TOKENS,
          });
          const cost = costUsd(findCatalogEntry(model.provider, model.name), result.promptTokens, result.completionTokens);
          const parsed = parseJudgeVerdict(result.text);
          results[i] =
            'verdict' in parsed ? { verdict: parsed.verdict, costUsd: cost, customEndpoint } : { failure: parsed.failure, costUsd: cost };
        } catch (error) {
          if (!(error instanceof ProviderCallError)) throw error;
          logProviderFailure(this.deps.logger, model, error, { comparisonId, judge: true });
          results[i] = { providerError: error, costUsd: null };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, turns.length) }, worker));
    return results;
  }

  /** One row per pair (replacing an earlier verdict of this judge), in one statement. */
  private async store(
    em: EntityManager,
    principal: Principal,
    comparisonId: string,
    judgeModel: string,
    pairs: Array<[PresentedResponse, PresentedResponse]>,
    results: CallResult[],
  ): Promise<void> {
    const rows = pairs.map(([first, second], p) => {
      const forward = results[2 * p]!;
      const swapped = results[2 * p + 1]!;
      const cost = forward.costUsd === null && swapped.costUsd === null ? null : (forward.costUsd ?? 0) + (swapped.costUsd ?? 0);
      if (!pairOk(forward, swapped)) {
        const failure = forward.providerError || swapped.providerError ? 'PROVIDER_ERROR' : (forward.failure ?? swapped.failure)!;
        return {
          first: first.id,
          second: second.id,
          outcome: null,
          winner: null,
          forward: forward.verdict ?? null,
          swapped: swapped.verdict ?? null,
          failure,
          cost,
        };
      }
      const verdict = combineSwapped(forward.verdict!, swapped.verdict!);
      return {
        first: first.id,
        second: second.id,
        outcome: verdict === 'TIE' ? VoteOutcome.TIE : VoteOutcome.WINNER,
        winner: verdict === 'FIRST' ? first.id : verdict === 'SECOND' ? second.id : null,
        forward: forward.verdict!,
        swapped: swapped.verdict!,
        failure: null,
        cost,
        custom: forward.customEndpoint === true || swapped.customEndpoint === true,
      };
    });
    await em.getConnection().execute(
      `insert into judge_verdicts (id, created_at, comparison_id, user_id, judge_model, first_id, second_id, outcome, winner_id,
                                   forward, swapped, failure, cost_usd, custom_endpoint, api_token_id)
       select gen_random_uuid(), now(), ?, ?, ?, r.first, r.second, r.outcome::vote_outcome, r.winner,
              r.forward, r.swapped, r.failure, r.cost, coalesce(r.custom, false), ?::uuid
         from jsonb_to_recordset(?::jsonb) as r(first uuid, second uuid, outcome text, winner uuid,
                                                forward text, swapped text, failure text, cost float8, custom boolean)
       on conflict (comparison_id, judge_model, first_id, second_id) do update
         set created_at = excluded.created_at, user_id = excluded.user_id, outcome = excluded.outcome, winner_id = excluded.winner_id,
             custom_endpoint = excluded.custom_endpoint,
             -- The accumulated cost then counts against the latest asker's token (if any): never less than it spent.
             api_token_id = excluded.api_token_id,
             forward = excluded.forward, swapped = excluded.swapped, failure = excluded.failure,
             cost_usd = coalesce(judge_verdicts.cost_usd, 0) + coalesce(excluded.cost_usd, 0)`,
      [comparisonId, principal.userId, judgeModel, principal.token?.id ?? null, JSON.stringify(rows)],
    );
  }

  /** The comparison's successful verdicts by this judge, in pair order. */
  async verdicts(em: EntityManager, comparisonId: string, judgeModel: string): Promise<JudgeVerdictView[]> {
    const rows = await em.getConnection().execute<Array<Record<string, any>>>(
      `select j.id, j.comparison_id, j.judge_model, j.first_id, j.second_id, j.outcome, j.winner_id, j.created_at
         from judge_verdicts j
         join comparison_responses f on f.id = j.first_id
         join comparison_responses s on s.id = j.second_id
        where j.comparison_id = ? and j.judge_model = ? and j.outcome is not null
        order by f.position, s.position`,
      [comparisonId, judgeModel],
    );
    return rows.map((r) => ({
      id: r.id,
      comparisonId: r.comparison_id,
      judgeModel: r.judge_model,
      firstId: r.first_id,
      secondId: r.second_id,
      outcome: r.outcome as VoteOutcome,
      winnerId: r.winner_id ?? null,
      createdAt: new Date(r.created_at),
    }));
  }
}

function pairOk(forward: CallResult, swapped: CallResult): boolean {
  return forward.verdict !== undefined && swapped.verdict !== undefined;
}

/** The judge's one user turn (the system prompt goes as `system`). */
function conversation(question: string, answerA: string, answerB: string): ChatTurn[] {
  return [{ role: 'user', content: judgeUserPrompt(question, answerA, answerB) }];
}
