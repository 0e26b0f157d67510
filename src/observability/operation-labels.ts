/**
 * Operation names as a Prometheus label, with a bounded number of values.
 * `operationName` comes from the client, so labelling by it as is lets anyone
 * create a time series per request (20,000 names were 20,000 series).
 *
 * A name becomes its own label value when it is:
 * - an operation of the trusted documents manifest (always), or
 * - among the first `maxLearned` other names this process has seen;
 * every other name is `other`, an unnamed operation `anonymous`. So the
 * series per (type, outcome) are at most manifest + `maxLearned` + 2.
 */
import { type DocumentNode, Kind, parse } from 'graphql';

export const OTHER_OPERATION = 'other';
export const ANONYMOUS_OPERATION = 'anonymous';

export class OperationLabels {
  private readonly known: ReadonlySet<string>;
  private readonly learned = new Set<string>();

  constructor(
    known: Iterable<string>,
    private readonly maxLearned: number,
  ) {
    this.known = new Set(known);
  }

  /** The names of the operations in trusted documents (unparseable documents are skipped: the manifest loader reports them). */
  static fromDocuments(documents: Iterable<string>, maxLearned: number): OperationLabels {
    const names: string[] = [];
    for (const text of documents) {
      let document: DocumentNode;
      try {
        document = parse(text);
      } catch {
        continue;
      }
      for (const definition of document.definitions) {
        if (definition.kind === Kind.OPERATION_DEFINITION && definition.name) names.push(definition.name.value);
      }
    }
    return new OperationLabels(names, maxLearned);
  }

  label(name: string | null | undefined): string {
    if (!name) return ANONYMOUS_OPERATION;
    if (this.known.has(name) || this.learned.has(name)) return name;
    if (this.learned.size < this.maxLearned && /^[_A-Za-z][_0-9A-Za-z]{0,63}$/.test(name)) {
      this.learned.add(name);
      return name;
    }
    return OTHER_OPERATION;
  }
}
