/**
 * What each path answers. Everything around a route (request id, response
 * time, body limit, errors, metrics, the log line) is `server.ts`'s. The
 * operational paths are answered here; the API's paths are mounted by the
 * layer that owns them (`graphql/routes.ts`), wired in `app.ts`:
 *
 * | path | answers |
 * | --- | --- |
 * | `GET /health` | `observability/health.ts` |
 * | `GET /metrics` | Prometheus text, behind `METRICS_TOKEN` when set |
 * | a mounted route's paths | that route (`/graphql`, `/graphql/stream`, the explorer: `graphql/routes.ts`) |
 * | anything else | 404 |
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { sendJson } from './respond';
import type { Route } from './server';

/**
 * Paths a layer above mounts: answers the request and resolves to the route's
 * label (the log line's and the metrics'), or to undefined when `path` is not
 * one of its paths (the next mounted route, then 404, is tried).
 */
export type MountedRoute = (req: IncomingMessage, res: ServerResponse, requestId: string, path: string) => Promise<string | undefined>;

export interface RouteDeps {
  health(): Promise<unknown>;
  metrics: { registry: Registry; token: string | undefined };
  /** Tried in order after the operational paths. */
  mounted: MountedRoute[];
}

export function createRoutes(deps: RouteDeps): Route {
  return async (req, res, requestId) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
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
    for (const route of deps.mounted) {
      const answered = await route(req, res, requestId, path);
      if (answered !== undefined) return answered;
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
