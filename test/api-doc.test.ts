/**
 * docs/API.md stays in step with schema/schema.graphql: every type, field,
 * argument and enum value in the contract's SDL blocks exists in the emitted
 * schema with the same type. The blocks under "## Additions" describe work
 * being built in parallel; they join the check (move the cut-off below) once
 * it lands.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildSchema,
  type DefinitionNode,
  type FieldDefinitionNode,
  type GraphQLField,
  type GraphQLInputField,
  GraphQLEnumType,
  GraphQLInputObjectType,
  GraphQLObjectType,
  type InputValueDefinitionNode,
  Kind,
  parse,
  print,
} from 'graphql';

const ROOT = join(__dirname, '..');
const doc = readFileSync(join(ROOT, 'docs', 'API.md'), 'utf8');
const schema = buildSchema(readFileSync(join(ROOT, 'schema', 'schema.graphql'), 'utf8'));

/** Where the checked part of the contract ends. */
const CHECKED_UNTIL = '## Additions';

function sdlBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/```graphql\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** Every mismatch between the documented definitions and the schema, as readable lines. */
function mismatches(definitions: readonly DefinitionNode[]): string[] {
  const problems: string[] = [];
  const checkArgs = (
    where: string,
    documented: readonly InputValueDefinitionNode[] | undefined,
    actual: GraphQLField<unknown, unknown>['args'],
  ) => {
    for (const arg of documented ?? []) {
      const found = actual.find((a) => a.name === arg.name.value);
      if (!found) problems.push(`${where}(${arg.name.value}:) is missing`);
      else if (String(found.type) !== print(arg.type))
        problems.push(`${where}(${arg.name.value}:) is ${String(found.type)}, documented ${print(arg.type)}`);
    }
  };
  for (const def of definitions) {
    if (!('name' in def) || !def.name) continue;
    const name = def.name.value;
    const type = schema.getType(name);
    if (!type) {
      problems.push(`type ${name} is missing`);
      continue;
    }
    switch (def.kind) {
      case Kind.OBJECT_TYPE_DEFINITION:
      case Kind.OBJECT_TYPE_EXTENSION:
      case Kind.INPUT_OBJECT_TYPE_DEFINITION: {
        if (!(type instanceof GraphQLObjectType) && !(type instanceof GraphQLInputObjectType)) {
          problems.push(`${name} is a ${type.constructor.name}, documented as ${def.kind}`);
          break;
        }
        const fields = type.getFields() as Record<string, GraphQLField<unknown, unknown> | GraphQLInputField>;
        for (const field of (def.fields ?? []) as ReadonlyArray<FieldDefinitionNode | InputValueDefinitionNode>) {
          const actual = fields[field.name.value];
          const where = `${name}.${field.name.value}`;
          if (!actual) problems.push(`${where} is missing`);
          else {
            if (String(actual.type) !== print(field.type))
              problems.push(`${where} is ${String(actual.type)}, documented ${print(field.type)}`);
            if (field.kind === Kind.FIELD_DEFINITION && 'args' in actual) checkArgs(where, field.arguments, actual.args);
          }
        }
        break;
      }
      case Kind.ENUM_TYPE_DEFINITION: {
        if (!(type instanceof GraphQLEnumType)) problems.push(`${name} is not an enum`);
        else
          for (const value of def.values ?? [])
            if (!type.getValue(value.name.value)) problems.push(`${name}.${value.name.value} is missing`);
        break;
      }
      default:
        break;
    }
  }
  return problems;
}

describe('docs/API.md and schema/schema.graphql', () => {
  const checked = doc.slice(0, doc.indexOf(CHECKED_UNTIL) < 0 ? undefined : doc.indexOf(CHECKED_UNTIL));
  const blocks = sdlBlocks(checked);

  it('the contract has SDL to check', () => {
    expect(blocks.length).toBeGreaterThan(0);
    expect(blocks.join('\n')).toContain('type Query');
  });

  it('every documented type, field, argument and enum value exists in the schema with the same type', () => {
    const problems = blocks.flatMap((block) => mismatches(parse(block).definitions));
    expect(problems).toEqual([]);
  });

  it('can fail: a renamed field is reported', () => {
    expect(mismatches(parse('type ComparisonResponse { id: ID! nope: String content: Int }').definitions)).toEqual([
      'ComparisonResponse.nope is missing',
      'ComparisonResponse.content is String!, documented Int',
    ]);
  });
});
