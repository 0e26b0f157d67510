'use strict';
/**
 * Shared by the bench's peer and limit servers (plain CommonJS, no
 * dependencies, so each server can require it from its own folder).
 *
 * - Counts the SQL statements every pooled client sends (each `client.query`
 *   call), so the bench reports statements per request for servers that have
 *   no metrics of their own.
 * - `GET /__bench/stats` answers `{ "statements": n }`; `GET /__bench/ready` answers 204.
 */
const stats = { statements: 0 };

/** Wraps `query` on every client the pool creates. */
function countStatements(pool) {
  pool.on('connect', (client) => {
    const query = client.query;
    client.query = function countedQuery(...args) {
      stats.statements++;
      return query.apply(this, args);
    };
  });
  return pool;
}

/** Answers the bench's own routes; returns true when it did. */
function benchRoute(req, res) {
  if (!req.url?.startsWith('/__bench/')) return false;
  if (req.url === '/__bench/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(stats));
  } else if (req.url === '/__bench/ready') {
    res.writeHead(204);
    res.end();
  } else {
    res.writeHead(404);
    res.end();
  }
  return true;
}

/** Listens on 127.0.0.1:PORT and exits cleanly on SIGTERM / SIGINT. */
function listen(server, onClose) {
  const port = Number(process.env.PORT);
  server.keepAliveTimeout = 65_000;
  server.listen(port, '127.0.0.1', () => process.stdout.write(`listening on ${port}\n`));
  const stop = () => {
    server.close();
    server.closeAllConnections();
    Promise.resolve(onClose?.()).finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

module.exports = { countStatements, benchRoute, listen, stats };
