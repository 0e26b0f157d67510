import { Field, ID, InputType } from 'type-graphql';

@InputType()
export class RunComparisonInput {
  @Field(() => String)
  prompt!: string;

  @Field(() => [String], { description: "2 to 8 distinct model ids 'provider:name[@label]'; one model may repeat with different labels." })
  models!: string[];

  @Field(() => ID, { nullable: true, description: 'Continue this conversation; omitted: a new conversation is started.' })
  conversationId?: string | null;
}
