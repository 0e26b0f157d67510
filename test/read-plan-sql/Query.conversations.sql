-- conversations
-- compiled leaves: (none)
-- not compiled: totalCount

-- conversations › nodes
-- query Walk { conversations { nodes { createdAt id title updatedAt } } }
-- not compiled: lastMessage, messageCount
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"createdAt":' || ('"' || to_char(t0.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"id":' || to_json(t0.id::text)::text || ',' || '"title":' || to_json(t0.title::text)::text || ',' || '"updatedAt":' || ('"' || to_char(t0.updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"createdAt":' || ('"' || to_char(t0.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"id":' || to_json(t0.id::text)::text || ',' || '"title":' || to_json(t0.title::text)::text || ',' || '"updatedAt":' || ('"' || to_char(t0.updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null and (t0.created_at, t0.id) < (?, ?)
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;

-- conversations › nodes › comparisons
-- query Walk { conversations { nodes { comparisons { blind category createdAt id prompt revealed } } } }
-- not compiled: conversation, vote
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"comparisons":' || ('[' || coalesce((select string_agg('{' || '"blind":' || (case t1.blind when true then 'true' when false then 'false' else 'null' end) || ',' || '"category":' || coalesce(to_json(t1.category::text)::text, 'null') || ',' || '"createdAt":' || ('"' || to_char(t1.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"id":' || to_json(t1.id::text)::text || ',' || '"prompt":' || to_json(t1.prompt::text)::text || ',' || '"revealed":' || (case when (not t1.blind or exists (select 1
                    from votes voted_t1
                    where voted_t1.comparison_id = t1.id)) then 'true' else 'false' end) || '}', ','
              order by t1.created_at, t1.id)
            from (select o.*
              from comparison_results o
              where o.conversation_id = t0.id union all
              select j.*
              from (select i.*
                from conversation_ancestors x
                join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
                cross
                join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
                where x.conversation_id = t0.id and not exists (select 1
                  from messages f
                  where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
                  from conversation_ancestors y
                  join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
                  where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) h
              join comparison_results r on r.id = h.comparison_id
              cross
              join lateral jsonb_populate_record(r, jsonb_build_object('conversation_id', h.conversation_id)) j) t1), '') || ']') || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"comparisons":' || ('[' || coalesce((select string_agg('{' || '"blind":' || (case t1.blind when true then 'true' when false then 'false' else 'null' end) || ',' || '"category":' || coalesce(to_json(t1.category::text)::text, 'null') || ',' || '"createdAt":' || ('"' || to_char(t1.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"id":' || to_json(t1.id::text)::text || ',' || '"prompt":' || to_json(t1.prompt::text)::text || ',' || '"revealed":' || (case when (not t1.blind or exists (select 1
                    from votes voted_t1
                    where voted_t1.comparison_id = t1.id)) then 'true' else 'false' end) || '}', ','
              order by t1.created_at, t1.id)
            from (select o.*
              from comparison_results o
              where o.conversation_id = t0.id union all
              select j.*
              from (select i.*
                from conversation_ancestors x
                join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
                cross
                join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
                where x.conversation_id = t0.id and not exists (select 1
                  from messages f
                  where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
                  from conversation_ancestors y
                  join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
                  where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) h
              join comparison_results r on r.id = h.comparison_id
              cross
              join lateral jsonb_populate_record(r, jsonb_build_object('conversation_id', h.conversation_id)) j) t1), '') || ']') || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null and (t0.created_at, t0.id) < (?, ?)
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;

