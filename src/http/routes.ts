/**
 * What each path answers. Everything around a route (request id, response
 * time, body limit, errors, metrics, the log line) is `server.ts`'s.
 *
 * | path | answers |
 * | --- | --- |
 * | `GET /` | outside production: 302 to the explorer at `/graphql` |
 * | `GET /graphql` (`Accept: text/html`), `GET /explorer/*` | outside production: the local explorer (`graphql/explorer.ts`) |
 * | `/graphql` | GraphQL (`graphql/http.ts`: the read cache's edge, then Apollo) |
 * | `/graphql/stream` | subscriptions over SSE (`graphql/sse.ts`) |
 * | `GET /health` | `observability/health.ts` |
 * | `GET /metrics` | Prometheus text, behind `METRICS_TOKEN` when set |
 * | anything else | 404 |
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { EXPLORER_PREFIX, type Explorer } from '../graphql/explorer';
import { sendJson } from './respond';
import type { Route } from './server';

type Handler = (req: IncomingMessage, res: ServerResponse, requestId: string) => Promise<void>;

export interface RouteDeps {
  /** The local explorer; undefined in production (Apollo's landing page stays). */
  explorer: Explorer | undefined;
  graphql: Handler;
  stream: Handler;
  health(): Promise<unknown>;
  metrics: { registry: Registry; token: string | undefined };
}

export function createRoutes(deps: RouteDeps): Route {
  const { explorer } = deps;
  return async (req, res, requestId) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
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
    if (path === '/health' && req.method === 'GET') {
      sendJson(res, 200, await deps.health());
      return 'health';
    }
    if (path === '/metrics' && req.method === 'GET') {
      if (!metricsAuthorized(deps.metrics.token, req.headers.authorization)) {
        res.setHeader('www-authenticate', 'Bearer realm="metrics"');
        sendJson(res, 401, { error: 'Send the metrics token as Authorization: Bearer <METRICS_TOKEN>' });
        return 'metrics';
      }
      res.setHeader('content-type', deps.metrics.registry.contentType);
      res.end(await deps.metrics.registry.metrics());
      return 'metrics';
    }
    if (path === '/graphql/stream') {
      await deps.stream(req, res, requestId);
      return 'graphql_stream';
    }
    if (path === '/graphql') {
      await deps.graphql(req, res, requestId);
      return 'graphql';
    }
    sendJson(res, 404, { error: 'Not found' });
    return 'not_found';
  };
}

/** True when no token is configured, or the header carries it (compared in constant time). */
function metricsAuthorized(token: string | undefined, header: string | undefined): boolean {
  if (!token) return true;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(header ?? ''), digest(`Bearer ${token}`));
}
