/**
 * The API's paths, mounted on the HTTP server's routes (`http/routes.ts`) by `app.ts`:
 *
 * | path | answers |
 * | --- | --- |
 * | `GET /` | outside production: 302 to the explorer at `/graphql` |
 * | `GET /graphql` (`Accept: text/html`), `GET /explorer/*` | outside production: the local explorer (`explorer.ts`) |
 * | `/graphql` | GraphQL (`http.ts`: the read cache's edge, then Apollo) |
 * | `/graphql/stream` | subscriptions over SSE (`sse.ts`) |
 * | `/graphql/ws` | subscriptions over WebSocket (`ws.ts`: an upgrade, attached to the HTTP server by `app.ts`) |
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MountedRoute } from '../http/routes';
import { EXPLORER_PREFIX, type Explorer } from './explorer';

type Handler = (req: IncomingMessage, res: ServerResponse, requestId: string) => Promise<void>;

export interface GraphqlRouteDeps {
  /** The local explorer; undefined in production (Apollo's landing page stays). */
  explorer: Explorer | undefined;
  graphql: Handler;
  stream: Handler;
}

export function graphqlRoutes(deps: GraphqlRouteDeps): MountedRoute {
  const { explorer } = deps;
  return async (req, res, requestId, path) => {
    if (explorer && req.method === 'GET') {
      if (path === '/') {
        res.statusCode = 302;
        res.setHeader('location', '/graphql');
        res.end();
        return 'explorer';
      }
      if (explorer.wantsPage(req, path)) {
        explorer.sendPage(res);
        return 'explorer';
      }
      if (path.startsWith(EXPLORER_PREFIX) && explorer.sendAsset(path, res)) return 'explorer';
    }
    if (path === '/graphql/stream') {
      await deps.stream(req, res, requestId);
      return 'graphql_stream';
    }
    if (path === '/graphql') {
      await deps.graphql(req, res, requestId);
      return 'graphql';
    }
    return undefined;
  };
}
