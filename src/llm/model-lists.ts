/**
 * Listing the models a key can use, from each provider's own model-list
 * endpoint (`listProviderModels`; cached by `model-registry.ts`).
 */
import { classifyProviderError, describeFailure, ProviderCallError, reasonForStatus } from './provider-errors';
import { fetchFor, type ProviderBaseUrls, type ProviderCredentials, type ProviderTransport, resolveBaseUrl } from './language-models';
import { isSafeModelName, type ProviderName } from './model-id';

/** Safety net against a provider that keeps returning "has more". */
const MAX_PAGES = 20;
/** A model-list page larger than this is refused (OpenRouter's rich list is ~2 MB; 300,000 entries are ~25 MB). */
const MAX_LIST_PAGE_BYTES = 8 * 1024 * 1024;
/** Default for `ListOptions.maxModels`. */
const DEFAULT_MAX_LISTED_MODELS = 1_000;

export interface ListOptions extends ProviderTransport {
  /** Names kept from the list, in the provider's order (`LLM_MAX_LISTED_MODELS`). */
  maxModels?: number;
}

type GetJson = (url: string, headers: Record<string, string>) => Promise<unknown>;

/**
 * Lists the model names a key can use, from the provider's own model-list
 * endpoint (plain `fetch`, one `AbortSignal.timeout(timeoutMs)` for all pages).
 * Returns bare names, as accepted by `createLanguageModel` (Gemini's `models/`
 * prefix stripped), de-duplicated, in the provider's order; entries that are
 * clearly not chat models (embeddings, audio, images) are dropped where the
 * provider says so or, for OpenAI, by name. Names that could not be used in a
 * model id (`isSafeModelName`) are dropped too, and at most `maxModels` are
 * kept; a page over 8 MB is refused (UNAVAILABLE). Throws `ProviderCallError`.
 *
 * - openai / openai_compatible  GET {base}/models                (data[].id)
 * - anthropic                   GET {base}/models?limit=1000     (data[].id; has_more / after_id)
 * - google                      GET {base}/models?pageSize=1000  (models[].name; nextPageToken)
 * - mistral                     GET {base}/models                (data[].id; capabilities.completion_chat)
 * - azure                       GET {v1 base}/models             (data[].id; capabilities.chat_completion).
 *   These are the resource's *models*, not its deployments: the v1 API takes a
 *   deployment name as `model`, and listing deployments needs the ARM API.
 */
export async function listProviderModels(
  provider: ProviderName,
  creds: ProviderCredentials,
  baseUrls: ProviderBaseUrls,
  timeoutMs: number,
  options: ListOptions = {},
): Promise<string[]> {
  const base = resolveBaseUrl(provider, creds, baseUrls);
  const signal = AbortSignal.timeout(timeoutMs);
  const fetchFn = fetchFor(creds, options) ?? fetch;
  const getJson: GetJson = (url, headers) => fetchJson(provider, fetchFn, url, headers, signal);
  const names = await LISTERS[provider](base, creds.apiKey, getJson);
  const safe = names.filter((name) => isSafeModelName(provider, name));
  return [...new Set(safe)].slice(0, options.maxModels ?? DEFAULT_MAX_LISTED_MODELS);
}

