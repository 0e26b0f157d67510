/**
 * The history page as each server asks for it, and one normalised shape to
 * check that they return the same data (same ids, same order, same values).
 */

/** Ours (checked against schema/schema.graphql). */
export const HISTORY = `query History {
  me { id email }
  conversations(first: 20) {
    nodes { id title createdAt updatedAt messages(first: 10) { nodes { id role content createdAt } } }
  }
  comparisons(first: 10) {
    nodes { id responses { id provider model content latencyMs completionTokens } }
  }
}`;

/**
 * PostGraphile 4: the same page through the user row (the id is a variable,
 * see docs/BENCHMARKS.md "Performance"), in the same orders as ours: conversations and
 * comparisons newest first by (created_at, id), messages oldest first,
 * responses by position.
 */
export const HISTORY_POSTGRAPHILE4 = `query History($id: UUID!) {
  userById(id: $id) {
    id email
    conversationsByOwnerId(first: 20, orderBy: [CREATED_AT_DESC, ID_DESC]) {
      nodes {
        id title createdAt updatedAt
        messagesByConversationId(first: 10, orderBy: [CREATED_AT_ASC, ID_ASC]) { nodes { id role content createdAt } }
      }
    }
    comparisonResultsByOwnerId(first: 10, orderBy: [CREATED_AT_DESC, ID_DESC]) {
      nodes { id comparisonResponsesByComparisonId(orderBy: POSITION_ASC) { nodes { id provider model content latencyMs completionTokens } } }
    }
  }
}`;

/** PostGraphile 5 (Amber preset): `id` is the global node id there, the column is `rowId`; only indexed columns are orderable. */
export const HISTORY_POSTGRAPHILE5 = `query History($id: UUID!) {
  userByRowId(rowId: $id) {
    rowId email
    conversationsByOwnerId(first: 20, orderBy: [CREATED_AT_DESC, ROW_ID_DESC]) {
      nodes {
        rowId title createdAt updatedAt
        messagesByConversationId(first: 10, orderBy: [CREATED_AT_ASC, ROW_ID_ASC]) { nodes { rowId role content createdAt } }
      }
    }
    comparisonResultsByOwnerId(first: 10, orderBy: [CREATED_AT_DESC, ROW_ID_DESC]) {
      nodes { rowId comparisonResponsesByComparisonId(orderBy: POSITION_ASC) { nodes { rowId provider model content latencyMs completionTokens } } }
    }
  }
}`;

export interface HistoryPage {
  me: { id: string; email: string };
  conversations: Array<{
    id: string;
    title: string;
    createdAt: string;
    updatedAt: string;
    messages: Array<{ id: string; role: string; content: string; createdAt: string }>;
  }>;
  comparisons: Array<{
    id: string;
    responses: Array<{
      id: string;
      provider: string;
      model: string;
      content: string;
      latencyMs: number | null;
      completionTokens: number | null;
    }>;
  }>;
}

export type Dialect = 'ours' | 'postgraphile4' | 'postgraphile5';

/** Timestamps differ only in notation (`…001Z` vs `…001+00:00` vs `…001000+00:00`). */
const instant = (value: string) => new Date(value).toISOString();

/** Parses a response body of `dialect` into the normalised page; throws on GraphQL errors or a missing user. */
export function normalise(dialect: Dialect, body: string): HistoryPage {
  const parsed = JSON.parse(body) as { data?: any; errors?: unknown[] };
  if (parsed.errors?.length) throw new Error(`GraphQL errors: ${JSON.stringify(parsed.errors).slice(0, 500)}`);
  const d = parsed.data;
  if (dialect === 'ours') {
    if (!d?.me) throw new Error('no user in the response');
    return {
      me: { id: d.me.id, email: d.me.email },
      conversations: d.conversations.nodes.map((c: any) => ({
        id: c.id,
        title: c.title,
        createdAt: instant(c.createdAt),
        updatedAt: instant(c.updatedAt),
        messages: c.messages.nodes.map((m: any) => ({ id: m.id, role: m.role, content: m.content, createdAt: instant(m.createdAt) })),
      })),
      comparisons: d.comparisons.nodes.map((r: any) => ({
        id: r.id,
        responses: r.responses.map((s: any) => ({
          id: s.id,
          provider: s.provider,
          model: s.model,
          content: s.content,
          latencyMs: s.latencyMs,
          completionTokens: s.completionTokens,
        })),
      })),
    };
  }
  const key = dialect === 'postgraphile4' ? 'id' : 'rowId';
  const u = dialect === 'postgraphile4' ? d?.userById : d?.userByRowId;
  if (!u) throw new Error('no user in the response');
  return {
    me: { id: u[key], email: u.email },
    conversations: u.conversationsByOwnerId.nodes.map((c: any) => ({
      id: c[key],
      title: c.title,
      createdAt: instant(c.createdAt),
      updatedAt: instant(c.updatedAt),
      messages: c.messagesByConversationId.nodes.map((m: any) => ({
        id: m[key],
        role: m.role,
        content: m.content,
        createdAt: instant(m.createdAt),
      })),
    })),
    comparisons: u.comparisonResultsByOwnerId.nodes.map((r: any) => ({
      id: r[key],
      responses: r.comparisonResponsesByComparisonId.nodes.map((s: any) => ({
        id: s[key],
        provider: s.provider,
        model: s.model,
        content: s.content,
        latencyMs: s.latencyMs,
        completionTokens: s.completionTokens,
      })),
    })),
  };
}

