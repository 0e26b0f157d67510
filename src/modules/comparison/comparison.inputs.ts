import { Field, ID, InputType } from 'type-graphql';

const CATEGORY_DESCRIPTION =
  "One of code, math, creative_writing, long_prompt, other (case, spaces and hyphens are normalised; 'coding', 'maths', " +
  "'creative' are accepted). Omitted: assigned from the prompt. Anything else is BAD_USER_INPUT.";

@InputType()
export class RunComparisonInput {
  @Field(() => String)
  prompt!: string;

  @Field(() => [String], { description: "2 to 8 distinct model ids 'provider:name[@label]'; one model may repeat with different labels." })
  models!: string[];

  @Field(() => ID, { nullable: true, description: 'Continue this conversation; omitted: a new conversation is started.' })
  conversationId?: string | null;

  @Field(() => Boolean, {
    nullable: true,
    defaultValue: false,
    description: 'Hide which model gave which response (shuffled labels A, B, …) until you vote on the comparison.',
  })
  blind?: boolean | null;

  @Field(() => String, { nullable: true, description: CATEGORY_DESCRIPTION })
  category?: string | null;
}

@InputType({ description: 'A blind battle: the server picks the two models.' })
export class ArenaBattleInput {
  @Field(() => String)
  prompt!: string;

  @Field(() => ID, { nullable: true, description: 'Continue this conversation; omitted: a new conversation is started.' })
  conversationId?: string | null;

  @Field(() => String, { nullable: true, description: CATEGORY_DESCRIPTION })
  category?: string | null;
}
