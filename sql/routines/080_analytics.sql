-- Revenue and usage analytics for the system overview (system admins).
--
-- Read-only: nothing here locks or writes. The role check runs in the caller's
-- transaction (billing_core.analytics passes `ledger_authorize(actor, null,
-- 'system_admin')` before the read), as for the views in 040_views.sql.
--
-- Every function takes p_as_of, the moment the figures describe (default: the
-- transaction's now()), so that a figure and its value 30 days earlier come
-- from the same rules:
--   * a subscription pays at moment t when it was created at or before t, was
--     not canceled at or before t (canceled_at; status_changed_at, else
--     updated_at, for a canceled row without one), is not trialing now and
--     had no trial running at t (trial_ends_at). At t = now this is exactly
--     the active and past_due subscriptions. Status changes between active
--     and past_due are not dated: a subscription past due now counts as
--     paying at every earlier moment of its life, as MRR counts both.
--   * its monthly amount is price_amount, or price_amount / 12 when billed
--     yearly; MRR is the sum of these, ARR = 12 x MRR.
--   * credits used in the last 30 days: attribution rows created in
--     [as_of - 30 days, as_of]; the previous 30 days: [as_of - 60 days,
--     as_of - 30 days).
-- Pool figures and member counts are the current ones whatever p_as_of says:
-- the ledger keeps their totals, not their past values.
-- Functions are dropped and recreated when this file changes (create or
-- replace cannot change a function's result columns); nothing depends on them
-- but billing_core.

drop function if exists system_organizations(timestamptz);

drop function if exists system_plan_mix(timestamptz);

drop function if exists system_overview(timestamptz);

drop function if exists analytics_org_usage(timestamptz);

drop function if exists analytics_paying_subscriptions(timestamptz);

drop function if exists analytics_monthly_amount(numeric, text);


-- analytics_monthly_amount(p_price, p_billing_cycle): the monthly amount of a
-- subscription price: the price itself when billed monthly, a twelfth of it
-- when billed yearly (unrounded). Raises nothing.
create function analytics_monthly_amount(p_price numeric, p_billing_cycle text)
returns numeric
language sql
immutable
as $$
    select case when p_billing_cycle = 'yearly' then p_price / 12 else p_price end;
$$;


-- analytics_paying_subscriptions(p_at): one row per subscription paying at
-- moment p_at (see the rules at the top of this file), with its monthly
-- amount. Raises nothing, locks nothing.
create function analytics_paying_subscriptions(p_at timestamptz)
returns table (
    org_id text,
    subscription_id text,
    plan text,
    status text,
    billing_cycle text,
    price_amount numeric,
    monthly_amount numeric
)
language sql
stable
as $$
    select s.org_id, s.id, s.plan, s.status, s.billing_cycle, s.price_amount,
           analytics_monthly_amount(s.price_amount, s.billing_cycle)
      from organization_subscriptions s
     where s.created_at <= p_at
       and s.status <> 'trialing'
       and (s.trial_ends_at is null or s.trial_ends_at <= p_at)
       and coalesce(s.canceled_at,
                    case when s.status = 'canceled' then coalesce(s.status_changed_at, s.updated_at) end,
                    'infinity') > p_at;
$$;


-- analytics_org_usage(p_as_of): one row per organization: credits used and
-- requests in the 30 days up to p_as_of, credits used in the 30 days before,
-- and the last charge up to p_as_of. Reads attribution through its
-- (org_id, created_at) index, one range per organization. Raises nothing.
create function analytics_org_usage(p_as_of timestamptz)
returns table (
    org_id text,
    credits_used_30d numeric,
    requests_30d bigint,
    credits_used_prev_30d numeric,
    last_usage_at timestamptz
)
language sql
stable
as $$
    select o.id,
           coalesce(u.credits_30d, 0),
           coalesce(u.requests_30d, 0),
           coalesce(u.credits_prev_30d, 0),
           u.last_usage_at
      from organizations o
      left join lateral (
            select sum(c.credits_used) filter (where c.created_at >= p_as_of - interval '30 days')
                       as credits_30d,
                   count(*) filter (where c.created_at >= p_as_of - interval '30 days') as requests_30d,
                   sum(c.credits_used) filter (where c.created_at < p_as_of - interval '30 days')
                       as credits_prev_30d,
                   max(c.created_at) as last_usage_at
              from credit_usage_attribution c
             where c.org_id = o.id
               and c.created_at >= p_as_of - interval '60 days'
               and c.created_at <= p_as_of
           ) u on true;
$$;


-- system_overview(p_as_of): one row: MRR, ARR and paying subscriptions at
-- p_as_of and 30 days earlier; credits used and requests over the last 30
-- days and the 30 before; how many organizations exist and how many
-- subscriptions are past due now. MRR and ARR are rounded to 4 decimals
-- (ARR from the unrounded MRR). Raises nothing, locks nothing.
create function system_overview(p_as_of timestamptz default now())
returns table (
    as_of timestamptz,
    mrr numeric,
    mrr_30d_ago numeric,
    arr numeric,
    arr_30d_ago numeric,
    paying_subscriptions bigint,
    paying_subscriptions_30d_ago bigint,
    credits_used_30d numeric,
    credits_used_prev_30d numeric,
    requests_30d bigint,
    organizations bigint,
    past_due_subscriptions bigint
)
language sql
stable
as $$
    with cur as (
        select coalesce(sum(monthly_amount), 0) as mrr, count(*) as subscriptions
          from analytics_paying_subscriptions(p_as_of)
    ),
    prev as (
        select coalesce(sum(monthly_amount), 0) as mrr, count(*) as subscriptions
          from analytics_paying_subscriptions(p_as_of - interval '30 days')
    ),
    usage as (
        select coalesce(sum(credits_used_30d), 0) as credits_30d,
               coalesce(sum(requests_30d), 0)::bigint as requests_30d,
               coalesce(sum(credits_used_prev_30d), 0) as credits_prev_30d,
               count(*) as organizations
          from analytics_org_usage(p_as_of)
    )
    select p_as_of,
           round(cur.mrr, 4), round(prev.mrr, 4),
           round(12 * cur.mrr, 4), round(12 * prev.mrr, 4),
           cur.subscriptions, prev.subscriptions,
           usage.credits_30d, usage.credits_prev_30d, usage.requests_30d,
           usage.organizations,
           (select count(*) from analytics_paying_subscriptions(p_as_of) s where s.status = 'past_due')
      from cur, prev, usage;
$$;


-- system_plan_mix(p_as_of): one row per plan with paying subscriptions at
-- p_as_of: its code and name (the code when the catalogue lacks it), how many, their MRR (rounded to 4 decimals) and that MRR's share of
-- the total in percent (2 decimals; null when the total is 0). Largest MRR
-- first. Raises nothing, locks nothing.
create function system_plan_mix(p_as_of timestamptz default now())
returns table (
    plan text,
    plan_name text,
    subscriptions bigint,
    mrr numeric,
    mrr_share_percent numeric
)
language sql
stable
as $$
    select s.plan,
           coalesce(min(pl.name), s.plan),
           count(*),
           round(sum(s.monthly_amount), 4),
           case when sum(sum(s.monthly_amount)) over () > 0
                then round(100 * sum(s.monthly_amount) / sum(sum(s.monthly_amount)) over (), 2)
           end
      from analytics_paying_subscriptions(p_as_of) s
      left join plans pl on pl.code = s.plan
     group by s.plan
     order by sum(s.monthly_amount) desc, s.plan;
$$;


-- system_organizations(p_as_of): one row per organization: its subscription
-- (the live one, else the latest; status 'none' when it never had one) with
-- the plan's name and when the status last changed, its
-- MRR at p_as_of (0 unless paying), members, current pool figures, the share
-- of the pool allocated (percent), credits used over the last 30 days and the
-- 30 before with the change in percent (null when nothing was used before).
-- Raises nothing, locks nothing.
create function system_organizations(p_as_of timestamptz default now())
returns table (
    org_id text,
    org_name text,
    org_status text,
    plan text,
    plan_name text,
    subscription_status text,
    billing_cycle text,
    price_amount numeric,
    mrr numeric,
    subscription_created_at timestamptz,
    status_changed_at timestamptz,
    member_count bigint,
    total_credits numeric,
    allocated_credits numeric,
    used_credits numeric,
    available_credits numeric,
    allocated_percent numeric,
    credits_used_30d numeric,
    credits_used_prev_30d numeric,
    usage_change_percent numeric,
    requests_30d bigint,
    last_usage_at timestamptz,
    created_at timestamptz
)
language sql
stable
as $$
    select o.id,
           o.name,
           o.status,
           s.plan,
           coalesce(pl.name, s.plan),
           coalesce(s.status, 'none'),
           s.billing_cycle,
           s.price_amount,
           coalesce((select round(sum(ps.monthly_amount), 4)
                       from analytics_paying_subscriptions(p_as_of) ps
                      where ps.org_id = o.id), 0),
           s.created_at,
           coalesce(s.status_changed_at, s.canceled_at, s.created_at),
           (select count(*) from organization_members m where m.org_id = o.id),
           coalesce(p.total_credits, 0),
           coalesce(p.allocated_credits, 0),
           coalesce(p.used_credits, 0),
           coalesce(p.available_credits, 0),
           case when p.total_credits > 0 then round(100 * p.allocated_credits / p.total_credits, 2) end,
           u.credits_used_30d,
           u.credits_used_prev_30d,
           case when u.credits_used_prev_30d > 0
                then round(100 * (u.credits_used_30d - u.credits_used_prev_30d) / u.credits_used_prev_30d, 2)
           end,
           u.requests_30d,
           u.last_usage_at,
           o.created_at
      from organizations o
      join analytics_org_usage(p_as_of) u on u.org_id = o.id
      left join organization_credit_pools p on p.org_id = o.id
      left join lateral (
            select *
              from organization_subscriptions s
             where s.org_id = o.id
             order by (s.status in ('trialing', 'active', 'past_due')) desc, s.created_at desc, s.id
             limit 1
           ) s on true
      left join plans pl on pl.code = s.plan;
$$;