-- conversations › nodes › comparisons › responses
-- query Walk { conversations { nodes { comparisons { responses { completionTokens content createdAt customEndpoint error id keyLabel kind label latencyMs model promptTokens provider status timeToFirstTokenMs } } } } }
-- not compiled: comparison, costUsd, sources
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"comparisons":' || ('[' || coalesce((select string_agg('{' || '"responses":' || ('[' || coalesce((select string_agg('{' || '"completionTokens":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else coalesce(t2.completion_tokens::int::text, 'null') end) || ',' || '"content":' || to_json(t2.content::text)::text || ',' || '"createdAt":' || ('"' || to_char(t2.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"customEndpoint":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else (case t2.custom_endpoint when true then 'true' when false then 'false' else 'null' end) end) || ',' || '"error":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else coalesce(to_json(t2.error::text)::text, 'null') end) || ',' || '"id":' || to_json(t2.id::text)::text || ',' || '"keyLabel":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else coalesce(to_json(t2.key_label::text)::text, 'null') end) || ',' || '"kind":' || (case t2.kind::text when 'MODEL' then '"MODEL"' when 'FUSED' then '"FUSED"' else 'null' end) || ',' || '"label":' || to_json(chr(65 + t2.position))::text || ',' || '"latencyMs":' || coalesce(t2.latency_ms::int::text, 'null') || ',' || '"model":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else coalesce(to_json(t2.model::text)::text, 'null') end) || ',' || '"promptTokens":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else coalesce(t2.prompt_tokens::int::text, 'null') end) || ',' || '"provider":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else (case t2.provider::text when 'OPENAI' then '"OPENAI"' when 'ANTHROPIC' then '"ANTHROPIC"' when 'GOOGLE' then '"GOOGLE"' when 'MISTRAL' then '"MISTRAL"' when 'AZURE' then '"AZURE"' when 'OPENAI_COMPATIBLE' then '"OPENAI_COMPATIBLE"' else 'null' end) end) || ',' || '"status":' || (case t2.status::text when 'PENDING' then '"PENDING"' when 'STREAMING' then '"STREAMING"' when 'COMPLETED' then '"COMPLETED"' when 'FAILED' then '"FAILED"' when 'TIMED_OUT' then '"TIMED_OUT"' else 'null' end) || ',' || '"timeToFirstTokenMs":' || coalesce(t2.time_to_first_token_ms::int::text, 'null') || '}', ','
                      order by t2.position)
                    from comparison_responses t2
                    where t2.comparison_id = t1.id), '') || ']') || '}', ','
              order by t1.created_at, t1.id)
            from (select o.*
              from comparison_results o
              where o.conversation_id = t0.id union all
              select j.*
              from (select i.*
                from conversation_ancestors x
                join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
                cross
                join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
                where x.conversation_id = t0.id and not exists (select 1
                  from messages f
                  where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
                  from conversation_ancestors y
                  join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
                  where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) h
              join comparison_results r on r.id = h.comparison_id
              cross
              join lateral jsonb_populate_record(r, jsonb_build_object('conversation_id', h.conversation_id)) j) t1), '') || ']') || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"comparisons":' || ('[' || coalesce((select string_agg('{' || '"responses":' || ('[' || coalesce((select string_agg('{' || '"completionTokens":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else coalesce(t2.completion_tokens::int::text, 'null') end) || ',' || '"content":' || to_json(t2.content::text)::text || ',' || '"createdAt":' || ('"' || to_char(t2.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"customEndpoint":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else (case t2.custom_endpoint when true then 'true' when false then 'false' else 'null' end) end) || ',' || '"error":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else coalesce(to_json(t2.error::text)::text, 'null') end) || ',' || '"id":' || to_json(t2.id::text)::text || ',' || '"keyLabel":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else coalesce(to_json(t2.key_label::text)::text, 'null') end) || ',' || '"kind":' || (case t2.kind::text when 'MODEL' then '"MODEL"' when 'FUSED' then '"FUSED"' else 'null' end) || ',' || '"label":' || to_json(chr(65 + t2.position))::text || ',' || '"latencyMs":' || coalesce(t2.latency_ms::int::text, 'null') || ',' || '"model":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else coalesce(to_json(t2.model::text)::text, 'null') end) || ',' || '"promptTokens":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else coalesce(t2.prompt_tokens::int::text, 'null') end) || ',' || '"provider":' || (case when (not (not t1.blind or exists (select 1
                              from votes voted_t1
                              where voted_t1.comparison_id = t1.id))) then chr(1) else (case t2.provider::text when 'OPENAI' then '"OPENAI"' when 'ANTHROPIC' then '"ANTHROPIC"' when 'GOOGLE' then '"GOOGLE"' when 'MISTRAL' then '"MISTRAL"' when 'AZURE' then '"AZURE"' when 'OPENAI_COMPATIBLE' then '"OPENAI_COMPATIBLE"' else 'null' end) end) || ',' || '"status":' || (case t2.status::text when 'PENDING' then '"PENDING"' when 'STREAMING' then '"STREAMING"' when 'COMPLETED' then '"COMPLETED"' when 'FAILED' then '"FAILED"' when 'TIMED_OUT' then '"TIMED_OUT"' else 'null' end) || ',' || '"timeToFirstTokenMs":' || coalesce(t2.time_to_first_token_ms::int::text, 'null') || '}', ','
                      order by t2.position)
                    from comparison_responses t2
                    where t2.comparison_id = t1.id), '') || ']') || '}', ','
              order by t1.created_at, t1.id)
            from (select o.*
              from comparison_results o
              where o.conversation_id = t0.id union all
              select j.*
              from (select i.*
                from conversation_ancestors x
                join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
                cross
                join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
                where x.conversation_id = t0.id and not exists (select 1
                  from messages f
                  where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
                  from conversation_ancestors y
                  join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
                  where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) h
              join comparison_results r on r.id = h.comparison_id
              cross
              join lateral jsonb_populate_record(r, jsonb_build_object('conversation_id', h.conversation_id)) j) t1), '') || ']') || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null and (t0.created_at, t0.id) < (?, ?)
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;

