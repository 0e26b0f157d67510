/**
 * Building an AI SDK model from a user's key (`createLanguageModel`), and where
 * each provider is called (base URLs, credentials, the egress-guarded fetch),
 * shared with `model-lists.ts`. What a failure means is `provider-errors.ts`'s.
 *
 * URLs the SDK calls (base URL = user's key base URL, else config, else the default):
 * - openai            POST {base}/chat/completions            (`Authorization: Bearer`)
 * - anthropic         POST {base}/messages                    (`x-api-key`, `anthropic-version: 2023-06-01`)
 * - google            POST {base}/models/{m}:generateContent, :streamGenerateContent?alt=sse (`x-goog-api-key`)
 * - mistral           POST {base}/chat/completions            (`Authorization: Bearer`)
 * - openai_compatible POST {base}/chat/completions            (`Authorization: Bearer`, omitted when the key is empty)
 * - azure             POST {base}/chat/completions, deployment name in `body.model` (`api-key`); for
 *                     `*.openai.azure.com/openai` the SDK itself inserts `/v1` and adds `?api-version=v1`.
 */
import type * as Anthropic from '@ai-sdk/anthropic';
import type * as Azure from '@ai-sdk/azure';
import type * as Google from '@ai-sdk/google';
import type * as Mistral from '@ai-sdk/mistral';
import type * as OpenAI from '@ai-sdk/openai';
import type * as OpenAICompatible from '@ai-sdk/openai-compatible';
import type { LanguageModel } from 'ai';
import type { ProviderName } from './model-id';
import { PROVIDER_LABELS, ProviderCallError } from './provider-errors';

export interface ProviderCredentials {
  apiKey: string;
  /** Per-key endpoint; required for azure and openai_compatible, overrides the configured base URL otherwise. */
  baseUrl?: string | null;
}

/** Operator-configured base URLs (e.g. a proxy, or the fake server in tests). */
export interface ProviderBaseUrls {
  openai?: string;
  anthropic?: string;
  google?: string;
  mistral?: string;
}

/**
 * How calls reach the network. `userFetch` carries every call to an endpoint a
 * user chose (their key's `baseUrl`): the egress-guarded fetch of `egress.ts`.
 * Operator-configured and public endpoints use the global fetch.
 */
export interface ProviderTransport {
  userFetch?: typeof fetch;
}

export const DEFAULT_BASE_URLS: Readonly<Required<ProviderBaseUrls>> = Object.freeze({
  openai: 'https://api.openai.com/v1',
  anthropic: 'https://api.anthropic.com/v1',
  google: 'https://generativelanguage.googleapis.com/v1beta',
  mistral: 'https://api.mistral.ai/v1',
});

/**
 * A base URL as endpoints are compared (`OPERATOR_ENDPOINTS`): scheme, host
 * and port as the URL parser spells them (lower case, default port dropped),
 * then the path without trailing slashes; query and fragment left out. Null
 * when it is not an http(s) URL.
 */
export function normalizeEndpoint(raw: string): string | null {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
}

/**
 * Whether a call to a key's own `baseUrl` is served by one of the operator's
 * endpoints (`operatorEndpoints`: normalised, see `normalizeEndpoint`). A call
 * without a key `baseUrl` goes to the operator's configured or public
 * endpoint: never custom.
 */
export function isCustomEndpoint(creds: ProviderCredentials, operatorEndpoints: ReadonlySet<string>): boolean {
  const own = creds.baseUrl?.trim();
  if (!own) return false;
  const normalized = normalizeEndpoint(own);
  return normalized === null || !operatorEndpoints.has(normalized);
}

/**
 * No retries of a model call (`streamCompletion` calls the provider model's
 * `doStream` once; pass this as `maxRetries` to any `streamText` /
 * `generateText`). The SDK's default (2
 * retries, 2 s then 4 s backoff, honouring `retry-after`) would spend most of a
 * comparison's own timeout sleeping, and a retry after a partially streamed
 * answer would duplicate text. A comparison reports a failed model instead;
 * the user can re-run it.
 */
export const LLM_MAX_RETRIES = 0;

/**
 * Each provider's AI SDK package, required on its first use, never imported: with zod and the SDK's
 * utilities they were about a quarter of the app's module-load CPU, paid by every process (and every
 * test file) whether it called a model or not.
 */
