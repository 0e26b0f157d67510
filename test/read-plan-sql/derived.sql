-- Query.me: {"kind":"viewer","field":"Query.me","entity":"User","table":"users"}

-- Query.conversations: {"kind":"ownedList","field":"Query.conversations","entity":"Conversation","table":"conversations","owner":"owner_id","hiddenWhen":{"column":"deleted_at"},"order":{"columns":["created_at","id"],"direction":"desc"},"page":{"default":20,"max":100},"cursor":"conversations"}
-- the service's page (readOwnedPage), first and later:
select a.id
  from conversations a
  where a.owner_id = ? and a.deleted_at is null
  order by a.created_at desc, a.id desc
  limit ?;
select a.id
  from conversations a
  where a.owner_id = ? and a.deleted_at is null and (a.created_at, a.id) < (?, ?)
  order by a.created_at desc, a.id desc
  limit ?;

-- Query.comparisons: {"kind":"ownedList","field":"Query.comparisons","entity":"ComparisonResult","table":"comparison_results","owner":"owner_id","order":{"columns":["created_at","id"],"direction":"desc"},"page":{"default":20,"max":100},"cursor":"comparisons"}
-- the service's page (readOwnedPage), first and later:
select a.id
  from comparison_results a
  where a.owner_id = ?
  order by a.created_at desc, a.id desc
  limit ?;
select a.id
  from comparison_results a
  where a.owner_id = ? and (a.created_at, a.id) < (?, ?)
  order by a.created_at desc, a.id desc
  limit ?;

-- Query.conversation: {"kind":"ownedRow","field":"Query.conversation","entity":"Conversation","table":"conversations","owner":"owner_id","hiddenWhen":{"column":"deleted_at"}}
-- the by-id DataLoader batch (where):
a.id = any(?::uuid[]) and a.owner_id = ? and a.deleted_at is null;

-- Query.comparison: {"kind":"ownedRow","field":"Query.comparison","entity":"ComparisonResult","table":"comparison_results","owner":"owner_id"}
-- the by-id DataLoader batch (where):
a.id = any(?::uuid[]) and a.owner_id = ?;

