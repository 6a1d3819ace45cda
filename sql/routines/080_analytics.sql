-- Revenue and usage analytics for the system overview (system admins).
--
-- Read-only: nothing here locks or writes. Each read the app calls takes the
-- acting user first (p_actor_id) and authorizes it itself, as writes do
-- (system admins; one organization's figures: its admins too); the
-- analytics_* helpers it builds on are not granted to the app.
--
-- Every function takes p_as_of, the moment the figures describe (default: the
-- transaction's now()), so that a figure and its value 30 days earlier come
-- from the same rules:
--   * what was true at moment t is what the organization's latest
--     subscription history row (metadata ? 'mrr_after', see
--     068_subscription_terms.sql) dated at or before t says: its plan, plan
--     version, billing cycle, price and status then. A subscription pays at t
--     when that row's status is active or past due (a trial, a cancellation:
--     not paying), and pays the monthly amount of the price in force then
--     (price_amount, or price_amount / 12 when billed yearly: the row's
--     mrr_after unrounded, analytics_history_mrr). So a plan changed since t does not
--     reprice t: the figure 30 days ago, the plan mix then and the month by
--     month movements below all read the same rows and agree. At t = now
--     this is exactly the active and past_due subscriptions
--     (ledger_violations checks that history and subscriptions agree). A
--     subscription with no history at all (a row an integrator inserted)
--     pays by its own columns: created at or before t, not canceled at or
--     before t (canceled_at; status_changed_at, else updated_at, for a
--     canceled row without one), not trialing now and no trial running at t.
--     MRR is the sum of these, ARR = 12 x MRR; money figures are rounded to
--     4 decimals only when reported (ARR from the unrounded MRR).
--   * credits used in the last 30 days: attribution rows created in
--     [as_of - 30 days, as_of]; the previous 30 days: [as_of - 60 days,
--     as_of - 30 days).
-- Pool figures and member counts are the current ones whatever p_as_of says:
-- the ledger keeps their totals, not their past values.
--
-- Month by month (calendar months in UTC; system_mrr_months,
-- analytics_credit_months) the figures come from history, not from the
-- subscriptions' current state:
--   * an organization's MRR at moment t is what its latest subscription
--     history row dated before t says (as above); 0 before its
--     first. Whatever writes such a row (plan changes, trials,
--     reactivations, status changes) moves MRR, whatever its event_type.
--   * each such row moves the organization's MRR from the previous row's
--     mrr_after (0 for its first) to its own: 0 -> more is 'new' (or
--     'reactivation' when the organization paid at some earlier moment),
--     more -> 0 is 'churn', up is 'expansion', down is 'contraction'. A
--     month's MRR at its end = at its start + new + reactivation + expansion
--     - contraction - churned, exactly.
--   * logo churn: organizations paying at the month's start that churned
--     during it, in percent of those paying at its start. An organization
--     that starts and leaves within one month shows in new and churned MRR
--     but not in logo churn.
--   * credits: sold = history rows adding credits for money (credits > 0,
--     amount > 0; revenue is their amount); granted = rows adding credits for
--     $0 (grants, included or refreshed credits); expired = rows of
--     event_type 'credit_expiry' (negative credits, reported positive);
--     consumed = attribution rows by when the usage happened (created_at).
--   * rows dated after p_as_of are left out; the current month runs to
--     p_as_of.
--   * burn rate: credits used in the 30 days up to p_as_of / 30, per day;
--     remaining credits: the pool's total minus what its open allocations
--     used (closed allocations already left the total); runway: remaining /
--     burn rate, in days (null when nothing was used in 30 days).


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

comment on function analytics_monthly_amount(numeric, text) is
    'analytics_monthly_amount(p_price, p_billing_cycle): the monthly amount of a subscription price: the price '
    'itself when billed monthly, a twelfth of it when billed yearly (unrounded). Raises nothing.';


-- analytics_history_mrr(p_metadata): what an organization pays a month after
-- the subscription history row whose metadata this is: the monthly amount
-- of the price then in force while its status is active or past due
-- (unrounded: the row's mrr_after is it rounded to 4 decimals, used when the
-- row names no price), else 0. Raises nothing.
create function analytics_history_mrr(p_metadata jsonb)
returns numeric
language sql
immutable
as $$
    select case when p_metadata ->> 'status' in ('active', 'past_due')
                then coalesce(analytics_monthly_amount((p_metadata ->> 'price_amount')::numeric,
                                                       p_metadata ->> 'billing_cycle'),
                              (p_metadata ->> 'mrr_after')::numeric)
                else 0 end;
$$;

comment on function analytics_history_mrr(jsonb) is
    'analytics_history_mrr(p_metadata): what an organization pays a month after the subscription history row '
    'whose metadata this is: the monthly amount of the price then in force while its status is active or past '
    'due (unrounded: the row''s mrr_after is it rounded to 4 decimals, used when the row names no price), else 0. '
    'Raises nothing.';


-- analytics_paying_subscriptions(p_at): one row per subscription paying at
-- moment p_at (see the rules at the top of this file): what the
-- organization's latest subscription history row at or before p_at says (the
-- subscription, plan, plan version, status, billing cycle and price in force
-- then, and its monthly amount then), and, for a subscription that has no
-- history at all (a row an integrator inserted), its own columns when it was
-- created at or before p_at, not canceled by then and past any trial.
-- Reads history through its partial index of subscription rows (0016), one
-- row per organization. Raises nothing, locks nothing.
create function analytics_paying_subscriptions(p_at timestamptz)
returns table (
    org_id text,
    subscription_id text,
    plan text,
    plan_version integer,
    status text,
    billing_cycle text,
    price_amount numeric,
    monthly_amount numeric
)
language sql
stable
as $$
    select o.id, last.metadata ->> 'subscription_id', last.metadata ->> 'plan',
           (last.metadata ->> 'plan_version')::integer, last.metadata ->> 'status',
           last.metadata ->> 'billing_cycle', (last.metadata ->> 'price_amount')::numeric,
           analytics_history_mrr(last.metadata)
      from organizations o
      cross join lateral (
            select h.metadata
              from org_billing_history h
             where h.org_id = o.id
               and h.metadata ? 'mrr_after'
               and h.created_at <= p_at
             order by h.created_at desc, h.id desc
             limit 1
           ) last
     where last.metadata ->> 'status' in ('active', 'past_due')
    union all
    select s.org_id, s.id, s.plan, s.plan_version, s.status, s.billing_cycle, s.price_amount,
           analytics_monthly_amount(s.price_amount, s.billing_cycle)
      from organization_subscriptions s
     where s.created_at <= p_at
       and s.status <> 'trialing'
       and (s.trial_ends_at is null or s.trial_ends_at <= p_at)
       and coalesce(s.canceled_at,
                    case when s.status = 'canceled' then coalesce(s.status_changed_at, s.updated_at) end,
                    'infinity') > p_at
       and not exists (select 1 from org_billing_history h
                        where h.org_id = s.org_id and h.metadata ? 'mrr_after'
                          and h.metadata ->> 'subscription_id' = s.id);