-- conversations › nodes › messages
-- compiled leaves: (none)
-- not compiled: (none)

-- conversations › nodes › messages › nodes
-- query Walk { conversations { nodes { messages { nodes { completionTokens content createdAt current id latencyMs model promptTokens provider role version } } } } }
-- not compiled: conversation, costUsd, forkedFrom, versions
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"messages":' || (select '{' || '"nodes":[' || coalesce(string_agg('{' || '"completionTokens":' || coalesce(t1.completion_tokens::int::text, 'null') || ',' || '"content":' || to_json(t1.content::text)::text || ',' || '"createdAt":' || ('"' || to_char(t1.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"current":' || (case when t1.replaced_at is null then 'true' else 'false' end) || ',' || '"id":' || to_json(t1.id::text)::text || ',' || '"latencyMs":' || coalesce(t1.latency_ms::int::text, 'null') || ',' || '"model":' || coalesce(to_json(t1.model::text)::text, 'null') || ',' || '"promptTokens":' || coalesce(t1.prompt_tokens::int::text, 'null') || ',' || '"provider":' || (case t1.provider::text when 'OPENAI' then '"OPENAI"' when 'ANTHROPIC' then '"ANTHROPIC"' when 'GOOGLE' then '"GOOGLE"' when 'MISTRAL' then '"MISTRAL"' when 'AZURE' then '"AZURE"' when 'OPENAI_COMPATIBLE' then '"OPENAI_COMPATIBLE"' else 'null' end) || ',' || '"role":' || (case t1.role::text when 'SYSTEM' then '"SYSTEM"' when 'USER' then '"USER"' when 'ASSISTANT' then '"ASSISTANT"' else 'null' end) || ',' || '"version":' || t1.version::int::text || '}', ','
            order by t1.created_at asc, t1.id asc), '') || ']' || '}'
        from (select *
          from ((select o.*
              from messages o
              where o.conversation_id = t0.id and o.replaced_at is null
              order by o.created_at asc, o.id asc
              limit ?::int) union all
            select t2_inherited.*
            from (select i.*
              from conversation_ancestors x
              join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
              cross
              join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
              where x.conversation_id = t0.id and not exists (select 1
                from messages f
                where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
                from conversation_ancestors y
                join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
                where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) t2_inherited
            where t0.forked_from_message_id is not null) t2
          order by t2.created_at asc, t2.id asc
          limit ?::int) t1
        group by ()) || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"messages":' || (select '{' || '"nodes":[' || coalesce(string_agg('{' || '"completionTokens":' || coalesce(t1.completion_tokens::int::text, 'null') || ',' || '"content":' || to_json(t1.content::text)::text || ',' || '"createdAt":' || ('"' || to_char(t1.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"current":' || (case when t1.replaced_at is null then 'true' else 'false' end) || ',' || '"id":' || to_json(t1.id::text)::text || ',' || '"latencyMs":' || coalesce(t1.latency_ms::int::text, 'null') || ',' || '"model":' || coalesce(to_json(t1.model::text)::text, 'null') || ',' || '"promptTokens":' || coalesce(t1.prompt_tokens::int::text, 'null') || ',' || '"provider":' || (case t1.provider::text when 'OPENAI' then '"OPENAI"' when 'ANTHROPIC' then '"ANTHROPIC"' when 'GOOGLE' then '"GOOGLE"' when 'MISTRAL' then '"MISTRAL"' when 'AZURE' then '"AZURE"' when 'OPENAI_COMPATIBLE' then '"OPENAI_COMPATIBLE"' else 'null' end) || ',' || '"role":' || (case t1.role::text when 'SYSTEM' then '"SYSTEM"' when 'USER' then '"USER"' when 'ASSISTANT' then '"ASSISTANT"' else 'null' end) || ',' || '"version":' || t1.version::int::text || '}', ','
            order by t1.created_at asc, t1.id asc), '') || ']' || '}'
        from (select *
          from ((select o.*
              from messages o
              where o.conversation_id = t0.id and o.replaced_at is null
              order by o.created_at asc, o.id asc
              limit ?::int) union all
            select t2_inherited.*
            from (select i.*
              from conversation_ancestors x
              join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
              cross
              join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
              where x.conversation_id = t0.id and not exists (select 1
                from messages f
                where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
                from conversation_ancestors y
                join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
                where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) t2_inherited
            where t0.forked_from_message_id is not null) t2
          order by t2.created_at asc, t2.id asc
          limit ?::int) t1
        group by ()) || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null and (t0.created_at, t0.id) < (?, ?)
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;

-- conversations › nodes › messages › pageInfo
-- query Walk { conversations { nodes { messages { pageInfo { endCursor hasNextPage } } } } }
-- not compiled: (none)
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"messages":' || (select '{' || '"pageInfo":{' || '"endCursor":' || coalesce((array_agg('"' || chr(2) || 'messages:' || t0.id || chr(3) || ((extract(epoch from t1.created_at) * 1000)::float8)::text || chr(3) || t1.id || chr(2) || '"'
              order by t1.rn desc) filter (where t1.rn <= ?::int))[1], 'null') || ',' || '"hasNextPage":' || (case when count(*) > ?::int then 'true' else 'false' end) || '}' || '}'
        from (select t2.*, row_number() over (order by t2.created_at asc, t2.id asc) as rn
          from (select *
            from ((select o.*
                from messages o
                where o.conversation_id = t0.id and o.replaced_at is null
                order by o.created_at asc, o.id asc
                limit ?::int) union all
              select t2_inherited.*
              from (select i.*
                from conversation_ancestors x
                join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
                cross
                join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
                where x.conversation_id = t0.id and not exists (select 1
                  from messages f
                  where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
                  from conversation_ancestors y
                  join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
                  where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) t2_inherited
              where t0.forked_from_message_id is not null) t2
            order by t2.created_at asc, t2.id asc
            limit ?::int) t2) t1
        group by ()) || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"messages":' || (select '{' || '"pageInfo":{' || '"endCursor":' || coalesce((array_agg('"' || chr(2) || 'messages:' || t0.id || chr(3) || ((extract(epoch from t1.created_at) * 1000)::float8)::text || chr(3) || t1.id || chr(2) || '"'
              order by t1.rn desc) filter (where t1.rn <= ?::int))[1], 'null') || ',' || '"hasNextPage":' || (case when count(*) > ?::int then 'true' else 'false' end) || '}' || '}'
        from (select t2.*, row_number() over (order by t2.created_at asc, t2.id asc) as rn
          from (select *
            from ((select o.*
                from messages o
                where o.conversation_id = t0.id and o.replaced_at is null
                order by o.created_at asc, o.id asc
                limit ?::int) union all
              select t2_inherited.*
              from (select i.*
                from conversation_ancestors x
                join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
                cross
                join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
                where x.conversation_id = t0.id and not exists (select 1
                  from messages f
                  where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
                  from conversation_ancestors y
                  join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
                  where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) t2_inherited
              where t0.forked_from_message_id is not null) t2
            order by t2.created_at asc, t2.id asc
            limit ?::int) t2) t1
        group by ()) || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null and (t0.created_at, t0.id) < (?, ?)
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;

