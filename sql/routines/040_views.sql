-- Read models (views over the ledger), re-created with every routine.


-- One row per pool. used_credits is exact at every snapshot: what closed
-- allocations used plus what the active ones have used so far.
create view organization_credit_pools as
select p.org_id,
       p.total_credits,
       p.allocated_credits,
       p.closed_used_credits + coalesce(active.used_credits, 0) as used_credits,
       p.total_credits - p.allocated_credits as available_credits,
       p.monthly_refresh_amount,
       p.created_at,
       p.updated_at
  from credit_pools p
  left join lateral (
        select sum(a.used_credits) as used_credits
          from user_credit_allocations a
         where a.org_id = p.org_id and a.is_active
       ) active on true;

comment on view organization_credit_pools is
    'One row per pool. used_credits is exact at every snapshot: what closed allocations used plus what the active '
    'ones have used so far.';


-- One row per membership: what each user holds in each of their organizations.
create view user_multi_org_credits as
select m.user_id,
       u.email,
       coalesce(u.display_name, u.email) as display_name,
       m.org_id,
       o.name as org_name,
       o.status as org_status,
       m.role,
       m.is_default,
       a.id as allocation_id,
       coalesce(a.allocated_credits, 0) as allocated_credits,
       coalesce(a.used_credits, 0) as used_credits,
       -- what the member can spend: credits held for calls in progress are not
       coalesce(a.remaining_credits - a.held_credits, 0) as remaining_credits,
       case when coalesce(a.allocated_credits, 0) > 0
            then round(100 * a.used_credits / a.allocated_credits, 2)
            else 0 end as usage_percent,
       a.period_start,
       a.period_end,
       coalesce(a.held_credits, 0) as held_credits,
       o.kind as org_kind
  from organization_members m
  join users u on u.id = m.user_id
  join organizations o on o.id = m.org_id
  left join user_credit_allocations a
         on a.org_id = m.org_id and a.user_id = m.user_id and a.is_active;

comment on view user_multi_org_credits is
    'One row per membership: what each user holds in each of their organizations.';


-- Users ranked by the credits they used in each organization over the last
-- 30 days (only users with usage).
create view top_credit_users_by_org as
select t.org_id,
       t.user_id,
       u.email,
       coalesce(u.display_name, u.email) as display_name,
       t.credits_used_30d,
       t.requests_30d,
       rank() over (partition by t.org_id order by t.credits_used_30d desc) as usage_rank
  from (select org_id, user_id, sum(credits_used) as credits_used_30d, count(*) as requests_30d
          from credit_usage_attribution
         where created_at >= now() - interval '30 days'
         group by org_id, user_id) t
  join users u on u.id = t.user_id;

comment on view top_credit_users_by_org is
    'Users ranked by the credits they used in each organization over the last 30 days (only users with usage).';


-- Usage analytics per organization: the last 30 days against the 30 before.
create view org_billing_metrics as
select o.id as org_id,
       o.name as org_name,
       coalesce(cur.credits_used, 0) as credits_used_30d,
       coalesce(cur.requests, 0) as requests_30d,
       coalesce(cur.active_users, 0) as active_users_30d,
       coalesce(cur.services, 0) as services_used_30d,
       case when cur.requests > 0 then round(cur.credits_used / cur.requests, 6) end
           as avg_credits_per_request_30d,
       coalesce(prev.credits_used, 0) as credits_used_prev_30d,
       case when prev.credits_used > 0
            then round(100 * (coalesce(cur.credits_used, 0) - prev.credits_used) / prev.credits_used, 2)
            end as credits_used_change_percent,
       cur.last_usage_at
  from organizations o
  left join lateral (
        select sum(c.credits_used) as credits_used,
               count(*) as requests,
               count(distinct c.user_id) as active_users,
               count(distinct c.service_type) as services,
               max(c.created_at) as last_usage_at
          from credit_usage_attribution c
         where c.org_id = o.id and c.created_at >= now() - interval '30 days'
       ) cur on true
  left join lateral (
        select sum(c.credits_used) as credits_used
          from credit_usage_attribution c
         where c.org_id = o.id
           and c.created_at >= now() - interval '60 days'
           and c.created_at < now() - interval '30 days'
       ) prev on true;

comment on view org_billing_metrics is
    'Usage analytics per organization: the last 30 days against the 30 before.';


-- One row per organization: its pool, plan, members and recent usage.
-- Personal balances (organizations.kind 'personal') are not listed.
create view org_billing_summary as
select o.id as org_id,
       o.name as org_name,
       o.status as org_status,
       s.plan,
       s.status as subscription_status,
       s.price_amount,
       s.billing_cycle,
       coalesce(p.total_credits, 0) as total_credits,
       coalesce(p.allocated_credits, 0) as allocated_credits,
       coalesce(p.used_credits, 0) as used_credits,
       coalesce(p.available_credits, 0) as available_credits,
       coalesce(p.monthly_refresh_amount, 0) as monthly_refresh_amount,
       (select count(*) from organization_members m where m.org_id = o.id) as member_count,
       (select count(*) from organization_members m where m.org_id = o.id and m.role = 'admin')
           as admin_count,
       (select count(*) from user_credit_allocations a where a.org_id = o.id and a.is_active)
           as active_allocations,
       mt.credits_used_30d,
       mt.requests_30d,
       mt.last_usage_at,
       o.created_at
  from organizations o
  left join organization_credit_pools p on p.org_id = o.id
  left join organization_subscriptions s
         on s.org_id = o.id and s.status in ('trialing', 'active', 'past_due')
  join org_billing_metrics mt on mt.org_id = o.id
 where o.kind = 'organization';

comment on view org_billing_summary is
    'One row per organization: its pool, plan, members and recent usage. Personal balances (organizations.kind '
    '''personal'') are not listed.';
