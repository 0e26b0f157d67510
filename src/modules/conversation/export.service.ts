/**
 * `exportConversation`: one conversation of the viewer's, with its messages,
 * comparisons (responses and the viewer's vote), as pretty JSON or Markdown.
 *
 * Everything loads in at most six statements, whatever the size of the
 * conversation: the size of its texts (measured in SQL and reserved against
 * the request's MAX_RESPONSE_BYTES before anything is loaded: an export that
 * does not fit answers RESPONSE_TOO_LARGE), the conversation (owner-scoped),
 * its messages, its comparisons, then their responses and the viewer's votes.
 * The export holds only the viewer's own rows and only the fields listed in
 * `ConversationExport`: no owner ids, no key labels, never an API key. A blind
 * comparison not yet voted on is exported as its queries show it: responses
 * by label, model / provider / tokens / cost null, provider error texts hidden
 * (the comparison service presents them so, see `comparison/blind.ts`).
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import { measurementsOf, type ModelCallMeasurements } from '../../db/model-call.entity';
import type { Principal } from '../../auth/principal';
import type { PresentedResponse } from '../comparison/blind';
import type { ComparisonService } from '../comparison/comparison.service';
import type { MessageService } from '../message/message.service';
import { isUuid } from '../../db/pagination';
import { badInput } from '../../errors';
import { childListSourceSql, childSourceSql, CONVERSATION_BY_ID, CONVERSATION_COMPARISONS, MESSAGES, ownerSql } from '../../db/read-plan';
import type { ResponseBudget } from '../common/response-budget';
import { Vote } from '../vote/vote.entity';
import type { ConversationService } from './conversation.service';

export enum ExportFormat {
  JSON = 'JSON',
  MARKDOWN = 'MARKDOWN',
  /** Tables only: `exportEvalRun` (a conversation or a shared snapshot answers BAD_USER_INPUT). */
  CSV = 'CSV',
}

/** A conversation or a shared snapshot is a document, not a table: JSON or Markdown (refused before any read). */
export function documentFormat(format: ExportFormat | null | undefined): ExportFormat.JSON | ExportFormat.MARKDOWN {
  if (format === ExportFormat.CSV) throw badInput('This export is JSON or MARKDOWN (CSV is for exportEvalRun)', 'format');
  return format ?? ExportFormat.JSON;
}

export interface ConversationExport {
  id: string;
  title: string;
  createdAt: string;
  updatedAt: string;
  messages: Array<
    {
      id: string;
      role: string;
      content: string;
      model: string | null;
      provider: string | null;
      createdAt: string;
    } & ModelCallMeasurements
  >;
  comparisons: Array<{
    id: string;
    prompt: string;
    createdAt: string;
    blind: boolean;
    revealed: boolean;
    category: string | null;
    responses: Array<
      {
        label: string;
        /** MODEL, or FUSED (merged by `fuseComparison` from the responses labelled in `sources`). */
        kind: string;
        sources: string[];
        model: string | null;
        provider: string | null;
        status: string;
        content: string;
        error: string | null;
        timeToFirstTokenMs: number | null;
      } & ModelCallMeasurements
    >;
    vote: { outcome: string; winnerModel: string | null } | null;
  }>;
  exportedAt: string;
}

/** The read services an export is made from (the app's own instances). */
export interface ExportReads {
  conversations: ConversationService;
  messages: MessageService;
  comparisons: ComparisonService;
}

export class ExportService {
  constructor(private readonly reads: ExportReads) {}

  /**
   * null for a missing id or another user's conversation, exactly like `conversation(id)`.
   * With `budget` (the request's `MAX_RESPONSE_BYTES`), the export's text is
   * measured in SQL and reserved before any row is loaded: an export that
   * does not fit answers RESPONSE_TOO_LARGE without being built.
   */
  async export(
    em: EntityManager,
    principal: Principal,
    id: string,
    requested: ExportFormat,
    budget?: ResponseBudget,
  ): Promise<string | null> {
    const format = documentFormat(requested);
    if (budget) {
      const size = await this.textBytes(em, principal, id);
      if (size === null) return null;
      budget.charge(size);
    }
    const data = await this.collect(em, principal, id);
    if (!data) return null;
    switch (format) {
      case ExportFormat.JSON:
        return JSON.stringify(data, null, 2) + '\n';
      case ExportFormat.MARKDOWN:
        return toMarkdown(data);
      default: {
        const unknown: never = format;
        throw new Error(`Unknown export format ${String(unknown)}`);
      }
    }
  }

  /** The bytes of the texts an export of the viewer's conversation holds (null: none such); what it adds around them is small. */
  private async textBytes(em: EntityManager, principal: Principal, id: string): Promise<number | null> {
    if (!isUuid(id)) return null;
    // What the export reads: the conversation's messages and comparisons, a fork's inherited ones included.
    const messages = childSourceSql(MESSAGES, (col) => `${col} = c.id`);
    const comparisons = childListSourceSql(CONVERSATION_COMPARISONS, (col) => `${col} = c.id`);
    const rows = await em.getConnection().execute<Array<{ bytes: string | number }>>(
      `select coalesce((select sum(octet_length(m.content)) from (${messages}) m), 0)
            + coalesce((select sum(octet_length(r.content)) from comparison_responses r
                          join (${comparisons}) cr on cr.id = r.comparison_id), 0)
            + coalesce((select sum(octet_length(cr.prompt)) from (${comparisons}) cr), 0) as bytes
         from conversations c where c.id = ? and ${ownerSql(CONVERSATION_BY_ID, 'c')}`,
      [id, principal.userId],
    );
    return rows[0] ? Number(rows[0].bytes) : null;
  }

