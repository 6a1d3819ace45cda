-- Subscriptions: an organization pays a monthly (or yearly) plan version.
-- Four files, one subject each: 068_subscription_terms.sql (this one: the
-- rules below, the row defaults, period and proration arithmetic, plan
-- checks and prices), 069_subscription_events.sql (the history rows a
-- change writes and reads), 070_subscription_engine.sql (the renewal
-- engine: what falls due, included credits on a change) and
-- 071_subscription_commands.sql (create, change, preview, schedule, cancel,
-- reactivate, renew, status).
--
-- At most one live subscription (trialing, active or past_due) per
-- organization; a canceled one stays as history. A subscription pays one
-- version of its plan (072_plans.sql): price_amount is that version's monthly
-- price, twelve times it when billed yearly.
--
-- Periods follow the organization's billing calendar (015_calendar.sql): a
-- monthly period is one calendar period, a yearly one twelve. A subscription
-- started inside a period has a first, shorter period up to the next boundary
-- (twelve boundaries on, when yearly), invoiced pro rata. Proration divides
-- exactly, in seconds, by the full calendar period
-- [current_period_full_start, current_period_end); money rounds to cents.
--
-- What happens when (renew_subscription applies what is due, in time order):
--   * create: 'trialing' until trial_ends_at when the plan version has a
--     trial, the subscription starts now and the organization never had a
--     subscription (a trial is once per organization, ever; only a system
--     admin or the operator may force one); otherwise 'active' with an
--     invoice for its first period.
--   * trial end: 'active', invoice for the rest of the period (or, when a
--     cancel at period end is pending, canceled at the trial end).
--   * period boundary: a pending cancel applies (no invoice); else a
--     scheduled change applies, else the subscription moves to its plan's
--     version in force at the boundary; then the next period starts with one
--     'invoice' row (external_ref 'subscription-<number>/period-<start>').
--   * change plan now: credit for the unused part of the old price, charge
--     for the new, over the rest of the current period, as the change row's
--     amount (charge - credit; negative: owed to the organization).
--   * cancel now: credit for the unused part of the period (active or past
--     due; a trial was not charged); cancel at period end: the subscription
--     stays (and counts in MRR) until its period end.
--   * included credits (the period job grants them at each period start):
--     earned in proportion to the time on the plan. A change or cancel now
--     takes back the part of the period's included credits not earned yet
--     and not spent, grants the new plan's pro rata for the rest of the
--     period, and, when more were spent than earned, withholds the refund
--     (the credit above) for the spent-above-share credits at the list price
--     of $0.001, down to 0 (subscription_included_change). So neither a
--     cancel nor a round trip through a bigger plan leaves both the money and
--     the credits. Changes and cancels at period end change nothing mid-period.
--   * set_subscription_status (the external billing system's webhooks):
--     payment failed / received, canceled with no credit.
--
-- Only a trusted caller (a system admin, the operator) dates a change or a
-- subscription in the past (subscription_check_dated); an org admin's
-- change happens now.
--
-- Every change writes an org_billing_history row (credits 0) and, unless it is
-- an invoice, an audit_log row. Subscription history rows carry, in metadata:
-- subscription_id, plan, plan_version, billing_cycle, price_amount,
-- monthly_amount (price, or price / 12 when yearly), status, previous_status,
-- previous_plan, previous_plan_version, previous_price_amount, previous_mrr,
-- and mrr_after: what the organization contributes to MRR after the event
-- (monthly_amount while active or past_due, else 0). The latest such row at
-- or before a moment gives the organization's MRR, plan and status then.
--
-- Org admins may change their own organization's subscription, at most 5
-- changes an hour each (CB013; system admins and jobs are not limited).
-- Lock order: the organization's row FOR NO KEY UPDATE (serializes the
-- subscription changes of one organization; deductions, purchases and
-- memberships do not take it), then the acting org admin's advisory lock (the
-- rate limit), then the subscription row; a change or cancel now then takes
-- what the period job takes after the organization's row (the pool,
-- allocations in user id order, lots), so the two never deadlock.