/** The first difference between two pages as a path, or null when equal. */
export function firstDifference(a: unknown, b: unknown, path = '$'): string | null {
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return `${path}.length: ${a.length} vs ${b.length}`;
    for (let i = 0; i < a.length; i++) {
      const d = firstDifference(a[i], b[i], `${path}[${i}]`);
      if (d) return d;
    }
    return null;
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      const d = firstDifference((a as any)[k], (b as any)[k], `${path}.${k}`);
      if (d) return d;
    }
    return null;
  }
  return a === b ? null : `${path}: ${JSON.stringify(a)?.slice(0, 80)} vs ${JSON.stringify(b)?.slice(0, 80)}`;
}

/**
 * The conversation view: one conversation and a page of its messages, the
 * page size and the cursor variables (the bench asks for the second page:
 * the cursor is the first page's `endCursor`, from the same server).
 */
export const CONVERSATION_VIEW = `query ConversationView($id: ID!, $n: Int, $after: String) {
  conversation(id: $id) {
    id title
    messages(first: $n, after: $after) { nodes { id role content createdAt } pageInfo { hasNextPage endCursor } }
  }
}`;

export const CONVERSATION_VIEW_POSTGRAPHILE5 = `query ConversationView($id: UUID!, $n: Int, $after: Cursor) {
  conversationByRowId(rowId: $id) {
    rowId title
    messagesByConversationId(first: $n, after: $after, orderBy: [CREATED_AT_ASC, ROW_ID_ASC]) {
      nodes { rowId role content createdAt } pageInfo { hasNextPage endCursor }
    }
  }
}`;

/** The comparison view: one comparison and its responses in the order shown. */
export const COMPARISON_VIEW = `query ComparisonView($id: ID!) {
  comparison(id: $id) { id prompt createdAt responses { id provider model content latencyMs completionTokens } }
}`;

export const COMPARISON_VIEW_POSTGRAPHILE5 = `query ComparisonView($id: UUID!) {
  comparisonResultByRowId(rowId: $id) {
    rowId prompt createdAt
    comparisonResponsesByComparisonId(orderBy: POSITION_ASC) { nodes { rowId provider model content latencyMs completionTokens } }
  }
}`;

export type View = 'conversation' | 'comparison';

/** The data of a view's response (cursors left out: each server signs its own), normalised to compare servers. */
export function normaliseView(view: View, dialect: 'ours' | 'postgraphile5', body: string): unknown {
  const parsed = JSON.parse(body) as { data?: any; errors?: unknown[] };
  if (parsed.errors?.length) throw new Error(`GraphQL errors: ${JSON.stringify(parsed.errors).slice(0, 500)}`);
  const ours = dialect === 'ours';
  const key = ours ? 'id' : 'rowId';
  if (view === 'conversation') {
    const c = ours ? parsed.data?.conversation : parsed.data?.conversationByRowId;
    if (!c) throw new Error('no conversation in the response');
    const page = ours ? c.messages : c.messagesByConversationId;
    return {
      id: c[key],
      title: c.title,
      hasNextPage: page.pageInfo.hasNextPage,
      messages: page.nodes.map((m: any) => ({ id: m[key], role: m.role, content: m.content, createdAt: instant(m.createdAt) })),
    };
  }
  const r = ours ? parsed.data?.comparison : parsed.data?.comparisonResultByRowId;
  if (!r) throw new Error('no comparison in the response');
  return {
    id: r[key],
    prompt: r.prompt,
    createdAt: instant(r.createdAt),
    responses: (ours ? r.responses : r.comparisonResponsesByComparisonId.nodes).map((s: any) => ({
      id: s[key],
      provider: s.provider,
      model: s.model,
      content: s.content,
      latencyMs: s.latencyMs,
      completionTokens: s.completionTokens,
    })),
  };
}

/**
 * Where the history page `actual` (a body in `dialect`) first differs from the reference body `expected` (ours'
 * dialect), or null when they answer the same data. Throws on GraphQL errors or a missing user in either.
 */
export function historyDifference(expected: string, dialect: Dialect, actual: string): string | null {
  return firstDifference(normalise('ours', expected), normalise(dialect, actual));
}

/**
 * The same for a view. A server in ours' dialect signs the conversation view's cursor with ours' secret (ours'
 * resolvers, its compiled read, the bare limit), so its end cursor must also be the reference's, byte for byte.
 */
export function viewDifference(view: View, expected: string, dialect: 'ours' | 'postgraphile5', actual: string): string | null {
  const difference = firstDifference(normaliseView(view, 'ours', expected), normaliseView(view, dialect, actual));
  if (difference || dialect !== 'ours' || view !== 'conversation') return difference;
  const cursor = (body: string) => JSON.parse(body).data.conversation.messages.pageInfo.endCursor;
  return firstDifference(cursor(expected), cursor(actual), '$.endCursor');
}