  async collect(em: EntityManager, principal: Principal, id: string): Promise<ConversationExport | null> {
    const { conversations, messages, comparisons } = this.reads;
    const [conversation] = await conversations.findByIds(em, principal, [id]);
    if (!conversation) return null;
    const [history, comparisonRows] = await Promise.all([
      messages.history(em, conversation.id),
      comparisons.byConversationIds(em, [conversation.id]),
    ]);
    const comparisonIds = comparisonRows.map((c) => c.id);
    const [responses, votes] = comparisonIds.length
      ? await Promise.all([
          comparisons.responsesByComparisonIds(em, comparisonIds),
          em.find(Vote, { comparison: { $in: comparisonIds }, user: principal.userId }),
        ])
      : [[], []];

    const responsesByComparison = new Map<string, PresentedResponse[]>();
    for (const response of responses) {
      const list = responsesByComparison.get(response.comparisonId) ?? [];
      list.push(response);
      responsesByComparison.set(response.comparisonId, list);
    }
    const modelByResponseId = new Map(responses.map((r) => [r.id, r.model]));
    const voteByComparison = new Map(votes.map((v) => [v.comparison.id, v]));

    return {
      id: conversation.id,
      title: conversation.title,
      createdAt: conversation.createdAt.toISOString(),
      updatedAt: conversation.updatedAt.toISOString(),
      messages: history.map((m) => ({
        id: m.id,
        role: m.role,
        content: m.content,
        model: m.model ?? null,
        provider: m.provider ?? null,
        createdAt: m.createdAt.toISOString(),
        ...measurementsOf(m),
      })),
      comparisons: comparisonRows.map((c) => {
        const vote = voteByComparison.get(c.id);
        return {
          id: c.id,
          prompt: c.prompt,
          createdAt: c.createdAt.toISOString(),
          blind: c.blind,
          revealed: c.revealed,
          category: c.category ?? null,
          responses: (responsesByComparison.get(c.id) ?? []).map((r, _i, all) => ({
            label: r.label,
            kind: r.kind ?? 'MODEL',
            sources: (r.sourceIds ?? []).flatMap((id) => all.find((s) => s.id === id)?.label ?? []),
            model: r.model,
            provider: r.provider,
            status: r.status,
            content: r.content,
            error: r.error ?? null,
            timeToFirstTokenMs: r.timeToFirstTokenMs ?? null,
            ...measurementsOf(r),
          })),
          vote: vote ? { outcome: vote.outcome, winnerModel: vote.winner ? (modelByResponseId.get(vote.winner.id) ?? null) : null } : null,
        };
      }),
      exportedAt: new Date().toISOString(),
    };
  }
}

const ROLE_LABELS: Record<string, string> = { SYSTEM: 'System', USER: 'User', ASSISTANT: 'Assistant' };
const OUTCOME_LABELS: Record<string, string> = { WINNER: 'Winner', TIE: 'Tie', ALL_BAD: 'All bad' };

/** A readable document: title, the messages in order, then one section per comparison. */
export function toMarkdown(data: ConversationExport): string {
  const lines: string[] = [];
  const block = (...text: string[]) => lines.push(...text, '');

  block(`# ${oneLine(data.title)}`);
  block(`Created ${data.createdAt} · updated ${data.updatedAt} · exported ${data.exportedAt}`);

  block('## Messages');
  if (data.messages.length === 0) block('_No messages._');
  for (const m of data.messages) {
    const who = ROLE_LABELS[m.role] ?? m.role;
    const label = m.role === 'ASSISTANT' && m.model ? `${who} (${m.model})` : who;
    const facts = [m.createdAt, m.latencyMs != null ? `${m.latencyMs} ms` : null, m.costUsd != null ? formatCost(m.costUsd) : null];
    block(`**${label}** · ${facts.filter(Boolean).join(' · ')}`, m.content);
  }

  if (data.comparisons.length > 0) block('## Comparisons');
  data.comparisons.forEach((c, i) => {
    block(`### Comparison ${i + 1} · ${c.createdAt}`);
    const about = [
      c.category ? `Category: ${c.category}` : null,
      c.blind ? (c.revealed ? 'Blind (revealed by the vote)' : 'Blind: models hidden until you vote') : null,
    ];
    if (about.some(Boolean)) block(about.filter(Boolean).join(' · '));
    block('**Prompt**', c.prompt);
    for (const r of c.responses) {
      block(`#### ${r.label}${r.model ? ` · ${r.model}` : ''}${r.kind === 'FUSED' ? ` · fused from ${r.sources.join(', ')}` : ''}`);
      const facts = [
        `Status: ${r.status}`,
        r.latencyMs != null ? `Latency: ${r.latencyMs} ms` : null,
        r.timeToFirstTokenMs != null ? `First token: ${r.timeToFirstTokenMs} ms` : null,
        r.promptTokens != null || r.completionTokens != null
          ? `Tokens: ${r.promptTokens ?? '?'} in / ${r.completionTokens ?? '?'} out`
          : null,
        r.costUsd != null ? `Cost: ${formatCost(r.costUsd)}` : null,
      ];
      block(facts.filter(Boolean).join(' · '));
      if (r.content) block(r.content);
      if (r.error) block(`_Error: ${oneLine(r.error)}_`);
    }
    const vote = c.vote;
    block(
      vote
        ? `**Vote:** ${OUTCOME_LABELS[vote.outcome] ?? vote.outcome}` +
            `${vote.outcome === 'WINNER' && vote.winnerModel ? `: ${vote.winnerModel}` : ''}`
        : '**Vote:** none',
    );
  });

  return lines.join('\n');
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function formatCost(usd: number): string {
  return `$${usd.toFixed(6).replace(/0+$/, '').replace(/\.$/, '.00')}`;
}
