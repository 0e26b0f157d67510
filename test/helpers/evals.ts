/**
 * Eval runs through GraphQL for tests and benches: a user with provider keys,
 * a prompt set, starting a run and waiting (polling with a deadline, no fixed
 * sleeps) until it settles.
 */
type Gql = (query: string, variables?: Record<string, unknown>, token?: string) => Promise<{ data?: any; errors?: any[] }>;

export const RUN_FIELDS = `id status models judgeModel repeats createdAt startedAt finishedAt
  progress { cellsTotal cellsDone cellsFailed judgeCallsDone judgeCallsTotal spentUsd etaSeconds }`;

export const START = `mutation($input: EvalRunInput!) { startEvalRun(input: $input) { ${RUN_FIELDS} } }`;
export const ESTIMATE = `query($input: EvalRunInput!) { estimateEvalRun(input: $input) {
  calls costUsdLow costUsdHigh budgetLeftUsd
  perModel { model calls inputTokens inputTokensHigh outputTokensHigh costUsdLow costUsdHigh priced }
  judge { model calls costUsdHigh } } }`;
export const RUN = `query($id: ID!) { evalRun(id: $id) { ${RUN_FIELDS} } }`;
export const CANCEL = `mutation($id: ID!) { cancelEvalRun(id: $id) { ${RUN_FIELDS} } }`;
export const CELLS = `query($id: ID!, $model: String, $failedOnly: Boolean, $first: Int, $after: String) {
  evalRun(id: $id) { id cells(model: $model, failedOnly: $failedOnly, first: $first, after: $after) {
    nodes { id model repeat status content latencyMs ttftMs costUsd judgeCostUsd reused passed error attempts
            item { id position prompt } assertions { kind passed reason outcome } }
    pageInfo { hasNextPage endCursor } } } }`;

/** Registers a user and saves one key per provider (the fake accepts any key but `bad-key`). */
export async function evalUser(
  signUp: (prefix: string) => Promise<{ token: string; userId: string }>,
  gql: Gql,
  prefix: string,
  providers: string[] = ['OPENAI', 'ANTHROPIC'],
): Promise<{ token: string; userId: string; apiKey: string }> {
  const u = await signUp(prefix);
  const apiKey = `sk-${prefix}-${u.userId.slice(0, 8)}`;
  for (const provider of providers) {
    const res = await gql(
      `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`,
      { input: { provider, apiKey } },
      u.token,
    );
    if (res.errors) throw new Error(JSON.stringify(res.errors));
  }
  return { ...u, apiKey };
}

export async function createSet(
  gql: Gql,
  token: string,
  items: Array<{ prompt: string; system?: string; reference?: string; assertions?: Array<{ kind: string; value?: string }> }>,
  defaultAssertions: Array<{ kind: string; value?: string }> = [],
): Promise<string> {
  const res = await gql(
    `mutation($input: PromptSetInput!) { createPromptSet(input: $input) { id } }`,
    { input: { name: 'eval set', items, defaultAssertions } },
    token,
  );
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return res.data.createPromptSet.id;
}

export async function startRun(gql: Gql, token: string, input: Record<string, unknown>): Promise<any> {
  const res = await gql(START, { input }, token);
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return res.data.startEvalRun;
}

const TERMINAL = ['COMPLETED', 'CANCELLED', 'FAILED'];

/** Polls `evalRun` until `done(run)` (default: a terminal status) or the deadline. */
export async function waitForRun(
  gql: Gql,
  token: string,
  id: string,
  done: (run: any) => boolean = (run) => TERMINAL.includes(run.status),
  timeoutMs = 30_000,
  everyMs = 50,
): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await gql(RUN, { id }, token);
    const run = res.data?.evalRun;
    if (run && done(run)) return run;
    if (Date.now() > deadline) throw new Error(`run ${id} not done within ${timeoutMs} ms: ${JSON.stringify(res)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Every cell of a run, all pages. */
export async function allCells(gql: Gql, token: string, id: string, args: Record<string, unknown> = {}): Promise<any[]> {
  const cells: any[] = [];
  let after: string | null = null;
  for (;;) {
    const res: any = await gql(CELLS, { id, first: 100, after, ...args }, token);
    if (res.errors) throw new Error(JSON.stringify(res.errors));
    const page = res.data.evalRun.cells;
    cells.push(...page.nodes);
    if (!page.pageInfo.hasNextPage) return cells;
    after = page.pageInfo.endCursor;
  }
}
