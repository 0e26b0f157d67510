/**
 * Distinct documents sent to a server process, and its memory as Linux
 * reports it (`/proc/<pid>/status`), for the memory-per-document test and
 * `npm run bench:documents`.
 */
import { readFileSync } from 'node:fs';

/** Resident set size now and its high-water mark, in MB. */
export function memoryOf(pid: number): { rssMb: number; peakMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

/**
 * The i-th distinct document of issue 16 (`aliases` 1: ~45 bytes, one alias of
 * the model catalog); with more aliases the same shape repeated, so each
 * document is bigger to compile and keep.
 */
export const distinctDocument = (i: number, aliases = 1): string =>
  `query Q${i} { ${Array.from({ length: aliases }, (_, k) => `a${i}${k ? `_${k}` : ''}: models { id name }`).join(' ')} }`;

/**
 * Sends documents `from` … `to - 1` (each once) with `concurrency` requests
 * in flight; every answer must be a 200 with data. Returns how many failed.
 */
export async function sendDistinctDocuments(
  url: string,
  from: number,
  to: number,
  opts: { concurrency?: number; token?: string; aliases?: number } = {},
): Promise<number> {
  let next = from;
  let failed = 0;
  const worker = async () => {
    while (next < to) {
      const i = next++;
      const response = await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
        body: JSON.stringify({ query: distinctDocument(i, opts.aliases) }),
      });
      const body = (await response.json()) as { data?: unknown };
      if (response.status !== 200 || !body.data) failed++;
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 8 }, worker));
  return failed;
}