const sdk = {
  openai: () => require('@ai-sdk/openai') as typeof OpenAI,
  anthropic: () => require('@ai-sdk/anthropic') as typeof Anthropic,
  google: () => require('@ai-sdk/google') as typeof Google,
  mistral: () => require('@ai-sdk/mistral') as typeof Mistral,
  azure: () => require('@ai-sdk/azure') as typeof Azure,
  openai_compatible: () => require('@ai-sdk/openai-compatible') as typeof OpenAICompatible,
} satisfies Record<ProviderName, () => unknown>;

/**
 * Loads every provider package now: for a server before it listens (`main.ts`) and a thread whose
 * only work is provider calls (`provider-thread.entry.ts`). Loaded inside a call, they would stop the
 * event loop while other answers stream (a provider thread's deltas then arrived as one).
 */
export function loadProviderPackages(): void {
  for (const load of Object.values(sdk)) load();
}

/**
 * Builds a fresh provider instance per call: keys belong to users, so nothing
 * is cached across calls. OpenAI and Azure use `.chat()` (chat completions, the
 * dialect Ollama / vLLM / Azure also speak), not the Responses API. A base URL
 * is always passed explicitly so the SDK never falls back to `*_BASE_URL` env
 * variables. Throws `ProviderCallError` (BAD_REQUEST) when azure or
 * openai_compatible has no base URL, or a base URL is not http(s).
 */
export function createLanguageModel(
  provider: ProviderName,
  modelName: string,
  creds: ProviderCredentials,
  baseUrls: ProviderBaseUrls,
  transport: ProviderTransport = {},
): LanguageModel {
  const baseURL = resolveBaseUrl(provider, creds, baseUrls);
  const apiKey = creds.apiKey;
  const fetch = fetchFor(creds, transport);
  switch (provider) {
    case 'openai':
      return sdk.openai().createOpenAI({ apiKey, baseURL, fetch }).chat(modelName);
    case 'anthropic':
      return sdk.anthropic().createAnthropic({ apiKey, baseURL, fetch })(modelName);
    case 'google':
      return sdk.google().createGoogleGenerativeAI({ apiKey, baseURL, fetch })(modelName);
    case 'mistral':
      return sdk.mistral().createMistral({ apiKey, baseURL, fetch })(modelName);
    case 'azure':
      return sdk.azure().createAzure({ apiKey, baseURL, fetch }).chat(modelName);
    case 'openai_compatible':
      // includeUsage: ask for the final usage chunk when streaming (OpenAI `stream_options.include_usage`).
      return sdk.openai_compatible().createOpenAICompatible({ name: 'openai_compatible', apiKey, baseURL, includeUsage: true, fetch })(
        modelName,
      );
    default:
      return assertNever(provider);
  }
}

/** The guarded fetch when the call goes to the user's own endpoint; undefined (global fetch) otherwise. */
export function fetchFor(creds: ProviderCredentials, transport: ProviderTransport): typeof fetch | undefined {
  return creds.baseUrl?.trim() ? transport.userFetch : undefined;
}

/** The base URL a call goes to: the key's own, else the configured one, else the public API. Throws `ProviderCallError` (BAD_REQUEST). */
export function resolveBaseUrl(provider: ProviderName, creds: ProviderCredentials, baseUrls: ProviderBaseUrls): string {
  const own = creds.baseUrl?.trim();
  if (own) return validBaseUrl(provider, own);
  if (provider === 'azure' || provider === 'openai_compatible') {
    throw new ProviderCallError(provider, 'BAD_REQUEST', `${PROVIDER_LABELS[provider]} key has no base URL`);
  }
  return validBaseUrl(provider, baseUrls[provider] || DEFAULT_BASE_URLS[provider]);
}

function validBaseUrl(provider: ProviderName, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ProviderCallError(provider, 'BAD_REQUEST', `${PROVIDER_LABELS[provider]} base URL is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ProviderCallError(provider, 'BAD_REQUEST', `${PROVIDER_LABELS[provider]} base URL must use http or https`);
  }
  return raw.replace(/\/+$/, '');
}

function assertNever(value: never): never {
  throw new Error(`Unknown provider: ${String(value)}`);
}
