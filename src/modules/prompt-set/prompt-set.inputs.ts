import { Field, Float, InputType, registerEnumType } from 'type-graphql';
import { AssertionKind } from './assertions';
import { ImportFormat } from './prompt-item-import';

registerEnumType(ImportFormat, {
  name: 'ImportFormat',
  description: 'JSONL: one JSON object per line. CSV: a header row (prompt, system, reference, tags, assertions), then one row per item.',
});

@InputType()
export class AssertionInput {
  @Field(() => AssertionKind)
  kind!: AssertionKind;

  @Field(() => String, { nullable: true, description: 'What the kind checks against; none for EQUALS_REFERENCE and JSON_VALID.' })
  value?: string | null;

  @Field(() => Float, { nullable: true, defaultValue: 1, description: 'Above 0; weighs the assertion in the answer score.' })
  weight?: number | null;
}

@InputType({ description: 'A whole item: on update, an omitted optional field is cleared.' })
export class PromptItemInput {
  @Field(() => String)
  prompt!: string;

  @Field(() => String, { nullable: true })
  system?: string | null;

  @Field(() => String, { nullable: true, description: 'The expected answer (EQUALS_REFERENCE compares with it).' })
  reference?: string | null;

  @Field(() => [AssertionInput], { nullable: true })
  assertions?: AssertionInput[] | null;

  @Field(() => [String], { nullable: true })
  tags?: string[] | null;
}

@InputType()
export class PromptSetInput {
  @Field(() => String)
  name!: string;

  @Field(() => String, { nullable: true })
  description?: string | null;

  @Field(() => [PromptItemInput], { nullable: true, description: 'At most 1,000.' })
  items?: PromptItemInput[] | null;

  @Field(() => [AssertionInput], { nullable: true, description: "Applied to every item, before the item's own." })
  defaultAssertions?: AssertionInput[] | null;
}
