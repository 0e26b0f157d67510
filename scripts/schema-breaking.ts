/**
 * Breaking changes of the GraphQL schema, found by `@graphql-inspector/core`
 * between a base schema (what clients use today) and the one the code
 * builds. A breaking change is allowed only when `docs/API.md` names it
 * (its path, e.g. `Query.comparisons` or `Comparison.prompt`) in its
 * "Breaking changes" section, with what clients do about it.
 */
import { CriticalityLevel, diff } from '@graphql-inspector/core';
import { buildSchema } from 'graphql';

export interface BreakingChange {
  path: string;
  message: string;
  /** Named in the "Breaking changes" section of docs/API.md. */
  documented: boolean;
}

/** The text of the `## Breaking changes` section of docs/API.md (empty when there is none). */
export function breakingChangesSection(apiDoc: string): string {
  const start = apiDoc.search(/^## Breaking changes\s*$/m);
  if (start < 0) return '';
  const rest = apiDoc.slice(start).split('\n').slice(1).join('\n');
  const next = rest.search(/^## /m);
  return next < 0 ? rest : rest.slice(0, next);
}

export async function breakingChanges(baseSdl: string, sdl: string, apiDoc: string): Promise<BreakingChange[]> {
  const changes = await diff(buildSchema(baseSdl), buildSchema(sdl));
  const section = breakingChangesSection(apiDoc);
  return changes
    .filter((c) => c.criticality.level === CriticalityLevel.Breaking)
    .map((c) => {
      const path = c.path ?? c.message;
      return { path, message: c.message, documented: section.includes(`\`${path}\``) };
    });
}