async function fetchJson(
  provider: ProviderName,
  fetchFn: typeof fetch,
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<unknown> {
  try {
    const response = await fetchFn(url, { headers: { accept: 'application/json', ...headers }, signal });
    if (!response.ok) {
      await response.body?.cancel().catch(() => undefined);
      const reason = reasonForStatus(response.status);
      throw new ProviderCallError(provider, reason, describeFailure(provider, reason, response.status), {
        statusCode: response.status,
      });
    }
    return JSON.parse(await readTextLimited(provider, response, MAX_LIST_PAGE_BYTES));
  } catch (error) {
    throw classifyProviderError(provider, error, { timedOut: signal.aborted });
  }
}

/** The body as text, refusing (and cancelling) one larger than `maxBytes`. */
async function readTextLimited(provider: ProviderName, response: Response, maxBytes: number): Promise<string> {
  const tooLarge = () =>
    new ProviderCallError(
      provider,
      'UNAVAILABLE',
      describeFailure(provider, 'UNAVAILABLE', undefined, `returned a model list larger than ${maxBytes / 1024 / 1024} MB`),
    );
  if (Number(response.headers.get('content-length')) > maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw tooLarge();
  }
  if (!response.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > maxBytes) {
      await response.body.cancel().catch(() => undefined);
      throw tooLarge();
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

type Lister = (base: string, apiKey: string, getJson: GetJson) => Promise<string[]>;

const LISTERS: Record<ProviderName, Lister> = {
  openai: async (base, apiKey, getJson) =>
    ids(await getJson(`${base}/models`, bearer(apiKey)), 'data').filter((id) => !NON_CHAT_OPENAI.test(id)),
  openai_compatible: async (base, apiKey, getJson) => ids(await getJson(`${base}/models`, bearer(apiKey)), 'data'),
  mistral: async (base, apiKey, getJson) =>
    items(await getJson(`${base}/models`, bearer(apiKey)), 'data')
      .filter((m) => (m.capabilities as { completion_chat?: unknown } | undefined)?.completion_chat !== false)
      .map((m) => m.id)
      .filter(isString),
  azure: async (base, apiKey, getJson) =>
    items(await getJson(azureV1Url(base, '/models'), { 'api-key': apiKey }), 'data')
      .filter((m) => (m.capabilities as { chat_completion?: unknown } | undefined)?.chat_completion !== false)
      .map((m) => m.id)
      .filter(isString),
  anthropic: listAnthropicModels,
  google: listGoogleModels,
};

/** Embedding, audio, image and moderation models that `/v1/models` mixes in with chat models. */
const NON_CHAT_OPENAI = /embedding|whisper|tts|dall-e|gpt-image|moderation|transcribe|realtime|^davinci|^babbage|^sora/i;

async function listAnthropicModels(base: string, apiKey: string, getJson: GetJson): Promise<string[]> {
  const names: string[] = [];
  let afterId: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const query = new URLSearchParams({ limit: '1000', ...(afterId ? { after_id: afterId } : {}) });
    const body = await getJson(`${base}/models?${query}`, { 'x-api-key': apiKey, 'anthropic-version': '2023-06-01' });
    names.push(...ids(body, 'data'));
    const { has_more: hasMore, last_id: lastId } = (body ?? {}) as { has_more?: unknown; last_id?: unknown };
    if (hasMore !== true || typeof lastId !== 'string') break;
    afterId = lastId;
  }
  return names;
}

async function listGoogleModels(base: string, apiKey: string, getJson: GetJson): Promise<string[]> {
  const names: string[] = [];
  let pageToken: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const query = new URLSearchParams({ pageSize: '1000', ...(pageToken ? { pageToken } : {}) });
    const body = await getJson(`${base}/models?${query}`, { 'x-goog-api-key': apiKey });
    for (const model of items(body, 'models')) {
      const methods = Array.isArray(model.supportedGenerationMethods) ? model.supportedGenerationMethods : [];
      if (typeof model.name === 'string' && methods.includes('generateContent')) {
        names.push(model.name.replace(/^models\//, ''));
      }
    }
    const next = (body as { nextPageToken?: unknown } | null)?.nextPageToken;
    if (typeof next !== 'string' || next === '') break;
    pageToken = next;
  }
  return names;
}

/**
 * Mirrors @ai-sdk/azure's URL rule for its default v1 API: on an Azure host
 * whose path does not already end in `/openai/v1`, insert `/v1` and (except
 * for Foundry projects) add `api-version=v1`; any other host is used as is.
 */
export function azureV1Url(base: string, path: string): string {
  const parsed = new URL(base);
  const host = parsed.hostname;
  const pathname = parsed.pathname.replace(/\/+$/, '');
  const isAzureHost = /\.(openai\.azure\.com|services\.ai\.azure\.com|cognitiveservices\.azure\.com)$/.test(host);
  const isFoundryProject = host.endsWith('.services.ai.azure.com') && pathname.startsWith('/api/projects/');
  const isVersioned = isAzureHost && pathname.toLowerCase().endsWith('/openai/v1');
  const url = new URL(isAzureHost && !isVersioned ? `${base}/v1${path}` : `${base}${path}`);
  if (isAzureHost && !isVersioned && !isFoundryProject) url.searchParams.set('api-version', 'v1');
  return url.toString();
}

function bearer(apiKey: string): Record<string, string> {
  return apiKey ? { authorization: `Bearer ${apiKey}` } : {};
}

function items(body: unknown, field: string): Array<Record<string, unknown>> {
  const list = (body as Record<string, unknown> | null)?.[field];
  return Array.isArray(list) ? list.filter((x): x is Record<string, unknown> => x !== null && typeof x === 'object') : [];
}

function ids(body: unknown, field: string): string[] {
  return items(body, field)
    .map((m) => m.id)
    .filter(isString);
}

function isString(value: unknown): value is string {
  return typeof value === 'string' && value !== '';
}