$$;

comment on function analytics_paying_subscriptions(timestamptz) is
    'analytics_paying_subscriptions(p_at): one row per subscription paying at moment p_at (see the rules at the '
    'top of this file): what the organization''s latest subscription history row at or before p_at says (the '
    'subscription, plan, plan version, status, billing cycle and price in force then, and its monthly amount '
    'then), and, for a subscription that has no history at all (a row an integrator inserted), its own columns '
    'when it was created at or before p_at, not canceled by then and past any trial. Reads history through its '
    'partial index of subscription rows (0016), one row per organization. Raises nothing, locks nothing.';


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
           ) u on true
     where o.kind = 'organization';  -- individual balances are not organizations
$$;

comment on function analytics_org_usage(timestamptz) is
    'analytics_org_usage(p_as_of): one row per organization: credits used and requests in the 30 days up to '
    'p_as_of, credits used in the 30 days before, and the last charge up to p_as_of. Reads attribution through '
    'its (org_id, created_at) index, one range per organization. Raises nothing.';


-- analytics_burn_per_day(p_used_30d): credits used per day over a 30-day
-- window, rounded to 6 decimals. Raises nothing.
create function analytics_burn_per_day(p_used_30d numeric)
returns numeric
language sql
immutable
as $$
    select round(coalesce(p_used_30d, 0) / 30, 6);
