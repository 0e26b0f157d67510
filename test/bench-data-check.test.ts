/**
 * The bench smoke's data check (bench/lib/queries.ts, run by `npm run bench:smoke` in CI): every row's answer is
 * compared with ours' resolvers' answer to the same request. These pin that a changed answer fails it: a value, an
 * order, a missing row, a cursor, an error; and that the same data in another notation (PostGraphile's) passes.
 */
import { historyDifference, viewDifference } from '../bench/lib/queries';

const message = (n: number) => ({ id: `m${n}`, role: 'USER', content: `Hello "${n}"\n`, createdAt: `2026-01-01T00:00:0${n}.000Z` });
const history = () => ({
  data: {
    me: { id: 'u1', email: 'u1@example.com' },
    conversations: {
      nodes: [
        {
          id: 'c1',
          title: 'First',
          createdAt: '2026-01-01T00:00:00.000Z',
          updatedAt: '2026-01-01T00:00:09.000Z',
          messages: { nodes: [message(1), message(2)] },
        },
      ],
    },
    comparisons: {
      nodes: [
        {
          id: 'k1',
          responses: [
            { id: 'r1', provider: 'OPENAI', model: 'gpt-4o', content: 'A', latencyMs: 900, completionTokens: 90 },
            { id: 'r2', provider: 'ANTHROPIC', model: 'claude', content: 'B', latencyMs: null, completionTokens: null },
          ],
        },
      ],
    },
  },
});
const conversationView = (endCursor = 'cursor-2') => ({
  data: {
    conversation: {
      id: 'c1',
      title: 'First',
      messages: { nodes: [message(1), message(2)], pageInfo: { hasNextPage: false, endCursor } },
    },
  },
});
const comparisonView = () => ({
  data: {
    comparison: {
      id: 'k1',
      prompt: 'Why?',
      createdAt: '2026-01-01T00:00:00.000Z',
      responses: history().data.comparisons.nodes[0]!.responses,
    },
  },
});
const text = (value: unknown) => JSON.stringify(value);

describe('the bench data check', () => {
  const reference = text(history());

  it('passes the same history page, and the same data in PostGraphile 5 notation', () => {
    expect(historyDifference(reference, 'ours', text(history()))).toBeNull();
    const page = history().data;
    const postgraphile5 = {
      data: {
        userByRowId: {
          rowId: 'u1',
          email: 'u1@example.com',
          conversationsByOwnerId: {
            nodes: page.conversations.nodes.map(({ id, messages, ...c }) => ({
              ...c,
              rowId: id,
              // Another notation of the same instant.
              createdAt: c.createdAt.replace('.000Z', '+00:00'),
              messagesByConversationId: { nodes: messages.nodes.map(({ id: rowId, ...m }) => ({ ...m, rowId })) },
            })),
          },
          comparisonResultsByOwnerId: {
            nodes: page.comparisons.nodes.map(({ id, responses }) => ({
              rowId: id,
              comparisonResponsesByComparisonId: { nodes: responses.map(({ id: rowId, ...r }) => ({ ...r, rowId })) },
            })),
          },
        },
      },
    };
    expect(historyDifference(reference, 'postgraphile5', text(postgraphile5))).toBeNull();
  });

  it('fails a history page with a changed value, order, row or null', () => {
    const changed = history();
    changed.data.conversations.nodes[0]!.messages.nodes[1]!.content = 'Hello "2"';
    expect(historyDifference(reference, 'ours', text(changed))).toBe(
      '$.conversations[0].messages[1].content: "Hello \\"2\\"\\n" vs "Hello \\"2\\""',
    );
    const reordered = history();
    reordered.data.conversations.nodes[0]!.messages.nodes.reverse();
    expect(historyDifference(reference, 'ours', text(reordered))).toMatch(/^\$\.conversations\[0\]\.messages\[0\]\.id: "m1" vs "m2"/);
    const missing = history();
    missing.data.comparisons.nodes[0]!.responses.pop();
    expect(historyDifference(reference, 'ours', text(missing))).toBe('$.comparisons[0].responses.length: 2 vs 1');
    const nulled = history();
    (nulled.data.comparisons.nodes[0]!.responses[0] as { latencyMs: number | null }).latencyMs = null;
    expect(historyDifference(reference, 'ours', text(nulled))).toBe('$.comparisons[0].responses[0].latencyMs: 900 vs null');
    const later = history();
    later.data.conversations.nodes[0]!.updatedAt = '2026-01-01T00:00:09.001Z';
    expect(historyDifference(reference, 'ours', text(later))).toMatch(/^\$\.conversations\[0\]\.updatedAt/);
  });

  it('fails an answer with errors or without the user', () => {
    expect(() => historyDifference(reference, 'ours', text({ errors: [{ message: 'boom' }], data: null }))).toThrow(/GraphQL errors/);
    expect(() => historyDifference(reference, 'ours', text({ data: { me: null } }))).toThrow(/no user/);
  });

  it('compares the views, and the conversation view’s end cursor for a server in ours’ dialect', () => {
    const conversation = text(conversationView());
    expect(viewDifference('conversation', conversation, 'ours', text(conversationView()))).toBeNull();
    expect(viewDifference('conversation', conversation, 'ours', text(conversationView('cursor-X')))).toBe(
      '$.endCursor: "cursor-2" vs "cursor-X"',
    );
    const more = conversationView();
    more.data.conversation.messages.pageInfo.hasNextPage = true;
    expect(viewDifference('conversation', conversation, 'ours', text(more))).toBe('$.hasNextPage: false vs true');
    const comparison = text(comparisonView());
    expect(viewDifference('comparison', comparison, 'ours', text(comparisonView()))).toBeNull();
    const hidden = comparisonView();
    (hidden.data.comparison.responses[0] as { model: string | null }).model = null;
    expect(viewDifference('comparison', comparison, 'ours', text(hidden))).toBe('$.responses[0].model: "gpt-4o" vs null');
  });
});
