import type { DeserializedData } from 'keyv';

/** Thrown for values JSON cannot encode (BigInt, cycles): a caller bug, not an outage. */
export class CacheSerializationError extends Error {
  override name = 'CacheSerializationError';
}

/** Keyv `serialize`: plain JSON of Keyv's `{ value, expires }` envelope. */
export function serializeEnvelope<V>(data: DeserializedData<V>): string {
  try {
    return JSON.stringify(data);
  } catch (error) {
    throw new CacheSerializationError(`value is not JSON-serializable: ${(error as Error).message}`);
  }
}

/**
 * Keyv `deserialize`: the envelope, or `{ value: n }` for a raw Redis INCR
 * counter; anything unreadable is a miss (undefined) rather than an error.
 */
export function deserializeEnvelope<V>(raw: string): DeserializedData<V> | undefined {
  try {
    const parsed: unknown = JSON.parse(raw);
    if (typeof parsed === 'number') return { value: parsed as V };
    if (parsed !== null && typeof parsed === 'object' && 'value' in parsed) return parsed as DeserializedData<V>;
    return undefined;
  } catch {
    return undefined;
  }
}

/** JSON round trip, so a freshly loaded value has the same shape as a cache hit. */
export function jsonRoundTrip<T>(value: T): T {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new CacheSerializationError(`value is not JSON-serializable: ${(error as Error).message}`);
  }
  return (json === undefined ? undefined : JSON.parse(json)) as T;
}
