/**
 * The local explorer: GraphiQL served from npm packages on this server (no
 * CDN, so it works offline), at `GET /graphql` for browsers (`Accept:
 * text/html`) outside production, with example operations pre-filled.
 *
 * - The page loads only our own assets, under `/explorer/`: React and
 *   ReactDOM's UMD builds and GraphiQL's bundle and stylesheet (its fonts are
 *   inlined as data: URLs), plus `explorer.js`, which mounts GraphiQL.
 * - The packages are development dependencies: when they are not installed
 *   (`npm ci --omit=dev`), `loadExplorer()` answers undefined and Apollo's
 *   landing page stays in place. Production always keeps Apollo's production
 *   landing page.
 * - GraphiQL's fetcher posts to `/graphql`; the Authorization header is set in
 *   its Headers pane (the login tab's answer holds the token). Every tab opens
 *   with its variables filled in, so each runs as it opens.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';

export const EXPLORER_PREFIX = '/explorer/';

interface Asset {
  type: string;
  body: Buffer | string;
}

/** Files of the packages (found through each package.json: their `exports` do not list these builds). */
const PACKAGE_FILES: Record<string, { pkg: string; file: string; type: string }> = {
  'react.production.min.js': { pkg: 'react', file: 'umd/react.production.min.js', type: 'text/javascript; charset=utf-8' },
  'react-dom.production.min.js': { pkg: 'react-dom', file: 'umd/react-dom.production.min.js', type: 'text/javascript; charset=utf-8' },
  'graphiql.min.js': { pkg: 'graphiql', file: 'graphiql.min.js', type: 'text/javascript; charset=utf-8' },
  'graphiql.min.css': { pkg: 'graphiql', file: 'graphiql.min.css', type: 'text/css; charset=utf-8' },
};

/** The pre-filled tabs: sign in, the history page, a comparison. */
export const EXAMPLE_TABS = [
  {
    query: `# 1. Sign in (or use register with the same arguments the first time).
#    Copy the token into the Headers pane below:
#    { "Authorization": "Bearer <token>" }
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) {
    token
    user { id email }
  }
}`,
    variables: JSON.stringify({ email: 'you@example.com', password: 'correct horse battery' }, null, 2),
  },
  {
    query: `# 2. The history page: your latest conversations and comparisons.
query History($n: Int!) {
  conversations(first: $n) {
    nodes {
      id title messageCount
      lastMessage { content }
    }
    pageInfo { hasNextPage endCursor }
  }
  comparisons(first: $n) {
    nodes { id prompt responses { model keyLabel status latencyMs } vote { outcome } }
  }
}`,
    variables: JSON.stringify({ n: 10 }, null, 2),
  },
  {
    query: `# 3. A comparison: 2 to 8 models 'provider:name[@label]' (save an API key for each provider first).
#    Live deltas: POST the subscription comparisonEvents to /graphql/stream with Accept: text/event-stream.
mutation Compare($input: RunComparisonInput!) {
  runComparison(input: $input) {
    id
    responses { model keyLabel status content error latencyMs costUsd }
  }
}`,
    variables: JSON.stringify(
      { input: { prompt: 'Explain keyset pagination in one sentence.', models: ['openai:gpt-4o-mini', 'anthropic:claude-haiku-4-5'] } },
      null,
      2,
    ),
  },
];

/**
 * Mounts GraphiQL with the tabs. GraphiQL 3 restores its stored tabs (or opens
 * `defaultTabs` on a first visit) but fills the editors from its `query`,
 * `variables` and `headers` props, falling back to the first tab's query only,
 * never to a tab's variables: the sign-in tab opened with an empty Variables
 * pane, so its first run answered a validation error. So the active tab (the
 * first on a first visit, the stored active one later; `graphiql:tabState` is
 * GraphiQL's storage key) is handed in as those props, which also makes
 * GraphiQL pick that same stored tab rather than add one.
 */
const MOUNT_SCRIPT = `(function () {
  var tabs = ${JSON.stringify(EXAMPLE_TABS)};
  var active = tabs[0];
  try {
    var stored = JSON.parse(window.localStorage.getItem('graphiql:tabState') || 'null');
    if (stored && stored.tabs && stored.tabs[stored.activeTabIndex]) active = stored.tabs[stored.activeTabIndex];
  } catch (e) { /* storage disabled or unreadable: GraphiQL opens the tabs as on a first visit */ }
  var props = {
    fetcher: GraphiQL.createFetcher({ url: new URL('/graphql', window.location.href).toString() }),
    defaultTabs: tabs,
    defaultEditorToolsVisibility: true,
    shouldPersistHeaders: true,
    query: active.query == null ? undefined : active.query,
    variables: active.variables == null ? undefined : active.variables,
  };
  if (typeof active.headers === 'string') props.headers = active.headers;
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(React.createElement(GraphiQL, props));
})();
`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>LLMSelect API explorer</title>
  <link rel="stylesheet" href="${EXPLORER_PREFIX}graphiql.min.css">
  <style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
  <div id="graphiql">Loading the explorer…</div>
  <script src="${EXPLORER_PREFIX}react.production.min.js"></script>
  <script src="${EXPLORER_PREFIX}react-dom.production.min.js"></script>
  <script src="${EXPLORER_PREFIX}graphiql.min.js"></script>
  <script src="${EXPLORER_PREFIX}explorer.js"></script>
</body>
</html>
`;

export interface Explorer {
  /** True when this request is a browser asking for `/graphql` as a page. */
  wantsPage(req: IncomingMessage, path: string): boolean;
  sendPage(res: ServerResponse): void;
  /** Serves `/explorer/<file>`; false when no such file. */
  sendAsset(path: string, res: ServerResponse): boolean;
}

/** The explorer, or undefined when its packages are not installed. Files are read once, on first use. */
export function loadExplorer(): Explorer | undefined {
  const paths: Record<string, { path: string; type: string }> = {};
  try {
    for (const [name, file] of Object.entries(PACKAGE_FILES)) {
      const path = join(dirname(require.resolve(`${file.pkg}/package.json`)), file.file);
      if (!existsSync(path)) return undefined;
      paths[name] = { path, type: file.type };
    }
  } catch {
    return undefined;
  }
  const cache = new Map<string, Asset>([['explorer.js', { type: 'text/javascript; charset=utf-8', body: MOUNT_SCRIPT }]]);
  const asset = (name: string): Asset | undefined => {
    const known = cache.get(name);
    if (known) return known;
    const file = Object.hasOwn(paths, name) ? paths[name] : undefined;
    if (!file) return undefined;
    const loaded = { type: file.type, body: readFileSync(file.path) };
    cache.set(name, loaded);
    return loaded;
  };
  return {
    wantsPage(req, path) {
      if (path !== '/graphql' || req.method !== 'GET') return false;
      const url = new URL(req.url ?? '/', 'http://localhost');
      // A GET carrying an operation is GraphQL over GET, whatever it accepts.
      if (url.searchParams.has('query') || url.searchParams.has('extensions')) return false;
      return (req.headers.accept ?? '').includes('text/html');
    },
    sendPage(res) {
      res.statusCode = 200;
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.setHeader('cache-control', 'no-cache');
      res.end(PAGE);
    },
    sendAsset(path, res) {
      const found = asset(path.slice(EXPLORER_PREFIX.length));
      if (!found) return false;
      res.statusCode = 200;
      res.setHeader('content-type', found.type);
      res.setHeader('cache-control', 'public, max-age=3600');
      res.end(found.body);
      return true;
    },
  };
}