-- organization_subscriptions_defaults(): trigger function (before insert):
-- fills what an integrator's plain INSERT leaves out: plan_version (the
-- version in force at created_at), number (the organization's next) and
-- current_period_full_start (current_period_start). Raises nothing.
create or replace function organization_subscriptions_defaults()
returns trigger
language plpgsql
as $$
begin
    if new.plan_version is null then
        new.plan_version := (select v.version from plan_versions v
                              where v.plan = new.plan
                              order by (v.effective_at <= new.created_at) desc,
                                       case when v.effective_at <= new.created_at then v.effective_at end desc,
                                       v.effective_at
                              limit 1);
    end if;
    if new.number is null then
        new.number := (select coalesce(max(number), 0) + 1 from organization_subscriptions where org_id = new.org_id);
    end if;
    new.current_period_full_start := coalesce(new.current_period_full_start, new.current_period_start);
    return new;
end;
$$;

comment on function organization_subscriptions_defaults() is
    'organization_subscriptions_defaults(): trigger function (before insert): fills what an integrator''s plain '
    'INSERT leaves out: plan_version (the version in force at created_at), number (the organization''s next) and '
    'current_period_full_start (current_period_start). Raises nothing.';


create or replace trigger organization_subscriptions_defaults
    before insert on organization_subscriptions
    for each row execute function organization_subscriptions_defaults();


-- subscription_period_at(p_org_id, p_billing_cycle, p_at): the full billing
-- period holding p_at for this cycle: the calendar period's start and the
-- boundary one (monthly) or twelve (yearly) calendar periods later.
-- Raises CB002 for an unknown organization.
create or replace function subscription_period_at(p_org_id text, p_billing_cycle text, p_at timestamptz)
returns table (full_start timestamptz, period_end timestamptz)
language plpgsql
stable
as $$
begin
    select b.period_start, b.period_end into full_start, period_end from org_billing_period(p_org_id, p_at) b;
    if p_billing_cycle = 'yearly' then
        for i in 2..12 loop
            select b.period_end into period_end from org_billing_period(p_org_id, period_end) b;
        end loop;
    end if;
    return next;
end;
$$;

comment on function subscription_period_at(text, text, timestamptz) is
    'subscription_period_at(p_org_id, p_billing_cycle, p_at): the full billing period holding p_at for this '
    'cycle: the calendar period''s start and the boundary one (monthly) or twelve (yearly) calendar periods '
    'later. Raises CB002 for an unknown organization.';


-- subscription_proration(p_old_price, p_new_price, p_full_start,
-- p_period_end, p_at): what a change at p_at inside the period
-- [p_full_start, p_period_end) is worth: the seconds left and in the full
-- period, the credit for the unused part of p_old_price and the charge for
-- the same part of p_new_price (each rounded to cents), and net = charge -
-- credit. Exact NUMERIC arithmetic. Raises nothing.
create or replace function subscription_proration(
    p_old_price numeric,
    p_new_price numeric,
    p_full_start timestamptz,
    p_period_end timestamptz,
    p_at timestamptz
)
returns table (seconds_left numeric, seconds_full numeric, credit numeric, charge numeric, net numeric)
language sql
immutable
as $$
    select s.seconds_left, s.seconds_full, c.credit, c.charge, c.charge - c.credit
      from (select extract(epoch from p_period_end) - extract(epoch from p_at) as seconds_left,
                   extract(epoch from p_period_end) - extract(epoch from p_full_start) as seconds_full) s
      cross join lateral (
            select round(p_old_price * s.seconds_left / s.seconds_full, 2) as credit,
                   round(p_new_price * s.seconds_left / s.seconds_full, 2) as charge
           ) c;
$$;

comment on function subscription_proration(numeric, numeric, timestamptz, timestamptz, timestamptz) is
    'subscription_proration(p_old_price, p_new_price, p_full_start, p_period_end, p_at): what a change at p_at '
    'inside the period [p_full_start, p_period_end) is worth: the seconds left and in the full period, the credit '
    'for the unused part of p_old_price and the charge for the same part of p_new_price (each rounded to cents), '
    'and net = charge - credit. Exact NUMERIC arithmetic. Raises nothing.';


-- ledger_require_plan(p_plan): returns the plan's row.
-- Raises CB009 for a missing or unknown plan code, naming the known ones.
create or replace function ledger_require_plan(p_plan text)
returns plans
language plpgsql
stable
as $$
declare
    v_plan plans;
begin
    select * into v_plan from plans where code = p_plan;
    if not found then
        raise exception using errcode = 'CB009',
            message = format('Unknown plan %L: choose one of %s.', left(p_plan, 80),
                             (select string_agg(code, ', ' order by sort_order, code) from plans
                               where retired_at is null));
    end if;
    return v_plan;
end;
$$;

comment on function ledger_require_plan(text) is
    'ledger_require_plan(p_plan): returns the plan''s row. Raises CB009 for a missing or unknown plan code, '
    'naming the known ones.';


-- ledger_require_open_plan(p_plan): returns the plan's row. Raises CB009 for
-- an unknown plan, CB012 for a retired one (nobody may move to it).
create or replace function ledger_require_open_plan(p_plan text)
returns plans
language plpgsql
stable
as $$
declare
    v_plan plans := ledger_require_plan(p_plan);
begin
    if v_plan.retired_at is not null then
        raise exception using errcode = 'CB012',
            message = format('Plan %s (%s) is retired: choose one of %s.', v_plan.name, v_plan.code,
                             (select string_agg(code, ', ' order by sort_order, code) from plans
                               where retired_at is null));
    end if;
    return v_plan;
end;
$$;

comment on function ledger_require_open_plan(text) is
    'ledger_require_open_plan(p_plan): returns the plan''s row. Raises CB009 for an unknown plan, CB012 for a '
    'retired one (nobody may move to it).';


-- subscription_cycle_price(p_plan, p_at, p_billing_cycle): the version of
-- plan p_plan in force at p_at, and the price a subscription on it pays per
-- period (monthly price, x12 when yearly). Raises nothing.
create or replace function subscription_cycle_price(p_plan text, p_at timestamptz, p_billing_cycle text)
returns table (version integer, price numeric)
language plpgsql
stable
as $$
begin
    -- plpgsql: plan_version_at is created after this file (072_plans.sql)
    return query select v.version, v.monthly_price * case when p_billing_cycle = 'yearly' then 12 else 1 end
                   from plan_version_at(p_plan, p_at) v;
end;
$$;

comment on function subscription_cycle_price(text, timestamptz, text) is
    'subscription_cycle_price(p_plan, p_at, p_billing_cycle): the version of plan p_plan in force at p_at, and '
    'the price a subscription on it pays per period (monthly price, x12 when yearly). Raises nothing.';


-- subscription_withhold(p_credit, p_overspent): the refund left of p_credit
-- (dollars) once the included credits used above the earned share
-- (p_overspent credits) are paid for at the list price (1 credit = $0.001),
-- rounded to cents, never below 0: the refund is withheld for that part.
-- Raises nothing.
create or replace function subscription_withhold(p_credit numeric, p_overspent numeric)
returns numeric
language sql
immutable
as $$
    select greatest(p_credit - round(coalesce(p_overspent, 0) * 0.001, 2), 0);
$$;

comment on function subscription_withhold(numeric, numeric) is
    'subscription_withhold(p_credit, p_overspent): the refund left of p_credit (dollars) once the included '
    'credits used above the earned share (p_overspent credits) are paid for at the list price (1 credit = '
    '$0.001), rounded to cents, never below 0: the refund is withheld for that part. Raises nothing.';