-- conversations › nodes › messages(first: $first2, after: $after2)
-- compiled leaves: (none)
-- not compiled: (none)

-- conversations › nodes › messages(first: $first2, after: $after2) › nodes
-- query Walk($first2: Int, $after2: String) { conversations { nodes { messages(first: $first2, after: $after2) { nodes { completionTokens content createdAt current id latencyMs model promptTokens provider role version } } } } }
-- not compiled: conversation, costUsd, forkedFrom, versions
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"messages":' || (select '{' || '"nodes":[' || coalesce(string_agg('{' || '"completionTokens":' || coalesce(t1.completion_tokens::int::text, 'null') || ',' || '"content":' || to_json(t1.content::text)::text || ',' || '"createdAt":' || ('"' || to_char(t1.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"current":' || (case when t1.replaced_at is null then 'true' else 'false' end) || ',' || '"id":' || to_json(t1.id::text)::text || ',' || '"latencyMs":' || coalesce(t1.latency_ms::int::text, 'null') || ',' || '"model":' || coalesce(to_json(t1.model::text)::text, 'null') || ',' || '"promptTokens":' || coalesce(t1.prompt_tokens::int::text, 'null') || ',' || '"provider":' || (case t1.provider::text when 'OPENAI' then '"OPENAI"' when 'ANTHROPIC' then '"ANTHROPIC"' when 'GOOGLE' then '"GOOGLE"' when 'MISTRAL' then '"MISTRAL"' when 'AZURE' then '"AZURE"' when 'OPENAI_COMPATIBLE' then '"OPENAI_COMPATIBLE"' else 'null' end) || ',' || '"role":' || (case t1.role::text when 'SYSTEM' then '"SYSTEM"' when 'USER' then '"USER"' when 'ASSISTANT' then '"ASSISTANT"' else 'null' end) || ',' || '"version":' || t1.version::int::text || '}', ','
            order by t1.created_at asc, t1.id asc), '') || ']' || '}'
        from (select *
          from ((select o.*
              from messages o
              where o.conversation_id = t0.id and o.replaced_at is null and (?::timestamptz is null or (o.created_at, o.id) > (?::timestamptz, ?::uuid))
              order by o.created_at asc, o.id asc
              limit ?::int) union all
            select t2_inherited.*
            from (select i.*
              from conversation_ancestors x
              join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
              cross
              join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
              where x.conversation_id = t0.id and not exists (select 1
                from messages f
                where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
                from conversation_ancestors y
                join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
                where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) t2_inherited
            where t0.forked_from_message_id is not null and (?::timestamptz is null or (t2_inherited.created_at, t2_inherited.id) > (?::timestamptz, ?::uuid))) t2
          order by t2.created_at asc, t2.id asc
          limit ?::int) t1
        group by ()) || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"messages":' || (select '{' || '"nodes":[' || coalesce(string_agg('{' || '"completionTokens":' || coalesce(t1.completion_tokens::int::text, 'null') || ',' || '"content":' || to_json(t1.content::text)::text || ',' || '"createdAt":' || ('"' || to_char(t1.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"current":' || (case when t1.replaced_at is null then 'true' else 'false' end) || ',' || '"id":' || to_json(t1.id::text)::text || ',' || '"latencyMs":' || coalesce(t1.latency_ms::int::text, 'null') || ',' || '"model":' || coalesce(to_json(t1.model::text)::text, 'null') || ',' || '"promptTokens":' || coalesce(t1.prompt_tokens::int::text, 'null') || ',' || '"provider":' || (case t1.provider::text when 'OPENAI' then '"OPENAI"' when 'ANTHROPIC' then '"ANTHROPIC"' when 'GOOGLE' then '"GOOGLE"' when 'MISTRAL' then '"MISTRAL"' when 'AZURE' then '"AZURE"' when 'OPENAI_COMPATIBLE' then '"OPENAI_COMPATIBLE"' else 'null' end) || ',' || '"role":' || (case t1.role::text when 'SYSTEM' then '"SYSTEM"' when 'USER' then '"USER"' when 'ASSISTANT' then '"ASSISTANT"' else 'null' end) || ',' || '"version":' || t1.version::int::text || '}', ','
            order by t1.created_at asc, t1.id asc), '') || ']' || '}'
        from (select *
          from ((select o.*
              from messages o
              where o.conversation_id = t0.id and o.replaced_at is null and (?::timestamptz is null or (o.created_at, o.id) > (?::timestamptz, ?::uuid))
              order by o.created_at asc, o.id asc
              limit ?::int) union all
            select t2_inherited.*
            from (select i.*
              from conversation_ancestors x
              join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
              cross
              join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
              where x.conversation_id = t0.id and not exists (select 1
                from messages f
                where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
                from conversation_ancestors y
                join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
                where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) t2_inherited
            where t0.forked_from_message_id is not null and (?::timestamptz is null or (t2_inherited.created_at, t2_inherited.id) > (?::timestamptz, ?::uuid))) t2
          order by t2.created_at asc, t2.id asc
          limit ?::int) t1
        group by ()) || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null and (t0.created_at, t0.id) < (?, ?)
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;

-- conversations › nodes › messages(first: $first2, after: $after2) › pageInfo
-- query Walk($first2: Int, $after2: String) { conversations { nodes { messages(first: $first2, after: $after2) { pageInfo { endCursor hasNextPage } } } } }
-- not compiled: (none)
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"messages":' || (select '{' || '"pageInfo":{' || '"endCursor":' || coalesce((array_agg('"' || chr(2) || 'messages:' || t0.id || chr(3) || ((extract(epoch from t1.created_at) * 1000)::float8)::text || chr(3) || t1.id || chr(2) || '"'
              order by t1.rn desc) filter (where t1.rn <= ?::int))[1], 'null') || ',' || '"hasNextPage":' || (case when count(*) > ?::int then 'true' else 'false' end) || '}' || '}'
        from (select t2.*, row_number() over (order by t2.created_at asc, t2.id asc) as rn
          from (select *
            from ((select o.*
                from messages o
                where o.conversation_id = t0.id and o.replaced_at is null and (?::timestamptz is null or (o.created_at, o.id) > (?::timestamptz, ?::uuid))
                order by o.created_at asc, o.id asc
                limit ?::int) union all
              select t2_inherited.*
              from (select i.*
                from conversation_ancestors x
                join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
                cross
                join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
                where x.conversation_id = t0.id and not exists (select 1
                  from messages f
                  where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
                  from conversation_ancestors y
                  join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
                  where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) t2_inherited
              where t0.forked_from_message_id is not null and (?::timestamptz is null or (t2_inherited.created_at, t2_inherited.id) > (?::timestamptz, ?::uuid))) t2
            order by t2.created_at asc, t2.id asc
            limit ?::int) t2) t1
        group by ()) || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"messages":' || (select '{' || '"pageInfo":{' || '"endCursor":' || coalesce((array_agg('"' || chr(2) || 'messages:' || t0.id || chr(3) || ((extract(epoch from t1.created_at) * 1000)::float8)::text || chr(3) || t1.id || chr(2) || '"'
              order by t1.rn desc) filter (where t1.rn <= ?::int))[1], 'null') || ',' || '"hasNextPage":' || (case when count(*) > ?::int then 'true' else 'false' end) || '}' || '}'
        from (select t2.*, row_number() over (order by t2.created_at asc, t2.id asc) as rn
          from (select *
            from ((select o.*
                from messages o
                where o.conversation_id = t0.id and o.replaced_at is null and (?::timestamptz is null or (o.created_at, o.id) > (?::timestamptz, ?::uuid))
                order by o.created_at asc, o.id asc
                limit ?::int) union all
              select t2_inherited.*
              from (select i.*
                from conversation_ancestors x
                join messages s on s.conversation_id = x.ancestor_id and (s.created_at, coalesce(s.version_of_id, s.id)) <= (x.upto_created_at, x.upto_id) and coalesce(s.answered_at, s.created_at) <= x.created_at and (s.replaced_at is null or s.replaced_at > x.created_at)
                cross
                join lateral jsonb_populate_record(s, jsonb_build_object('conversation_id', x.conversation_id, 'replaced_at', null)) i
                where x.conversation_id = t0.id and not exists (select 1
                  from messages f
                  where f.conversation_id = x.conversation_id and f.version_of_id = coalesce(s.version_of_id, s.id) and f.replaced_at is null) and not exists (select 1
                  from conversation_ancestors y
                  join messages g on g.conversation_id = y.ancestor_id and g.version_of_id = coalesce(s.version_of_id, s.id)
                  where y.conversation_id = x.conversation_id and y.created_at > x.created_at and coalesce(g.answered_at, g.created_at) <= y.created_at and (g.replaced_at is null or g.replaced_at > y.created_at))) t2_inherited
              where t0.forked_from_message_id is not null and (?::timestamptz is null or (t2_inherited.created_at, t2_inherited.id) > (?::timestamptz, ?::uuid))) t2
            order by t2.created_at asc, t2.id asc
            limit ?::int) t2) t1
        group by ()) || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null and (t0.created_at, t0.id) < (?, ?)
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;

-- conversations › pageInfo
-- query Walk { conversations { pageInfo { endCursor hasNextPage } } }
-- not compiled: (none)
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select 'null' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select 'null' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from conversations t0
      where t0.owner_id = ? and t0.deleted_at is null and (t0.created_at, t0.id) < (?, ?)
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;
