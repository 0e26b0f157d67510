/** Public surface of the cache infrastructure. Import from `src/cache`, never from Keyv / Redis. */
export type { CacheHealth, CacheLookupHook, CachePort, NamespaceStats, SwrOptions } from './cache.port';
export { createCache, type CreateCacheOptions } from './create-cache';
export { singleFlight, type SingleFlight } from './single-flight';
export { createPubSub, type CreatePubSubOptions, type MessageHandler, type PubSub } from './pubsub';
export { createApqCache } from './apq';
export { registerCacheMetrics } from './metrics';
export { createRateLimiters, type CreateRateLimitersOptions, type RateLimiter, type RateLimiters, type RateLimitRule, type RateLimitVerdict } from './rate-limit';