-- Conversation.messages: {"kind":"childPage","field":"Conversation.messages","entity":"Message","table":"messages","foreignKey":"conversation_id","order":{"columns":["created_at","id"],"direction":"asc"},"page":{"default":50,"max":100},"cursor":"messages","inherits":{"table":"conversation_ancestors","child":"conversation_id","ancestor":"ancestor_id","upto":["upto_created_at","upto_id"],"asOf":"created_at","marker":{"table":"conversations","column":"forked_from_message_id"}},"current":{"replacedAt":"replaced_at","writtenAt":"answered_at","slot":"version_of_id"}}
-- the DataLoader batch (pages of many parents):
select k.idx as k_idx, m.id as "id", (extract(epoch from m.created_at) * 1000)::float8 as "createdAt", m.prompt_tokens as "promptTokens", m.completion_tokens as "completionTokens", m.latency_ms as "latencyMs", m.cost_usd as "costUsd", m.conversation_id as "conversationId", m.role as "role", m.content as "content", m.comparison_id as "comparisonId", m.provider as "provider", m.model as "model", m.version_of_id as "versionOfId", m.version as "version", (extract(epoch from m.answered_at) * 1000)::float8 as "answeredAt", (extract(epoch from m.replaced_at) * 1000)::float8 as "replacedAt", m.source_response_id as "sourceResponseId"
 
  from unnest(?::uuid[], ?::timestamptz[], ?::uuid[], ?::int[]) with ordinality as k(pid, after_at, after_id, lim, idx)
 
  cross
  join lateral (select *
    from ((select o.*
        from messages o
        where o.conversation_id = k.pid and o.replaced_at is null and (k.after_at is null or (o.created_at, o.id) > (k.after_at, k.after_id))
        order by o.created_at asc, o.id asc
        limit k.lim) union all
      select c_inherited.*
      from (select i.*
        from conversation_ancestors x
        join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
        cross
        join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
        where x.conversation_id = k.pid and not exists (select 1
          from messages f
          where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
          from conversation_ancestors y
          join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
          where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) c_inherited
      where exists (select 1
        from conversations z
        where z.id = k.pid and z.forked_from_message_id is not null) and (k.after_at is null or (c_inherited.created_at, c_inherited.id) > (k.after_at, k.after_id))) c
    order by c.created_at asc, c.id asc
    limit k.lim) m

  order by k.idx, m.created_at asc, m.id asc;
-- the look-ahead's child query:
select *
  from ((select o.*
      from messages o
      where o.conversation_id = parent.id and o.replaced_at is null
      order by o.created_at asc, o.id asc
      limit 11) union all
    select m_inherited.*
    from (select i.*
      from conversation_ancestors x
      join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
      cross
      join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
      where x.conversation_id = parent.id and not exists (select 1
        from messages f
        where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
        from conversation_ancestors y
        join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
        where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) m_inherited
    where parent.forked_from_message_id is not null) m
  order by m.created_at asc, m.id asc
  limit 11;

-- ComparisonResult.responses: {"kind":"childList","field":"ComparisonResult.responses","entity":"ComparisonResponse","table":"comparison_responses","foreignKey":"comparison_id","order":["position"],"concealedUnless":"rule revealed"}
-- the DataLoader batch (children of many parents):
select x.id as "id", (extract(epoch from x.created_at) * 1000)::float8 as "createdAt", x.prompt_tokens as "promptTokens", x.completion_tokens as "completionTokens", x.latency_ms as "latencyMs", x.cost_usd as "costUsd", x.comparison_id as "comparisonId", x.position as "position", x.provider as "provider", x.model as "model", x.key_label as "keyLabel", x.status as "status", x.content as "content", x.error as "error", x.custom_endpoint as "customEndpoint", x.kind as "kind", x.source_ids as "sourceIds", x.time_to_first_token_ms as "timeToFirstTokenMs", (extract(epoch from x.settled_at) * 1000)::float8 as "settledAt", x.lease_owner as "leaseOwner", (extract(epoch from x.heartbeat_at) * 1000)::float8 as "heartbeatAt", (not p.blind or exists (select 1
      from votes voted_p
      where voted_p.comparison_id = p.id)) as "__visible"
  from comparison_responses x
  join comparison_results p on p.id = x.comparison_id
  where x.comparison_id = any(?::uuid[])
  order by x.comparison_id, x.position;
-- the look-ahead's child query:
select *
  from comparison_responses x2
  where x2.comparison_id = parent.id
  order by x2.position;

-- Conversation.comparisons: {"kind":"childList","field":"Conversation.comparisons","entity":"ComparisonResult","table":"comparison_results","foreignKey":"conversation_id","order":["created_at","id"],"inheritsThrough":{"children":{"kind":"childPage","field":"Conversation.messages","entity":"Message","table":"messages","foreignKey":"conversation_id","order":{"columns":["created_at","id"],"direction":"asc"},"page":{"default":50,"max":100},"cursor":"messages","inherits":{"table":"conversation_ancestors","child":"conversation_id","ancestor":"ancestor_id","upto":["upto_created_at","upto_id"],"asOf":"created_at","marker":{"table":"conversations","column":"forked_from_message_id"}},"current":{"replacedAt":"replaced_at","writtenAt":"answered_at","slot":"version_of_id"}},"key":"comparison_id"}}
-- the DataLoader batch (children of many parents):
select x.id as "id", (extract(epoch from x.created_at) * 1000)::float8 as "createdAt", x.owner_id as "ownerId", x.conversation_id as "conversationId", x.prompt as "prompt", x.blind as "blind", x.category as "category"
  from (select o.*
    from comparison_results o
    where o.conversation_id = any(?::uuid[]) union all
    select j.*
    from (select i.*
      from conversation_ancestors x
      join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
      cross
      join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
      where x.conversation_id = any(?::uuid[]) and not exists (select 1
        from messages f
        where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
        from conversation_ancestors y
        join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
        where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) h
    join comparison_results r on r.id = h.comparison_id
    cross
    join lateral jsonb_populate_record(r, jsonb_build_object('conversation_id', h.conversation_id)) j) x
  order by x.conversation_id, x.created_at, x.id;
-- the look-ahead's child query:
select *
  from (select o.*
    from comparison_results o
    where o.conversation_id = parent.id union all
    select j.*
    from (select i.*
      from conversation_ancestors x
      join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
      cross
      join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
      where x.conversation_id = parent.id and not exists (select 1
        from messages f
        where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
        from conversation_ancestors y
        join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
        where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) h
    join comparison_results r on r.id = h.comparison_id
    cross
    join lateral jsonb_populate_record(r, jsonb_build_object('conversation_id', h.conversation_id)) j) x2
  order by x2.created_at, x2.id;

-- Query.promptSets: {"kind":"ownedList","field":"Query.promptSets","entity":"PromptSet","table":"prompt_sets","owner":"owner_id","order":{"columns":["created_at","id"],"direction":"desc"},"page":{"default":20,"max":100},"cursor":"prompt-sets"}
-- the service's page (readOwnedPage), first and later:
select a.id
  from prompt_sets a
  where a.owner_id = ?
  order by a.created_at desc, a.id desc
  limit ?;
select a.id
  from prompt_sets a
  where a.owner_id = ? and (a.created_at, a.id) < (?, ?)
  order by a.created_at desc, a.id desc
  limit ?;

-- Query.promptSet: {"kind":"ownedRow","field":"Query.promptSet","entity":"PromptSet","table":"prompt_sets","owner":"owner_id"}
-- the by-id DataLoader batch (where):
a.id = any(?::uuid[]) and a.owner_id = ?;

-- PromptSet.items: {"kind":"childPage","field":"PromptSet.items","entity":"PromptItem","table":"prompt_items","foreignKey":"prompt_set_id","order":{"columns":["position","id"],"direction":"asc"},"page":{"default":50,"max":100},"cursor":"prompt-items"}
-- the DataLoader batch (pages of many parents):
select k.idx as k_idx, m.id as "id", (extract(epoch from m.created_at) * 1000)::float8 as "createdAt", m.prompt_set_id as "promptSetId", m.position as "position", m.prompt as "prompt", m.system as "system", m.reference as "reference", m.assertions as "assertions", m.tags as "tags"
 
  from unnest(?::uuid[], ?::int[], ?::uuid[], ?::int[]) with ordinality as k(pid, after_at, after_id, lim, idx)
 
  cross
  join lateral (select *
    from prompt_items c
    where c.prompt_set_id = k.pid and (k.after_at is null or (c.position, c.id) > (k.after_at, k.after_id))
    order by c.position asc, c.id asc
    limit k.lim) m

  order by k.idx, m.position asc, m.id asc;
-- the look-ahead's child query:
select *
  from prompt_items m
  where m.prompt_set_id = parent.id
  order by m.position asc, m.id asc
  limit 11;

-- Query.shareLinks: {"kind":"ownedList","field":"Query.shareLinks","entity":"ShareLinkEntity","table":"share_links","owner":"owner_id","order":{"columns":["created_at","id"],"direction":"desc"},"page":{"default":20,"max":100},"cursor":"share-links"}
-- the service's page (readOwnedPage), first and later:
select a.id
  from share_links a
  where a.owner_id = ?
  order by a.created_at desc, a.id desc
  limit ?;
select a.id
  from share_links a
  where a.owner_id = ? and (a.created_at, a.id) < (?, ?)
  order by a.created_at desc, a.id desc
  limit ?;

-- SharedView.comparisons: {"kind":"childList","field":"SharedView.comparisons","entity":"ShareLinkComparison","table":"share_link_comparisons","foreignKey":"link_id","order":["position"]}
-- the DataLoader batch (children of many parents):
select x.id as "id", (extract(epoch from x.created_at) * 1000)::float8 as "createdAt", x.link_id as "linkId", x.comparison_id as "comparisonId", x.position as "position", x.revealed as "revealed"
  from share_link_comparisons x
  where x.link_id = any(?::uuid[])
  order by x.link_id, x.position;
-- the look-ahead's child query:
select *
  from share_link_comparisons x2
  where x2.link_id = parent.id
  order by x2.position;

-- rule revealed (ComparisonResult), SQL predicate:
(not c.blind or exists (select 1 from votes voted_c where voted_c.comparison_id = c.id));
-- rule revealed conceals on ComparisonResponse: provider, model, keyLabel, costUsd, promptTokens, completionTokens, customEndpoint, error

-- rule shared_revealed (ShareLinkComparison), SQL predicate:
(c.revealed);
-- rule shared_revealed conceals on ComparisonResponse: provider, model, keyLabel, costUsd, promptTokens, completionTokens, customEndpoint, error

-- rule share_link_live (ShareLinkEntity), SQL predicate:
(l.revoked_at is null and (l.expires_at is null or l.expires_at > now()) and not exists (select 1 from conversations deleted_l where deleted_l.id = l.conversation_id and deleted_l.deleted_at is not null));
-- shared snapshot: a response of the snapshot (made at ?):
r.created_at <= ?;

-- computed ComparisonResponse.label:
to_json(chr(65 + a.position))::text;
-- computed Message.current:
(case when a.replaced_at is null then 'true' else 'false' end);
-- computed ComparisonResult.revealed:
(case when (not a.blind or exists (select 1 from votes voted_a where voted_a.comparison_id = a.id)) then 'true' else 'false' end);
