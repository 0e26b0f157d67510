/**
 * Model identifiers: `provider:name[@label]`.
 *
 * - provider: one of `PROVIDER_NAMES`, lower case exactly as listed.
 * - name: everything after the FIRST ':' up to the LAST '@' (or the end). It
 *   may itself contain ':' (Ollama tags such as `llama3.1:8b`) and '@'.
 * - label: after the LAST '@'; names which provider credential / endpoint to
 *   use. Defaults to 'default'.
 *
 * `ModelId.id` is `provider:name` without the label. Note that a name that
 * contains '@' only survives a round trip through `parseModelId` when a label
 * follows it ('openai_compatible:a@b@default').
 *
 * Safe characters only (`isSafeModelName`), because a name reaches the
 * provider's URL for Gemini (`{base}/models/{name}:streamGenerateContent`):
 * - a name is one or more segments joined by single '/', each segment a
 *   letter or digit followed by letters, digits and `. _ : @ + -` — so no
 *   `..` or `.` segment, no leading, trailing or doubled '/', no `%`, `?`,
 *   `#`, `\` or spaces;
 * - '/' only where providers use it: `openai_compatible` (OpenRouter's
 *   `meta-llama/llama-3.1-8b`, Hugging Face repos) and Gemini's
 *   `tunedModels/<id>`;
 * - the label: 1-40 letters, digits, `_`, `.`, `-` (as `saveApiKey` accepts).
 *
 * This module is the single definition of the providers: `ProviderName`
 * (the lower-case id in model ids) and `Provider` (the enum GraphQL shows and
 * the database stores, `OPENAI`), mapped one to the other here only
 * (`toProvider`, `toProviderName`). `catalog.ts` re-exports `ProviderName`;
 * `api-key.entity.ts` registers `Provider` with GraphQL.
 */
import { AppError } from '../errors';

export const PROVIDER_NAMES = ['openai', 'anthropic', 'google', 'mistral', 'azure', 'openai_compatible'] as const;
export type ProviderName = (typeof PROVIDER_NAMES)[number];

/**
 * A provider as the GraphQL enum `Provider` names it and as the database
 * stores it: the upper case of its `ProviderName` (`openai_compatible` →
 * `OPENAI_COMPATIBLE`). An enum-like object, so `Provider.AZURE` reads as an
 * enum member and type-graphql / MikroORM register it as one.
 */
export type Provider = Uppercase<ProviderName>;
export const Provider = Object.freeze(Object.fromEntries(PROVIDER_NAMES.map((name) => [name.toUpperCase(), name.toUpperCase()]))) as {
  readonly [P in Provider]: P;
};

export const DEFAULT_LABEL = 'default';
export const MAX_MODEL_ID_LENGTH = 200;

const SEGMENT = '[A-Za-z0-9][A-Za-z0-9._:@+-]*';
const NAME = new RegExp(`^${SEGMENT}(?:/${SEGMENT})*$`);
const ONE_SEGMENT = new RegExp(`^${SEGMENT}$`);
const GEMINI_TUNED = new RegExp(`^tunedModels/${SEGMENT}$`);
const LABEL = /^[A-Za-z0-9_.-]{1,40}$/;

/** True when `name` may be used as `provider`'s model name (see the module comment). */
export function isSafeModelName(provider: ProviderName, name: string): boolean {
  if (name.length > MAX_MODEL_ID_LENGTH || !NAME.test(name)) return false;
  if (ONE_SEGMENT.test(name) || provider === 'openai_compatible') return true;
  return provider === 'google' && GEMINI_TUNED.test(name);
}

export interface ModelId {
  provider: ProviderName;
  name: string;
  /** Credential / endpoint label; 'default' when the raw id has no '@'. */
  label: string;
  /** `provider:name`, without the label. */
  id: string;
}

/**
 * A malformed model id. A user-input error (code BAD_USER_INPUT, so it reaches
 * clients unmasked); the message states the expected form and, quoted and
 * truncated, what arrived.
 */
