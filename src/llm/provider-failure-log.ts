/**
 * The log line of a failed provider call, one shape for comparisons and
 * `sendMessage`: provider, model, key label, reason, HTTP status.
 *
 * The provider's own error message is left out on purpose: providers quote
 * parts of the request in it (OpenAI echoes a masked API key on a 401), and
 * the reason and status say what a reader needs. Rate limits and timeouts are
 * warnings (expected under load); the rest are errors of the call, still
 * `warn` because the server itself is fine — the user sees the failure.
 */
import type { Logger } from '../observability/logger';
import type { ModelId } from './model-id';
import type { ProviderCallError } from './provider-errors';

export function logProviderFailure(logger: Logger, model: ModelId, error: ProviderCallError, context: Record<string, unknown> = {}): void {
  logger.warn(
    {
      ...context,
      provider: model.provider,
      model: model.id,
      label: model.label,
      reason: error.reason,
      ...(error.statusCode !== undefined ? { status: error.statusCode } : {}),
    },
    `provider call failed: ${model.provider} ${model.id}${model.label === 'default' ? '' : `@${model.label}`} ${error.reason}` +
      `${error.statusCode !== undefined ? ` (HTTP ${error.statusCode})` : ''}`,
  );
}
