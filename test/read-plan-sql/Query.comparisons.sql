-- comparisons
-- compiled leaves: (none)
-- not compiled: totalCount

-- comparisons › nodes
-- query Walk { comparisons { nodes { blind category createdAt id prompt revealed } } }
-- not compiled: conversation, vote
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"blind":' || (case t0.blind when true then 'true' when false then 'false' else 'null' end) || ',' || '"category":' || coalesce(to_json(t0.category::text)::text, 'null') || ',' || '"createdAt":' || ('"' || to_char(t0.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"id":' || to_json(t0.id::text)::text || ',' || '"prompt":' || to_json(t0.prompt::text)::text || ',' || '"revealed":' || (case when (not t0.blind or exists (select 1
            from votes voted_t0
            where voted_t0.comparison_id = t0.id)) then 'true' else 'false' end) || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from comparison_results t0
      where t0.owner_id = ?
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"blind":' || (case t0.blind when true then 'true' when false then 'false' else 'null' end) || ',' || '"category":' || coalesce(to_json(t0.category::text)::text, 'null') || ',' || '"createdAt":' || ('"' || to_char(t0.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"id":' || to_json(t0.id::text)::text || ',' || '"prompt":' || to_json(t0.prompt::text)::text || ',' || '"revealed":' || (case when (not t0.blind or exists (select 1
            from votes voted_t0
            where voted_t0.comparison_id = t0.id)) then 'true' else 'false' end) || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from comparison_results t0
      where t0.owner_id = ? and (t0.created_at, t0.id) < (?, ?)
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;

-- comparisons › nodes › responses
-- query Walk { comparisons { nodes { responses { completionTokens content createdAt customEndpoint error id keyLabel kind label latencyMs model promptTokens provider status timeToFirstTokenMs } } } }
-- not compiled: comparison, costUsd, sources
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"responses":' || ('[' || coalesce((select string_agg('{' || '"completionTokens":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else coalesce(t1.completion_tokens::int::text, 'null') end) || ',' || '"content":' || to_json(t1.content::text)::text || ',' || '"createdAt":' || ('"' || to_char(t1.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"customEndpoint":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else (case t1.custom_endpoint when true then 'true' when false then 'false' else 'null' end) end) || ',' || '"error":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else coalesce(to_json(t1.error::text)::text, 'null') end) || ',' || '"id":' || to_json(t1.id::text)::text || ',' || '"keyLabel":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else coalesce(to_json(t1.key_label::text)::text, 'null') end) || ',' || '"kind":' || (case t1.kind::text when 'MODEL' then '"MODEL"' when 'FUSED' then '"FUSED"' else 'null' end) || ',' || '"label":' || to_json(chr(65 + t1.position))::text || ',' || '"latencyMs":' || coalesce(t1.latency_ms::int::text, 'null') || ',' || '"model":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else coalesce(to_json(t1.model::text)::text, 'null') end) || ',' || '"promptTokens":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else coalesce(t1.prompt_tokens::int::text, 'null') end) || ',' || '"provider":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else (case t1.provider::text when 'OPENAI' then '"OPENAI"' when 'ANTHROPIC' then '"ANTHROPIC"' when 'GOOGLE' then '"GOOGLE"' when 'MISTRAL' then '"MISTRAL"' when 'AZURE' then '"AZURE"' when 'OPENAI_COMPATIBLE' then '"OPENAI_COMPATIBLE"' else 'null' end) end) || ',' || '"status":' || (case t1.status::text when 'PENDING' then '"PENDING"' when 'STREAMING' then '"STREAMING"' when 'COMPLETED' then '"COMPLETED"' when 'FAILED' then '"FAILED"' when 'TIMED_OUT' then '"TIMED_OUT"' else 'null' end) || ',' || '"timeToFirstTokenMs":' || coalesce(t1.time_to_first_token_ms::int::text, 'null') || '}', ','
              order by t1.position)
            from comparison_responses t1
            where t1.comparison_id = t0.id), '') || ']') || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from comparison_results t0
      where t0.owner_id = ?
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select '{' || '"responses":' || ('[' || coalesce((select string_agg('{' || '"completionTokens":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else coalesce(t1.completion_tokens::int::text, 'null') end) || ',' || '"content":' || to_json(t1.content::text)::text || ',' || '"createdAt":' || ('"' || to_char(t1.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"customEndpoint":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else (case t1.custom_endpoint when true then 'true' when false then 'false' else 'null' end) end) || ',' || '"error":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else coalesce(to_json(t1.error::text)::text, 'null') end) || ',' || '"id":' || to_json(t1.id::text)::text || ',' || '"keyLabel":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else coalesce(to_json(t1.key_label::text)::text, 'null') end) || ',' || '"kind":' || (case t1.kind::text when 'MODEL' then '"MODEL"' when 'FUSED' then '"FUSED"' else 'null' end) || ',' || '"label":' || to_json(chr(65 + t1.position))::text || ',' || '"latencyMs":' || coalesce(t1.latency_ms::int::text, 'null') || ',' || '"model":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else coalesce(to_json(t1.model::text)::text, 'null') end) || ',' || '"promptTokens":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else coalesce(t1.prompt_tokens::int::text, 'null') end) || ',' || '"provider":' || (case when (not (not t0.blind or exists (select 1
                      from votes voted_t0
                      where voted_t0.comparison_id = t0.id))) then chr(1) else (case t1.provider::text when 'OPENAI' then '"OPENAI"' when 'ANTHROPIC' then '"ANTHROPIC"' when 'GOOGLE' then '"GOOGLE"' when 'MISTRAL' then '"MISTRAL"' when 'AZURE' then '"AZURE"' when 'OPENAI_COMPATIBLE' then '"OPENAI_COMPATIBLE"' else 'null' end) end) || ',' || '"status":' || (case t1.status::text when 'PENDING' then '"PENDING"' when 'STREAMING' then '"STREAMING"' when 'COMPLETED' then '"COMPLETED"' when 'FAILED' then '"FAILED"' when 'TIMED_OUT' then '"TIMED_OUT"' else 'null' end) || ',' || '"timeToFirstTokenMs":' || coalesce(t1.time_to_first_token_ms::int::text, 'null') || '}', ','
              order by t1.position)
            from comparison_responses t1
            where t1.comparison_id = t0.id), '') || ']') || '}' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from comparison_results t0
      where t0.owner_id = ? and (t0.created_at, t0.id) < (?, ?)
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;

-- comparisons › pageInfo
-- query Walk { comparisons { pageInfo { endCursor hasNextPage } } }
-- not compiled: (none)
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select 'null' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from comparison_results t0
      where t0.owner_id = ?
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;
select j, ms, id, total
  from (select s.*, sum(octet_length(s.j)) over (order by s.created_at desc, s.id desc) as total
    from (select 'null' as j, (extract(epoch from t0.created_at) * 1000)::float8 as ms, t0.id as id, t0.created_at as created_at
      from comparison_results t0
      where t0.owner_id = ? and (t0.created_at, t0.id) < (?, ?)
      order by t0.created_at desc, t0.id desc
      limit ?) s) w
  where w.total - octet_length(w.j) <= 33554432
  order by w.created_at desc, w.id desc;
