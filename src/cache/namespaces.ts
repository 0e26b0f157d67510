/** Cache key namespaces: a port key is `<namespace>:<rest>`, stored as `${prefix}:${namespace}:${rest}`. */

/** Namespace of a port key: the segment before the first `:` (or the whole key). */
export function namespaceOf(key: string): string {
  const i = key.indexOf(':');
  return i === -1 ? key : key.slice(0, i);
}

/** Throws a TypeError unless `ns` is a non-empty namespace without `:`. */
export function assertNamespace(ns: string): void {
  if (typeof ns !== 'string' || ns === '' || ns.includes(':')) {
    throw new TypeError(`invalid cache namespace "${String(ns)}": non-empty, without ":"`);
  }
}

/** Escapes Redis glob metacharacters so `s` matches literally in SCAN MATCH. */
export function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
