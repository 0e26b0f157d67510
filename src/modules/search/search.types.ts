import { ArgsType, Field, Int, ObjectType } from 'type-graphql';
import { Connection } from '../common/connection';
import { Message } from '../message/message.entity';

/**
 * One matching message. `conversation` and `comparison` are resolved by
 * `SearchResolver` through the request's loaders (one statement for all hits).
 */
@ObjectType({ simpleResolvers: true, description: "A message (or comparison prompt) of the viewer's that matches a search." })
export class SearchHit {
  @Field(() => Message)
  message!: Message;

  @Field(() => String, {
    description:
      'Up to two fragments of the message around the matched words, as an HTML fragment: the stored text is ' +
      'HTML-escaped (& < > " \' become entities) and matched words are wrapped in <b>…</b>, which are the only tags. ' +
      'Safe to insert as HTML; to show plain text, strip the <b> tags and decode the entities.',
  })
  snippet!: string;

  /** `ts_rank` as Postgres printed it (exact float4 text); part of the cursor, not exposed. */
  rank!: string;
}

@ObjectType({ simpleResolvers: true })
export class SearchConnection extends Connection(SearchHit) {}

@ArgsType()
export class SearchArgs {
  @Field(() => String, { description: 'Web-search syntax: words, "quoted phrases", or, -exclusion. 1..500 characters.' })
  query!: string;

  @Field(() => Int, { nullable: true, defaultValue: 20 })
  first?: number;

  @Field(() => String, { nullable: true })
  after?: string | null;
}