$$;

comment on function analytics_burn_per_day(numeric) is
    'analytics_burn_per_day(p_used_30d): credits used per day over a 30-day window, rounded to 6 decimals. Raises '
    'nothing.';


-- analytics_runway_days(p_remaining, p_used_30d): how many days p_remaining
-- credits last at the burn rate of p_used_30d credits per 30 days, 1 decimal
-- (0 when nothing remains; null when nothing was used). Raises nothing.
create function analytics_runway_days(p_remaining numeric, p_used_30d numeric)
returns numeric
language sql
immutable
as $$
    select case when p_used_30d > 0 then round(greatest(p_remaining, 0) * 30 / p_used_30d, 1) end;
$$;

comment on function analytics_runway_days(numeric, numeric) is
    'analytics_runway_days(p_remaining, p_used_30d): how many days p_remaining credits last at the burn rate of '
    'p_used_30d credits per 30 days, 1 decimal (0 when nothing remains; null when nothing was used). Raises '
    'nothing.';


-- analytics_pool_remaining(p_org_id): the credits the organization has left
-- to spend now: its pool's total minus what its open allocations used (0
-- without a pool). Locks nothing, raises nothing.
create function analytics_pool_remaining(p_org_id text)
returns numeric
language sql
stable
as $$
    select coalesce((select p.total_credits
                            - coalesce((select sum(a.used_credits)
                                          from user_credit_allocations a
                                         where a.org_id = p.org_id and a.is_active), 0)
                       from credit_pools p
                      where p.org_id = p_org_id), 0);
$$;

comment on function analytics_pool_remaining(text) is
    'analytics_pool_remaining(p_org_id): the credits the organization has left to spend now: its pool''s total '
    'minus what its open allocations used (0 without a pool). Locks nothing, raises nothing.';


-- system_overview(p_actor_id, p_as_of): one row: MRR, ARR and paying subscriptions at
-- p_as_of and 30 days earlier; credits used and requests over the last 30
-- days and the 30 before; how many organizations exist and how many
-- subscriptions are past due now. MRR and ARR are rounded to 4 decimals
-- (ARR from the unrounded MRR). System admins and the operator only.
-- Raises CB002, CB008; locks nothing.
create function system_overview(p_actor_id text, p_as_of timestamptz default now())
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
    select ledger_authorize(p_actor_id, null, 'system_admin');
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

comment on function system_overview(text, timestamptz) is
    'system_overview(p_actor_id, p_as_of): one row: MRR, ARR and paying subscriptions at p_as_of and 30 days earlier; credits '
    'used and requests over the last 30 days and the 30 before; how many organizations exist and how many '
    'subscriptions are past due now. MRR and ARR are rounded to 4 decimals (ARR from the unrounded MRR). System '
    'admins and the operator only. Raises CB002, CB008; locks nothing.';


-- system_plan_mix(p_actor_id, p_as_of): one row per plan with paying subscriptions at
-- p_as_of: its code and name (the code when the catalogue lacks it), how many, their MRR (rounded to 4 decimals) and that MRR's share of
-- the total in percent (2 decimals; null when the total is 0). Largest MRR
-- first. System admins and the operator only. Raises CB002, CB008; locks
-- nothing.
create function system_plan_mix(p_actor_id text, p_as_of timestamptz default now())
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
    select ledger_authorize(p_actor_id, null, 'system_admin');
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

