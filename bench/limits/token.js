'use strict';
/**
 * The user id (`sub`) of a `Bearer <jwt>` header, decoded WITHOUT verifying the
 * signature: the limit servers measure the transport and data floor; ours
 * also verifies HS256, so this makes the limits stricter, not looser.
 */
function userIdFromAuthorization(header) {
  if (!header) return null;
  const token = header.slice(header.indexOf(' ') + 1);
  const first = token.indexOf('.');
  const second = token.indexOf('.', first + 1);
  if (first < 0 || second < 0) return null;
  try {
    const sub = JSON.parse(Buffer.from(token.slice(first + 1, second), 'base64url').toString('utf8')).sub;
    return typeof sub === 'string' ? sub : null;
  } catch {
    return null;
  }
}

/** Reads (and discards) the request body, as any GraphQL server must. */
function drain(req) {
  return new Promise((resolve, reject) => {
    req.on('data', () => undefined);
    req.on('end', resolve);
    req.on('error', reject);
  });
}

/** The request body, whole (the shared-page limit reads the token from it). */
function readAll(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

module.exports = { userIdFromAuthorization, drain, readAll };
