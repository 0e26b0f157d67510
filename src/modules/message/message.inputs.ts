import { Field, ID, InputType } from 'type-graphql';

@InputType()
export class SendMessageInput {
  @Field(() => ID)
  conversationId!: string;

  @Field(() => String)
  content!: string;

  @Field(() => String, { description: "Model id 'provider:name[@label]'." })
  model!: string;
}