comment on function system_plan_mix(text, timestamptz) is
    'system_plan_mix(p_actor_id, p_as_of): one row per plan with paying subscriptions at p_as_of: its code and name (the code '
    'when the catalogue lacks it), how many, their MRR (rounded to 4 decimals) and that MRR''s share of the total '
    'in percent (2 decimals; null when the total is 0). Largest MRR first. System admins and the operator only. '
    'Raises CB002, CB008; locks nothing.';


-- system_organizations(p_actor_id, p_as_of): one row per organization: its subscription
-- (the live one, else the latest; status 'none' when it never had one) with
-- the plan's name and when the status last changed, its
-- MRR at p_as_of (0 unless paying), members, current pool figures, the share
-- of the pool allocated (percent), credits used over the last 30 days and the
-- 30 before with the change in percent (null when nothing was used before),
-- the credits it has left, its burn rate per day and its runway in days (see
-- the rules at the top of this file). System admins and the operator only.
-- Raises CB002, CB008; locks nothing.
create function system_organizations(p_actor_id text, p_as_of timestamptz default now())
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
    created_at timestamptz,
    remaining_credits numeric,
    burn_per_day numeric,
    runway_days numeric
)
language sql
stable
as $$
    select ledger_authorize(p_actor_id, null, 'system_admin');
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
           o.created_at,
           r.remaining,
           analytics_burn_per_day(u.credits_used_30d),
           analytics_runway_days(r.remaining, u.credits_used_30d)
      from organizations o
      cross join lateral (select analytics_pool_remaining(o.id) as remaining) r
      join analytics_org_usage(p_as_of) u on u.org_id = o.id
      left join organization_credit_pools p on p.org_id = o.id
      left join lateral (
            select *
              from organization_subscriptions s
             where s.org_id = o.id
             order by (s.status in ('trialing', 'active', 'past_due')) desc, s.created_at desc, s.id
             limit 1
           ) s on true
      left join plans pl on pl.code = s.plan
     where o.kind = 'organization';
$$;

comment on function system_organizations(text, timestamptz) is
    'system_organizations(p_actor_id, p_as_of): one row per organization: its subscription (the live one, else the latest; '
    'status ''none'' when it never had one) with the plan''s name and when the status last changed, its MRR at '
    'p_as_of (0 unless paying), members, current pool figures, the share of the pool allocated (percent), credits '
    'used over the last 30 days and the 30 before with the change in percent (null when nothing was used before), '
    'the credits it has left, its burn rate per day and its runway in days (see the rules at the top of this '
    'file). System admins and the operator only. Raises CB002, CB008; locks nothing.';


