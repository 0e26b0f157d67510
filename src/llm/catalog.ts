/**
 * The curated model catalog: which models the UI offers by default, their
 * context windows and list prices. Plain data, dated by `CATALOG_DATE`.
 *
 * PRICES MUST BE REVIEWED. They are the providers' public list prices in USD
 * per million tokens (standard tier, text, no batch or cache discounts) as
 * last checked for `CATALOG_DATE`. Providers change prices and move `-latest`
 * aliases to new models without notice; update the entries and the date
 * together. Where a price was not known with confidence it is `null`, and
 * `costUsd` then reports the cost as unknown rather than guessing.
 *
 * Not modelled: tiered pricing by prompt length (Gemini 2.5 Pro and long-context
 * Claude charge more above 200k prompt tokens; the base tier is listed),
 * cached-input discounts, and reasoning-token surcharges (reasoning tokens are
 * billed as output and are assumed to be included in completion tokens).
 *
 * Azure deployments and OpenAI-compatible endpoints (Ollama, vLLM, …) have
 * user-chosen names and prices, so they have no entries here.
 */
import { formatModelId, type ProviderName } from './model-id';

export type { ProviderName } from './model-id';

export interface CatalogEntry {
  provider: ProviderName;
  /** The provider's API model name (what is sent in requests). */
  name: string;
  displayName: string;
  /** Context window in tokens as the provider lists it (for some, input + output); null when unknown. */
  contextWindow: number | null;
  /** USD per million prompt tokens; null when unknown. */
  inputCostPerMTok: number | null;
  /** USD per million completion tokens; null when unknown. */
  outputCostPerMTok: number | null;
}

/** The day the catalog's prices were last reviewed (see the module comment). */
export const CATALOG_DATE = '2026-11-01';

type Row = [name: string, displayName: string, contextWindow: number | null, input: number | null, output: number | null];

const OPENAI: Row[] = [
  ['gpt-5', 'GPT-5', 400_000, 1.25, 10],
  ['gpt-5-mini', 'GPT-5 mini', 400_000, 0.25, 2],
  ['gpt-5-nano', 'GPT-5 nano', 400_000, 0.05, 0.4],
  ['gpt-4.1', 'GPT-4.1', 1_047_576, 2, 8],
  ['gpt-4.1-mini', 'GPT-4.1 mini', 1_047_576, 0.4, 1.6],
  ['gpt-4.1-nano', 'GPT-4.1 nano', 1_047_576, 0.1, 0.4],
  ['gpt-4o', 'GPT-4o', 128_000, 2.5, 10],
  ['gpt-4o-mini', 'GPT-4o mini', 128_000, 0.15, 0.6],
  ['o3', 'o3', 200_000, 2, 8],
  ['o3-mini', 'o3-mini', 200_000, 1.1, 4.4],
  ['o4-mini', 'o4-mini', 200_000, 1.1, 4.4],
];

const ANTHROPIC: Row[] = [
  ['claude-opus-4-5', 'Claude Opus 4.5', 200_000, 5, 25],
  ['claude-opus-4-1', 'Claude Opus 4.1', 200_000, 15, 75],
  ['claude-sonnet-4-5', 'Claude Sonnet 4.5', 200_000, 3, 15],
  ['claude-sonnet-4-0', 'Claude Sonnet 4', 200_000, 3, 15],
  ['claude-haiku-4-5', 'Claude Haiku 4.5', 200_000, 1, 5],
  ['claude-3-5-haiku-latest', 'Claude Haiku 3.5', 200_000, 0.8, 4],
];

const GOOGLE: Row[] = [
  ['gemini-2.5-pro', 'Gemini 2.5 Pro', 1_048_576, 1.25, 10],
  ['gemini-2.5-flash', 'Gemini 2.5 Flash', 1_048_576, 0.3, 2.5],
  ['gemini-2.5-flash-lite', 'Gemini 2.5 Flash-Lite', 1_048_576, 0.1, 0.4],
  ['gemini-2.0-flash', 'Gemini 2.0 Flash', 1_048_576, 0.1, 0.4],
];

const MISTRAL: Row[] = [
  // The alias has moved to a newer Mistral Large whose price and window were
  // not confirmed here; the pinned 2411 release below keeps a known price.
  ['mistral-large-latest', 'Mistral Large (latest)', null, null, null],
  ['mistral-large-2411', 'Mistral Large 24.11', 128_000, 2, 6],
  ['mistral-medium-latest', 'Mistral Medium (latest)', 128_000, 0.4, 2],
  ['mistral-small-latest', 'Mistral Small (latest)', 128_000, 0.1, 0.3],
  ['codestral-latest', 'Codestral (latest)', 256_000, 0.3, 0.9],
];

function entries(provider: ProviderName, rows: Row[]): CatalogEntry[] {
  return rows.map(([name, displayName, contextWindow, inputCostPerMTok, outputCostPerMTok]) =>
    Object.freeze({ provider, name, displayName, contextWindow, inputCostPerMTok, outputCostPerMTok }),
  );
}

/** Every curated model, grouped by provider; frozen. */
export const MODEL_CATALOG: readonly CatalogEntry[] = Object.freeze([
  ...entries('openai', OPENAI),
  ...entries('anthropic', ANTHROPIC),
  ...entries('google', GOOGLE),
  ...entries('mistral', MISTRAL),
]);

const BY_ID = new Map(MODEL_CATALOG.map((e) => [formatModelId(e.provider, e.name), e]));

/** The catalog entry for exactly this provider and API model name (case-sensitive), if any. */
export function findCatalogEntry(provider: ProviderName, name: string): CatalogEntry | undefined {
  return BY_ID.get(formatModelId(provider, name));
}

/**
 * Cost in USD (unrounded) of one call: prompt · input price + completion ·
 * output price, prices per million tokens. Returns null when the cost cannot
 * be known: no entry, a null price, or a token count that is missing
 * (null/undefined), negative or not finite. Zero tokens cost 0.
 */
export function costUsd(entry: CatalogEntry | undefined, promptTokens?: number | null, completionTokens?: number | null): number | null {
  if (!entry || entry.inputCostPerMTok === null || entry.outputCostPerMTok === null) return null;
  if (!isTokenCount(promptTokens) || !isTokenCount(completionTokens)) return null;
  return (promptTokens * entry.inputCostPerMTok + completionTokens * entry.outputCostPerMTok) / 1_000_000;
}

function isTokenCount(n: number | null | undefined): n is number {
  return typeof n === 'number' && Number.isFinite(n) && n >= 0;
}