export class InvalidModelIdError extends AppError {
  constructor(
    readonly received: string,
    readonly reason: string,
  ) {
    super('BAD_USER_INPUT', `Invalid model id ${quote(received)}: ${reason}; expected 'provider:name[@label]'`, {
      field: 'model',
    });
    this.name = 'InvalidModelIdError';
  }
}

/**
 * Parses `provider:name[@label]` (see the module comment for the split rules).
 * @throws InvalidModelIdError when the id is longer than 200 characters,
 * contains whitespace or control characters, has no ':', names an unknown
 * provider (including wrong case), has an empty name or empty label, or a
 * name or label outside the safe character set.
 */
export function parseModelId(raw: string): ModelId {
  if (raw.length > MAX_MODEL_ID_LENGTH) {
    throw new InvalidModelIdError(raw, `longer than ${MAX_MODEL_ID_LENGTH} characters`);
  }
  if (/[\s\p{Cc}]/u.test(raw)) throw new InvalidModelIdError(raw, 'contains whitespace or control characters');

  const colon = raw.indexOf(':');
  if (colon < 0) throw new InvalidModelIdError(raw, "missing ':' after the provider");
  const provider = raw.slice(0, colon);
  if (!isProviderName(provider)) {
    throw new InvalidModelIdError(raw, `unknown provider; use one of ${PROVIDER_NAMES.join(', ')}`);
  }

  const { name, label } = splitLabel(raw.slice(colon + 1));
  if (name === '') throw new InvalidModelIdError(raw, 'empty model name');
  if (label === '') throw new InvalidModelIdError(raw, "empty label after '@'");
  if (!isSafeModelName(provider, name)) {
    throw new InvalidModelIdError(
      raw,
      name.includes('/') && NAME.test(name)
        ? `'/' is not allowed in ${provider} model names`
        : "the model name may only hold letters, digits and . _ : @ + - (and '/' between segments for openai_compatible)",
    );
  }
  if (!LABEL.test(label)) throw new InvalidModelIdError(raw, 'the label may only hold 1-40 letters, digits, _ . -');
  return { provider, name, label, id: formatModelId(provider, name) };
}

function splitLabel(rest: string): { name: string; label: string } {
  const at = rest.lastIndexOf('@');
  return at < 0 ? { name: rest, label: DEFAULT_LABEL } : { name: rest.slice(0, at), label: rest.slice(at + 1) };
}

/** `provider:name` — the label-free id stored with responses and ratings. No validation. */
export function formatModelId(provider: ProviderName, name: string): string {
  return `${provider}:${name}`;
}

/**
 * The endpoint a model id names: `provider:name` for the default label,
 * `provider:name@label` otherwise. One model reached through two labels (two
 * keys or base URLs, e.g. `…@ollama` and `…@vllm`) is two endpoints: a
 * comparison may hold both, each keeps its own history, and the leaderboard
 * ranks them apart. Parses back with `parseModelId`.
 */
export function endpointKey(model: Pick<ModelId, 'id' | 'label'>): string {
  return model.label === DEFAULT_LABEL ? model.id : `${model.id}@${model.label}`;
}

/** True when `value` is one of `PROVIDER_NAMES` (exact, lower case). */
export function isProviderName(value: string): value is ProviderName {
  return (PROVIDER_NAMES as readonly string[]).includes(value);
}

/** The `Provider` (GraphQL, database) of a model id's provider: the one mapping between the two spellings. */
export function toProvider(name: ProviderName): Provider {
  return name.toUpperCase() as Provider;
}

/**
 * Inverse of `toProvider`.
 * @throws RangeError for a value that is not a `Provider` (can only happen
 * when the type is bypassed at run time).
 */
export function toProviderName(provider: Provider): ProviderName {
  const name = provider.toLowerCase();
  if (provider !== name.toUpperCase() || !isProviderName(name)) throw new RangeError(`unknown GraphQL provider: ${String(provider)}`);
  return name;
}

/** JSON-quoted (so whitespace shows) and cut to 80 characters. */
function quote(raw: string): string {
  const shown = raw.length > 80 ? `${raw.slice(0, 80)}…` : raw;
  return JSON.stringify(shown);
}