-- analytics_month_range(p_first_month, p_last_month, p_as_of, p_months): one
-- row per calendar month (UTC) from p_first_month's to p_last_month's (any
-- day of each; defaults: p_as_of's month last, and p_months months in all),
-- with its start and the start of the next month. Raises CB009 when a bound
-- is after p_as_of's month, when the first is after the last, or for more
-- than 120 months (or p_months outside 1-120).
create function analytics_month_range(
    p_first_month date,
    p_last_month date,
    p_as_of timestamptz,
    p_months integer default 12
)
returns table (month date, month_start timestamptz, month_end timestamptz)
language plpgsql
stable
as $$
declare
    v_current date := date_trunc('month', p_as_of at time zone 'UTC')::date;
    v_last date := coalesce(date_trunc('month', p_last_month)::date, v_current);
    v_first date;
begin
    if p_first_month is null and (p_months is null or p_months not between 1 and 120) then
        raise exception using errcode = 'CB009',
            message = format('Show 1 to 120 months (got %s).', coalesce(p_months::text, 'nothing'));
    end if;
    v_first := coalesce(date_trunc('month', p_first_month)::date, v_last - make_interval(months => p_months - 1));
    if p_as_of is null or not isfinite(p_as_of) then
        raise exception using errcode = 'CB009',
            message = format('The moment described must be a date and time (got %s).', coalesce(p_as_of::text, 'nothing'));
    end if;
    if v_last > v_current or v_first > v_current then
        raise exception using errcode = 'CB009',
            message = format('Month %s is after %s: months to report end with the current one.',
                             to_char(greatest(v_first, v_last), 'YYYY-MM'), to_char(v_current, 'YYYY-MM'));
    end if;
    if v_first > v_last then
        raise exception using errcode = 'CB009',
            message = format('The first month (%s) is after the last (%s): swap them.',
                             to_char(v_first, 'YYYY-MM'), to_char(v_last, 'YYYY-MM'));
    end if;
    if v_first < v_last - interval '119 months' then
        raise exception using errcode = 'CB009',
            message = format('At most 120 months at a time (%s to %s is %s): choose a shorter range.',
                             to_char(v_first, 'YYYY-MM'), to_char(v_last, 'YYYY-MM'),
                             (extract(year from age(v_last, v_first)) * 12 + extract(month from age(v_last, v_first)) + 1)::integer);
    end if;
    return query
        select m::date,
               m::timestamp at time zone 'UTC',
               (m + interval '1 month')::timestamp at time zone 'UTC'
          from generate_series(v_first::timestamp, v_last::timestamp, interval '1 month') m;
end;
$$;

comment on function analytics_month_range(date, date, timestamptz, integer) is
    'analytics_month_range(p_first_month, p_last_month, p_as_of, p_months): one row per calendar month (UTC) from '
    'p_first_month''s to p_last_month''s (any day of each; defaults: p_as_of''s month last, and p_months months '
    'in all), with its start and the start of the next month. Raises CB009 when a bound is after p_as_of''s '
    'month, when the first is after the last, or for more than 120 months (or p_months outside 1-120).';


-- analytics_mrr_events(p_as_of): every subscription history row (one with
-- metadata mrr_after) dated at or before p_as_of, with the organization's MRR
-- before it (the previous row's, 0 for the first) and after it
-- (analytics_history_mrr), and
-- the movement it is: 'new', 'reactivation', 'expansion', 'contraction',
-- 'churn', or null when MRR did not change. "Previous" orders an
-- organization's rows by date, then by id (rows entered after the fact take
-- their place by date). Raises nothing, locks nothing.
create function analytics_mrr_events(p_as_of timestamptz)
returns table (
    org_id text,
    id bigint,
    occurred_at timestamptz,
    event_type text,
    mrr_before numeric,
    mrr_after numeric,
    movement text
)
language sql
stable
as $$
    with rows as (
        select h.org_id, h.id, h.created_at, h.event_type,
               analytics_history_mrr(h.metadata) as mrr_after
          from org_billing_history h
         where h.metadata ? 'mrr_after'
           and h.created_at <= p_as_of
    ),
    ordered as (
        select r.*,
               coalesce(lag(r.mrr_after) over w, 0) as mrr_before,
               coalesce(max(r.mrr_after) over (w rows between unbounded preceding and 1 preceding), 0) > 0
                   as paid_before
          from rows r
        window w as (partition by r.org_id order by r.created_at, r.id)
    )
    select o.org_id, o.id, o.created_at, o.event_type, o.mrr_before, o.mrr_after,
           case when o.mrr_before = 0 and o.mrr_after > 0
                     then case when o.paid_before then 'reactivation' else 'new' end
                when o.mrr_before > 0 and o.mrr_after = 0 then 'churn'
                when o.mrr_after > o.mrr_before then 'expansion'
                when o.mrr_after < o.mrr_before then 'contraction'
           end
      from ordered o;
$$;

comment on function analytics_mrr_events(timestamptz) is
    'analytics_mrr_events(p_as_of): every subscription history row (one with metadata mrr_after) dated at or '
    'before p_as_of, with the organization''s MRR before it (the previous row''s, 0 for the first) and after it '
    '(analytics_history_mrr), and the movement it is: ''new'', ''reactivation'', ''expansion'', ''contraction'', ''churn'', or '
    'null when MRR did not change. "Previous" orders an organization''s rows by date, then by id (rows entered '
    'after the fact take their place by date). Raises nothing, locks nothing.';


-- system_mrr_months(p_actor_id, p_first_month, p_last_month, p_as_of, p_months): one row
-- per calendar month of the range (see analytics_month_range; default the 12
-- months up to p_as_of's), oldest first: MRR at its start and end, ARR at its
-- end (12 x MRR), the MRR moved by new, reactivated, expanding, contracting
-- and churned organizations (each positive) and net new MRR; paying
-- organizations at its start and end, how many were new, reactivated and
-- churned (of those paying at its start) and the logo churn rate (percent, 2
-- decimals; null when none paid at the start). Rules: top of this file.
-- System admins and the operator only. Raises CB002, CB008, CB009 (bad
-- range); locks nothing.
create function system_mrr_months(
    p_actor_id text,
    p_first_month date default null,
    p_last_month date default null,
    p_as_of timestamptz default now(),
    p_months integer default 12
)
returns table (
    month date,
    month_start timestamptz,
    mrr_start numeric,
    new_mrr numeric,
    reactivation_mrr numeric,
    expansion_mrr numeric,
    contraction_mrr numeric,
    churned_mrr numeric,
    net_new_mrr numeric,
    mrr_end numeric,
    arr_end numeric,
    paying_orgs_start bigint,
    paying_orgs_end bigint,
    new_orgs bigint,
    reactivated_orgs bigint,
    churned_orgs bigint,
    logo_churn_percent numeric
)
language sql
stable
as $$
    select ledger_authorize(p_actor_id, null, 'system_admin');
    with months as (
        select * from analytics_month_range(p_first_month, p_last_month, p_as_of, p_months)
    ),
    events as (
        select e.*, e.mrr_after - e.mrr_before as delta
          from analytics_mrr_events(p_as_of) e
    ),
    org_months as (
        select m.month, e.org_id,
               coalesce(sum(e.delta) filter (where e.occurred_at < m.month_start), 0) as mrr_start,
               sum(e.delta) as mrr_end,
               coalesce(sum(e.delta) filter (where e.occurred_at >= m.month_start and e.movement = 'new'), 0)
                   as new_mrr,
               coalesce(sum(e.delta) filter (where e.occurred_at >= m.month_start and e.movement = 'reactivation'), 0)
                   as reactivation_mrr,
               coalesce(sum(e.delta) filter (where e.occurred_at >= m.month_start and e.movement = 'expansion'), 0)
                   as expansion_mrr,
               coalesce(-sum(e.delta) filter (where e.occurred_at >= m.month_start and e.movement = 'contraction'), 0)
                   as contraction_mrr,
               coalesce(-sum(e.delta) filter (where e.occurred_at >= m.month_start and e.movement = 'churn'), 0)
                   as churned_mrr,
               coalesce(bool_or(e.occurred_at >= m.month_start and e.movement = 'new'), false) as is_new,
               coalesce(bool_or(e.occurred_at >= m.month_start and e.movement = 'reactivation'), false)
                   as reactivated,
               coalesce(bool_or(e.occurred_at >= m.month_start and e.movement = 'churn'), false) as churned
          from months m
          join events e on e.occurred_at < m.month_end
         group by m.month, e.org_id
    ),
    totals as (
        select om.month,
               sum(om.mrr_start) as mrr_start,
               sum(om.new_mrr) as new_mrr,
               sum(om.reactivation_mrr) as reactivation_mrr,
               sum(om.expansion_mrr) as expansion_mrr,
               sum(om.contraction_mrr) as contraction_mrr,
               sum(om.churned_mrr) as churned_mrr,
               sum(om.mrr_end) as mrr_end,
               count(*) filter (where om.mrr_start > 0) as paying_start,
               count(*) filter (where om.mrr_end > 0) as paying_end,
               count(*) filter (where om.is_new) as new_orgs,
               count(*) filter (where om.reactivated) as reactivated_orgs,
               count(*) filter (where om.churned and om.mrr_start > 0) as churned_orgs
          from org_months om
         group by om.month
    )
    select m.month,
           m.month_start,
           round(coalesce(t.mrr_start, 0), 4),
           round(coalesce(t.new_mrr, 0), 4),
           round(coalesce(t.reactivation_mrr, 0), 4),
           round(coalesce(t.expansion_mrr, 0), 4),
           round(coalesce(t.contraction_mrr, 0), 4),
           round(coalesce(t.churned_mrr, 0), 4),
           round(coalesce(t.new_mrr + t.reactivation_mrr + t.expansion_mrr - t.contraction_mrr - t.churned_mrr, 0), 4),
           round(coalesce(t.mrr_end, 0), 4),
           round(12 * coalesce(t.mrr_end, 0), 4),
           coalesce(t.paying_start, 0),
           coalesce(t.paying_end, 0),
           coalesce(t.new_orgs, 0),
           coalesce(t.reactivated_orgs, 0),
           coalesce(t.churned_orgs, 0),
           case when t.paying_start > 0 then round(100.0 * t.churned_orgs / t.paying_start, 2) end
      from months m
      left join totals t on t.month = m.month
     order by m.month;
$$;

comment on function system_mrr_months(text, date, date, timestamptz, integer) is
    'system_mrr_months(p_actor_id, p_first_month, p_last_month, p_as_of, p_months): one row per calendar month of the range '
    '(see analytics_month_range; default the 12 months up to p_as_of''s), oldest first: MRR at its start and end, '
    'ARR at its end (12 x MRR), the MRR moved by new, reactivated, expanding, contracting and churned '
    'organizations (each positive) and net new MRR; paying organizations at its start and end, how many were new, '
    'reactivated and churned (of those paying at its start) and the logo churn rate (percent, 2 decimals; null '
    'when none paid at the start). Rules: top of this file. System admins and the operator only. Raises CB002, '
    'CB008, CB009 (bad range); locks nothing.';


-- analytics_credit_months(p_actor_id, p_first_month, p_last_month, p_as_of, p_org_id,
-- p_months): one row per calendar month of the range (see
-- analytics_month_range),
-- oldest first, for one organization or (p_org_id null) all of them: credits
-- sold and the revenue from them, credits granted, credits consumed and the
-- requests that consumed them, credits expired. Rules: top of this file.
-- Reads history through its (org_id, created_at) index and attribution
-- through its (org_id, created_at) index. Authorized by
-- ledger_authorize_scope (one organization: its admins; all: system admins).
-- Raises CB002, CB008, CB009 (bad range), locks
-- nothing.
create function analytics_credit_months(
    p_actor_id text,
    p_first_month date default null,
    p_last_month date default null,
    p_as_of timestamptz default now(),
    p_org_id text default null,
    p_months integer default 12
)
returns table (
    month date,
    month_start timestamptz,
    credits_sold numeric,
    revenue numeric,
    credits_granted numeric,
    credits_consumed numeric,
    requests bigint,
    credits_expired numeric
)
language sql
stable
as $$
    select ledger_authorize_scope(p_actor_id, p_org_id);
    with months as (
        select * from analytics_month_range(p_first_month, p_last_month, p_as_of, p_months)
    ),
    bounds as (
        -- to the end of the last month, or just past p_as_of in the current one
        select min(month_start) as since,
               least(max(month_end), p_as_of + interval '1 microsecond') as until
          from months
    ),
    orgs as (
        select o.id from organizations o where p_org_id is null or o.id = p_org_id
    ),
    history as (
        select date_trunc('month', h.created_at at time zone 'UTC')::date as month,
               sum(h.credits) filter (where h.credits > 0 and h.amount > 0) as sold,
               sum(h.amount) filter (where h.credits > 0 and h.amount > 0) as revenue,
               sum(h.credits) filter (where h.credits > 0 and h.amount = 0) as granted,
               -sum(h.credits) filter (where h.event_type = 'credit_expiry') as expired
          from bounds b
          cross join orgs o
          join org_billing_history h
            on h.org_id = o.id and h.created_at >= b.since and h.created_at < b.until
         group by 1
    ),
    usage as (
        select date_trunc('month', c.created_at at time zone 'UTC')::date as month,
               sum(c.credits_used) as consumed,
               count(*) as requests
          from bounds b
          cross join orgs o
          join credit_usage_attribution c
            on c.org_id = o.id and c.created_at >= b.since and c.created_at < b.until
         group by 1
    )
    select m.month, m.month_start,
           coalesce(h.sold, 0), coalesce(h.revenue, 0), coalesce(h.granted, 0),
           coalesce(u.consumed, 0), coalesce(u.requests, 0), coalesce(h.expired, 0)
      from months m
      left join history h on h.month = m.month
      left join usage u on u.month = m.month
     order by m.month;
$$;

comment on function analytics_credit_months(text, date, date, timestamptz, text, integer) is
    'analytics_credit_months(p_actor_id, p_first_month, p_last_month, p_as_of, p_org_id, p_months): one row per calendar '
    'month of the range (see analytics_month_range), oldest first, for one organization or (p_org_id null) all of '
    'them: credits sold and the revenue from them, credits granted, credits consumed and the requests that '
    'consumed them, credits expired. Rules: top of this file. Reads history through its (org_id, created_at) '
    'index and attribution through its (org_id, created_at) index. Authorized by ledger_authorize_scope (one '
    'organization: its admins; all: system admins). Raises CB002, CB008, CB009 (bad range); locks nothing.';


-- org_runway(p_org_id, p_actor_id, p_as_of): one row for the organization: the credits it
-- has left now, credits used in the 30 days up to p_as_of, its burn rate per
-- day, its runway in days and the moment its credits run out at that rate
-- (both null when nothing was used; the moment also past 100 years). Rules: top of this file. Reads
-- attribution through its (org_id, created_at) index. p_actor_id: an admin
-- of the organization, a system admin or the operator. Raises CB002, CB008;
-- locks nothing.
create function org_runway(p_org_id text, p_actor_id text, p_as_of timestamptz default now())
returns table (
    org_id text,
    remaining_credits numeric,
    credits_used_30d numeric,
    burn_per_day numeric,
    runway_days numeric,
    runs_out_at timestamptz
)
language sql
stable
as $$
    select ledger_require_org(p_org_id);
    select ledger_authorize(p_actor_id, p_org_id, 'admin');
    select o.id, r.remaining, u.used, analytics_burn_per_day(u.used),
           analytics_runway_days(r.remaining, u.used),
           -- a runway of more than 100 years has no date worth showing
           case when u.used > 0 and greatest(r.remaining, 0) * 30 / u.used <= 36500
                then p_as_of + make_interval(secs => (greatest(r.remaining, 0) * 30 * 86400 / u.used)::double precision)
           end
      from organizations o
      cross join lateral (select analytics_pool_remaining(o.id) as remaining) r
      cross join lateral (
            select coalesce(sum(c.credits_used), 0) as used
              from credit_usage_attribution c
             where c.org_id = o.id
               and c.created_at >= p_as_of - interval '30 days'
               and c.created_at <= p_as_of
           ) u
     where o.id = p_org_id;
$$;

comment on function org_runway(text, text, timestamptz) is
    'org_runway(p_org_id, p_actor_id, p_as_of): one row for the organization: the credits it has left now, '
    'credits used in the 30 days up to p_as_of, its burn rate per day, its runway in days and the moment its '
    'credits run out at that rate (both null when nothing was used; the moment also past 100 years). Rules: top of '
    'this file. Reads attribution through its (org_id, created_at) index. p_actor_id: an admin of the '
    'organization, a system admin or the operator. Raises CB002, CB008; locks nothing.';
