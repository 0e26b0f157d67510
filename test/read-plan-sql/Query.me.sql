-- me
-- query Walk { me { createdAt email id role } }
-- not compiled: apiKeys, budgetUsd, dailyBudgetUsd, remainingBudgetUsd, spentTodayUsd
select '{' || '"createdAt":' || ('"' || to_char(t0.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"') || ',' || '"email":' || to_json(t0.email::text)::text || ',' || '"id":' || to_json(t0.id::text)::text || ',' || '"role":' || (case t0.role::text when 'USER' then '"USER"' when 'ADMIN' then '"ADMIN"' else 'null' end) || '}' as j
  from users t0
  where t0.id = ?;
