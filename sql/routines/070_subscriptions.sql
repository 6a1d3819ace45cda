-- Subscriptions: an organization pays a monthly (or yearly) plan version.
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


drop function if exists subscription_period_bounds(timestamptz, text, timestamptz);

drop function if exists ledger_subscription_event(organization_subscriptions, text, text, text, text, timestamptz);

drop function if exists create_subscription(text, text, text, text, timestamptz);

drop function if exists schedule_subscription_change(text, text, text);

drop function if exists reactivate_subscription(text, text);


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


-- ledger_subscription_event(p_subscription, p_before, p_event_type,
-- p_description, p_actor_id, p_occurred_at, p_amount, p_external_ref,
-- p_extra): appends the subscription's org_billing_history row (metadata as
-- described at the top of this file, plus p_extra) dated p_occurred_at;
-- p_before is the subscription before the event (null: it is new). With an
-- external_ref already recorded for the organization it writes nothing.
-- Locks nothing.
create or replace function ledger_subscription_event(
    p_subscription organization_subscriptions,
    p_before organization_subscriptions,
    p_event_type text,
    p_description text,
    p_actor_id text,
    p_occurred_at timestamptz,
    p_amount numeric default 0,
    p_external_ref text default null,
    p_extra jsonb default '{}'
)
returns void
language plpgsql
as $$
declare
    v_monthly numeric := round(case when p_subscription.billing_cycle = 'yearly'
                                    then p_subscription.price_amount / 12
                                    else p_subscription.price_amount end, 4);
    v_previous_monthly numeric := round(case when p_before.billing_cycle = 'yearly'
                                             then p_before.price_amount / 12
                                             else p_before.price_amount end, 4);
begin
    insert into org_billing_history (org_id, event_type, amount, description, metadata, external_ref,
                                     created_by, created_at)
    values (p_subscription.org_id, p_event_type, p_amount, p_description,
            jsonb_build_object(
                'subscription_id', p_subscription.id,
                'plan', p_subscription.plan,
                'plan_version', p_subscription.plan_version,
                'billing_cycle', p_subscription.billing_cycle,
                'price_amount', p_subscription.price_amount,
                'monthly_amount', v_monthly,
                'status', p_subscription.status,
                'previous_status', p_before.status,
                'previous_plan', p_before.plan,
                'previous_plan_version', p_before.plan_version,
                'previous_price_amount', p_before.price_amount,
                'previous_mrr', case when p_before.status in ('active', 'past_due') then v_previous_monthly
                                     when p_before.status is not null then 0 end,
                'mrr_after', case when p_subscription.status in ('active', 'past_due') then v_monthly else 0 end)
            || coalesce(p_extra, '{}'),
            p_external_ref, p_actor_id, p_occurred_at)
    on conflict (org_id, external_ref) where external_ref is not null do nothing;
end;
$$;


-- subscription_invoice(p_subscription, p_from): appends the 'invoice' row of
-- the subscription's current period for the part [p_from, period end) it
-- pays: price_amount x that part's seconds / the full period's, in cents,
-- dated p_from. Idempotent: its external_ref names the subscription's number
-- and the period's start. Locks nothing.
create or replace function subscription_invoice(p_subscription organization_subscriptions, p_from timestamptz)
returns void
language plpgsql
as $$
declare
    v_amount numeric;
begin
    select p.charge into v_amount
      from subscription_proration(0, p_subscription.price_amount, p_subscription.current_period_full_start,
                                  p_subscription.current_period_end, p_from) p;
    perform ledger_subscription_event(
        p_subscription, p_subscription, 'invoice',
        format('Invoice: %s, %s to %s%s', (select name from plans where code = p_subscription.plan),
               ledger_time_text(p_from), ledger_time_text(p_subscription.current_period_end),
               case when p_from > p_subscription.current_period_full_start then ' (part of a period)' else '' end),
        null, p_from, v_amount,
        format('subscription-%s/period-%s', p_subscription.number,
               to_char(p_subscription.current_period_start at time zone 'UTC', 'YYYYMMDD"T"HH24MISS"Z"')),
        jsonb_build_object('period_start', p_subscription.current_period_start,
                           'period_end', p_subscription.current_period_end,
                           'billed_from', p_from));
end;
$$;


-- subscription_check_dated(p_actor_id, p_org_id, p_at, p_what): returns
-- nothing. Only a trusted caller dates a subscription change: when p_at is
-- given and is not the transaction's now, p_actor_id must be a system admin
-- (null: the operator, ledger_authorize decides on which connection). An org
-- admin's change happens now. Raises CB002 (unknown actor), CB008.
create or replace function subscription_check_dated(p_actor_id text, p_org_id text, p_at timestamptz, p_what text)
returns void
language plpgsql
stable
as $$
begin
    if p_at is null or p_at = now() then
        return;
    end if;
    if p_actor_id is not null then
        perform ledger_require_user(p_actor_id, 'Acting user');
        if not coalesce((select is_system_admin from users where id = p_actor_id), false) then
            raise exception using errcode = 'CB008',
                message = format('%s (%s) can be given by a system admin or the operator only: leave it empty '
                                 'and the change happens now.', p_what, ledger_time_text(p_at));
        end if;
    end if;
    perform ledger_authorize(p_actor_id, p_org_id, 'system_admin');
end;
$$;


-- subscription_check_rate(p_actor_id): returns nothing. An org admin (not a
-- system admin, not a job) may make at most 5 subscription changes (audit
-- actions 'subscription.*') in any hour, across organizations. Takes the
-- actor's transaction-level advisory lock first, so two parallel calls cannot
-- both be the 5th (read committed: the count is a new snapshot after the
-- lock). Raises CB013 saying when the actor may try again.
create or replace function subscription_check_rate(p_actor_id text)
returns void
language plpgsql
as $$
declare
    v_count integer;
    v_oldest timestamptz;
begin
    if p_actor_id is null or coalesce((select is_system_admin from users where id = p_actor_id), false) then
        return;
    end if;
    perform pg_advisory_xact_lock(hashtextextended('subscription-changes:' || p_actor_id, 0));
    select count(*), min(created_at) into v_count, v_oldest
      from (select a.created_at
              from audit_log a
             where a.actor_id = p_actor_id
               and a.action like 'subscription.%'
               and a.created_at > now() - interval '1 hour'
             order by a.created_at desc
             limit 5) recent;
    if v_count >= 5 then
        raise exception using errcode = 'CB013',
            message = format('Too many subscription changes: an organization admin may make 5 an hour. '
                             'Try again after %s.', ledger_time_text(v_oldest + interval '1 hour'));
    end if;
end;
$$;


-- subscription_end_at(p_s, p_at, p_why, p_audit): returns the subscription
-- canceled at p_at (by the renewal: a pending cancel reached its date), with
-- its history row saying p_why and an audit row carrying p_audit. The caller
-- holds the locks. Raises nothing.
create or replace function subscription_end_at(
    p_s organization_subscriptions,
    p_at timestamptz,
    p_why text,
    p_audit jsonb
)
returns organization_subscriptions
language plpgsql
as $$
declare
    v_s organization_subscriptions;
begin
    update organization_subscriptions
       set status = 'canceled', canceled_at = p_at, status_changed_at = p_at,
           cancel_at_period_end = false, updated_at = now()
     where org_id = p_s.org_id and id = p_s.id
    returning * into v_s;
    perform ledger_subscription_event(v_s, p_s, 'subscription_canceled',
        format('Subscription to %s ended %s, as asked', (select name from plans where code = v_s.plan), p_why),
        null, p_at);
    perform ledger_audit(v_s.org_id, null, 'subscription.canceled', 'subscription', v_s.id,
                         jsonb_build_object('plan', v_s.plan, 'occurred_at', p_at) || p_audit);
    return v_s;
end;
$$;


-- subscription_trial_end_at(p_s, p_at): returns the trialing subscription
-- made active at p_at, with its history and audit rows (no invoice: the
-- caller writes it). The caller holds the locks. Raises nothing.
create or replace function subscription_trial_end_at(p_s organization_subscriptions, p_at timestamptz)
returns organization_subscriptions
language plpgsql
as $$
declare
    v_s organization_subscriptions;
begin
    update organization_subscriptions
       set status = 'active', status_changed_at = p_at, updated_at = now()
     where org_id = p_s.org_id and id = p_s.id
    returning * into v_s;
    perform ledger_subscription_event(v_s, p_s, 'subscription_trial_ended',
        format('Trial of %s ended: the subscription is active', (select name from plans where code = v_s.plan)),
        null, p_at);
    perform ledger_audit(v_s.org_id, null, 'subscription.trial_ended', 'subscription', v_s.id,
                         jsonb_build_object('plan', v_s.plan, 'occurred_at', p_at));
    return v_s;
end;
$$;


-- subscription_proration_metadata(p_s, p_p): the 'proration' metadata of a
-- change or cancel row: the period, and p_p's seconds, credit and charge
-- (a subscription_proration row). Raises nothing.
create or replace function subscription_proration_metadata(p_s organization_subscriptions, p_p record)
returns jsonb
language plpgsql
stable
as $$
begin
    return jsonb_build_object('proration', jsonb_build_object(
        'period_start', p_s.current_period_start, 'period_end', p_s.current_period_end,
        'full_period_start', p_s.current_period_full_start,
        'seconds_left', p_p.seconds_left, 'seconds_full', p_p.seconds_full,
        'credit', p_p.credit, 'charge', p_p.charge));
end;
$$;


-- subscription_included_change(p_org_id, p_at, p_new_included, p_why):
-- returns (taken_back, overspent, granted): what a change now does to the
-- period's included credits (the rule, README "Included credits"). Included
-- credits are earned in proportion to the time on the plan: of a live
-- 'plan_included' lot granted for [start, end), the part (end - p_at) /
-- (end - start) is not earned at p_at (rounded down to 6 decimals). First the
-- organization's due period work up to p_at is done (the period job's own
-- billing_periods_process_org, so a late job cannot grant the old plan's
-- credits after the change) and its lots settled. Then, per live included
-- lot, the unearned part still unspent is taken back: from the pool's
-- unallocated credits first, then from members' unused allocations in
-- proportion (ledger_take_back_unused), written as a 'credit_expiry' history
-- row dated p_at (metadata.reason p_why, taken_back true; written also when
-- nothing could be taken, so that the lot counts as settled: it stopped
-- earning with its plan) and as the lot's expired credits; overspent is the
-- unearned part that could not be taken back (already spent, or held by
-- calls in flight). Then, outside the
-- baseline period, the new plan's p_new_included credits are granted pro
-- rata for the rest of the current period as a 'credit_grant' row (source
-- 'plan_included') dated p_at and expiring at the period end.
-- The caller holds the organization's row lock; this locks the pool, then
-- allocations in user id order, then lots. Raises XX000 (lots cannot cover
-- usage: see ledger_settle_lots).
create or replace function subscription_included_change(
    p_org_id text,
    p_at timestamptz,
    p_new_included numeric,
    p_why text
)
returns table (taken_back numeric, overspent numeric, granted numeric)
language plpgsql
as $$
declare
    v_lot record;
    v_unearned numeric;
    v_want numeric;
    v_unallocated numeric;
    v_from_members numeric;
    v_taken numeric;
    v_total numeric;
    v_period billing_periods;
begin
    taken_back := 0;
    overspent := 0;
    granted := 0;
    perform billing_periods_process_org(null, p_org_id, p_at);
    for v_lot in
        select l.id, l.credits, l.consumed_credits, l.expired_credits, l.expires_at,
               coalesce(h.created_at, l.granted_at) as lot_start  -- the grant row is dated its period's start
          from credit_lots l
          left join org_billing_history h on h.org_id = l.org_id and h.id = l.history_id
         where l.org_id = p_org_id and l.source = 'plan_included' and l.expired_at is null
           and l.expires_at > p_at
           -- a lot settled by an earlier change stopped earning then: nothing more to take back
           and not exists (select 1 from org_billing_history t
                            where t.org_id = l.org_id and t.event_type = 'credit_expiry'
                              and t.metadata ->> 'taken_back' = 'true'
                              and t.metadata ->> 'lot_id' = l.id::text)
         order by l.expires_at, l.id
    loop
        v_unearned := case when v_lot.lot_start >= p_at then v_lot.credits
                           else trunc(v_lot.credits * (extract(epoch from v_lot.expires_at) - extract(epoch from p_at))
                                      / (extract(epoch from v_lot.expires_at) - extract(epoch from v_lot.lot_start)), 6)
                      end;
        v_want := least(v_unearned, v_lot.credits - v_lot.consumed_credits - v_lot.expired_credits);
        v_taken := 0;
        v_from_members := 0;
        if v_want > 0 then
            select total_credits - allocated_credits into v_unallocated from credit_pools where org_id = p_org_id;
            v_taken := least(v_want, v_unallocated);
            if v_want > v_unallocated then
                v_from_members := ledger_take_back_unused(p_org_id, v_want - v_unallocated, v_lot.id);
                v_taken := v_unallocated + v_from_members;
            end if;
        end if;
        overspent := overspent + v_unearned - v_taken;
        continue when v_unearned <= 0;
        perform 1 from credit_lots where org_id = p_org_id and id = v_lot.id for update;
        update credit_pools
           set total_credits = total_credits - v_taken, updated_at = now()
         where org_id = p_org_id
        returning total_credits into v_total;
        insert into org_billing_history
            (org_id, event_type, credits, description, metadata, total_credits_after, created_at)
        values (p_org_id, 'credit_expiry', -v_taken,
                format('%s included credits not earned yet taken back (%s): of %s granted, %s are earned '
                       'by the time on the plan%s', ledger_amount_text(v_taken),
                       case p_why when 'cancel' then 'subscription canceled' else 'plan changed' end,
                       ledger_amount_text(v_lot.credits), ledger_amount_text(v_lot.credits - v_unearned),
                       case when v_unearned > v_taken
                            then format('; %s more were used already', ledger_amount_text(v_unearned - v_taken))
                            else '' end),
                jsonb_build_object('lot_id', v_lot.id, 'source', 'plan_included', 'reason', p_why,
                                   'taken_back', true, 'unearned', v_unearned, 'expires_at', v_lot.expires_at,
                                   'taken_from_members', v_from_members, 'overspent', v_unearned - v_taken),
                v_total, p_at);
        update credit_lots
           set expired_credits = expired_credits + v_taken
         where org_id = p_org_id and id = v_lot.id;
        perform ledger_audit(p_org_id, null, 'credits.included_taken_back', 'organization', p_org_id,
                             jsonb_build_object('lot_id', v_lot.id, 'credits', v_taken, 'unearned', v_unearned,
                                                'taken_from_members', v_from_members, 'reason', p_why));
        taken_back := taken_back + v_taken;
    end loop;

    select * into v_period from billing_periods where org_id = p_org_id order by period_start desc limit 1;
    if coalesce(p_new_included, 0) > 0 and found and not v_period.is_baseline
       and v_period.period_end > p_at then
        granted := trunc(p_new_included
                         * (extract(epoch from v_period.period_end) - extract(epoch from greatest(p_at, v_period.period_start)))
                         / (extract(epoch from v_period.period_end) - extract(epoch from v_period.period_start)), 6);
        if granted > 0 then
            update credit_pools
               set total_credits = total_credits + granted, updated_at = now()
             where org_id = p_org_id
            returning total_credits into v_total;
            insert into org_billing_history
                (org_id, event_type, credits, description, metadata, total_credits_after, credits_expire_at,
                 created_at)
            values (p_org_id, 'credit_grant', granted,
                    format('%s credits included in the new plan for the rest of the period (%s of %s)',
                           ledger_amount_text(granted), ledger_amount_text(granted),
                           ledger_amount_text(p_new_included)),
                    jsonb_build_object('source', 'plan_included', 'period_start', greatest(p_at, v_period.period_start),
                                       'period_end', v_period.period_end, 'full_period_start', v_period.period_start,
                                       'plan_included_credits', p_new_included, 'reason', p_why),
                    v_total, v_period.period_end, greatest(p_at, v_period.period_start));
        end if;
    end if;
    return next;
end;
$$;


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


-- subscription_included_metadata(p_ic, p_withheld): the 'included' metadata
-- of a change or cancel row: what subscription_included_change did
-- (taken_back, overspent, granted credits) and the refund withheld for the
-- overspent credits (dollars). Raises nothing.
create or replace function subscription_included_metadata(p_ic record, p_withheld numeric)
returns jsonb
language plpgsql
stable
as $$
begin
    return jsonb_build_object('included', jsonb_build_object(
        'taken_back', p_ic.taken_back, 'overspent', p_ic.overspent, 'granted', p_ic.granted,
        'refund_withheld', p_withheld));
end;
$$;


-- subscription_included_text(p_ic, p_withheld): the words a change or cancel
-- row's description adds about included credits ('' when nothing moved).
-- Raises nothing.
create or replace function subscription_included_text(p_ic record, p_withheld numeric)
returns text
language plpgsql
stable
as $$
begin
    return coalesce('; ' || nullif(concat_ws('; ',
        case when p_ic.taken_back > 0
             then format('%s unearned included credits taken back', ledger_amount_text(p_ic.taken_back)) end,
        case when p_withheld > 0
             then format('$%s of the refund withheld for %s included credits used above the earned share',
                         p_withheld, ledger_amount_text(p_ic.overspent)) end,
        case when p_ic.granted > 0
             then format('%s included credits of the new plan for the rest of the period',
                         ledger_amount_text(p_ic.granted)) end), ''), '');
end;
$$;

-- subscription_advance(p_org_id, p_until): returns how many history rows it
-- wrote. Applies to the organization's live subscription everything due up
-- to p_until, in time order (see the top of this file): trial end, then at
-- each period boundary a pending cancel, a scheduled change or the move to
-- the version in force, and the next period with its invoice. The caller
-- holds the organization's row lock; this locks the subscription row.
-- Raises nothing of its own.
create or replace function subscription_advance(p_org_id text, p_until timestamptz)
returns integer
language plpgsql
as $$
declare
    v_s organization_subscriptions;
    v_before organization_subscriptions;
    v_at timestamptz;
    v_version integer;
    v_price numeric;
    v_full_start timestamptz;
    v_end timestamptz;
    v_rows integer := 0;
    v_plan_name text;
begin
    select * into v_s from organization_subscriptions
     where org_id = p_org_id and status in ('trialing', 'active', 'past_due')
       for update;
    if not found then
        return 0;
    end if;
    loop
        v_before := v_s;
        v_plan_name := (select name from plans where code = v_s.plan);
        if v_s.status = 'trialing' and v_s.trial_ends_at < v_s.current_period_end
           and v_s.trial_ends_at <= p_until then
            -- the trial ends inside the current period
            v_at := v_s.trial_ends_at;
            if v_s.cancel_at_period_end then
                perform subscription_end_at(v_s, v_at, 'with its trial', '{"at_trial_end": true}');
                return v_rows + 1;
            end if;
            v_s := subscription_trial_end_at(v_s, v_at);
            perform subscription_invoice(v_s, v_at);
            v_rows := v_rows + 2;
            continue;
        end if;
        exit when v_s.current_period_end > p_until;

        -- the boundary at the end of the current period
        v_at := v_s.current_period_end;
        if v_s.cancel_at_period_end then
            perform subscription_end_at(v_s, v_at, 'at its period end', '{"at_period_end": true}');
            return v_rows + 1;
        end if;
        if v_s.scheduled_plan is not null then
            select c.version, c.price into v_version, v_price
              from subscription_cycle_price(v_s.scheduled_plan, v_at, v_s.billing_cycle) c;
            update organization_subscriptions
               set plan = scheduled_plan, plan_version = v_version, price_amount = v_price,
                   scheduled_plan = null, scheduled_by = null, scheduled_at = null, updated_at = now()
             where org_id = p_org_id and id = v_s.id
            returning * into v_s;
            perform ledger_subscription_event(v_s, v_before, 'subscription_plan_changed',
                format('Plan changed from %s to %s at the period end, as scheduled', v_plan_name,
                       (select name from plans where code = v_s.plan)),
                null, v_at, 0, null,
                jsonb_build_object('scheduled', true, 'scheduled_by', v_before.scheduled_by));
            perform ledger_audit(p_org_id, null, 'subscription.plan_changed', 'subscription', v_s.id,
                                 jsonb_build_object('from', v_before.plan, 'to', v_s.plan, 'scheduled', true,
                                                    'occurred_at', v_at));
            v_rows := v_rows + 1;
        else
            select c.version, c.price into v_version, v_price
              from subscription_cycle_price(v_s.plan, v_at, v_s.billing_cycle) c;
            if v_version > v_s.plan_version then
                update organization_subscriptions
                   set plan_version = v_version, price_amount = v_price, updated_at = now()
                 where org_id = p_org_id and id = v_s.id
                returning * into v_s;
                perform ledger_subscription_event(v_s, v_before, 'subscription_plan_version_changed',
                    format('%s moved to its version %s: $%s instead of $%s', v_plan_name, v_version,
                           trim_scale(v_price), trim_scale(v_before.price_amount)),
                    null, v_at);
                perform ledger_audit(p_org_id, null, 'subscription.plan_version_changed', 'subscription', v_s.id,
                                     jsonb_build_object('plan', v_s.plan, 'from_version', v_before.plan_version,
                                                        'to_version', v_version, 'occurred_at', v_at));
                v_rows := v_rows + 1;
            end if;
        end if;
        if v_s.status = 'trialing' and v_s.trial_ends_at <= v_at then
            v_s := subscription_trial_end_at(v_s, v_at);
            v_rows := v_rows + 1;
        end if;
        select p.full_start, p.period_end into v_full_start, v_end
          from subscription_period_at(p_org_id, v_s.billing_cycle, v_at) p;
        update organization_subscriptions
           set current_period_start = v_at, current_period_full_start = v_full_start,
               current_period_end = v_end, updated_at = now()
         where org_id = p_org_id and id = v_s.id
        returning * into v_s;
        if v_s.status in ('active', 'past_due') then
            perform subscription_invoice(v_s, v_at);
            v_rows := v_rows + 1;
        end if;
    end loop;
    return v_rows;
end;
$$;


-- subscription_last_event_at(p_subscription): when the subscription's latest
-- history row (a change, an invoice) is dated. Raises nothing.
create or replace function subscription_last_event_at(p_subscription organization_subscriptions)
returns timestamptz
language sql
stable
as $$
    select greatest(max(h.created_at), p_subscription.status_changed_at, p_subscription.created_at)
      from org_billing_history h
     where h.org_id = p_subscription.org_id
       and h.metadata ->> 'subscription_id' = p_subscription.id;
$$;


-- subscription_lock_live(p_org_id, p_actor_id, p_at, p_must_be_active):
-- returns the organization's live subscription, brought up to p_at.
-- Checks the organization (active, when p_must_be_active) and that the actor
-- is a system admin or an admin of it, locks the organization's row, applies
-- the rate limit, applies what was due up to p_at (subscription_advance), and
-- checks that p_at is not before the subscription's latest event.
-- Raises CB002 (unknown organization or actor, no live subscription), CB008,
-- CB009 (p_at before the latest event), CB011, CB013.
create or replace function subscription_lock_live(
    p_org_id text,
    p_actor_id text,
    p_at timestamptz,
    p_must_be_active boolean default true
)
returns organization_subscriptions
language plpgsql
as $$
declare
    v_s organization_subscriptions;
    v_last timestamptz;
begin
    perform ledger_require_org(p_org_id, p_must_be_active);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    perform 1 from organizations where id = p_org_id for no key update;
    perform subscription_check_rate(p_actor_id);
    perform subscription_advance(p_org_id, p_at);
    select * into v_s from organization_subscriptions
     where org_id = p_org_id and status in ('trialing', 'active', 'past_due')
       for update;
    if not found then
        raise exception using errcode = 'CB002',
            message = format('Organization %L has no live subscription: subscribe to a plan first.', p_org_id);
    end if;
    v_last := subscription_last_event_at(v_s);
    if v_last > p_at then
        raise exception using errcode = 'CB009',
            message = format('Change time (%s) is before the subscription''s last change (%s): '
                             'give a later time.', ledger_time_text(p_at), ledger_time_text(v_last));
    end if;
    return v_s;
end;
$$;


-- create_subscription(p_org_id, p_plan, p_actor_id, p_billing_cycle,
--                     p_started_at, p_trial): returns the new subscription's id.
-- Subscribes the organization to the version of a plan in force at the start
-- (monthly; twelve times its price when p_billing_cycle is 'yearly'), for the
-- calendar period holding the start (a first, shorter period when it starts
-- inside one). p_started_at (default now) dates a subscription entered after
-- the fact: its created_at and history row; it cannot be earlier than the end
-- of the organization's previous subscription; system admins and the
-- operator only. p_trial: null gives the version's trial (status
-- 'trialing', trial_ends_at = start + trial days, no invoice yet) when the
-- subscription starts now and the organization never subscribed before (a
-- trial is once per organization, ever); true from a system admin or the
-- operator forces it whatever the start; true from an org admin is the same
-- as null for a first subscription and refused after any earlier one; false
-- never. Without a trial it is 'active' with an invoice for its first period.
-- p_actor_id must be a system admin or an admin of the organization (null: a
-- trusted job); org admins are rate limited.
-- Locks the organization's row. Raises CB002 (unknown organization or
-- actor), CB008 (also: an org admin dating it or asking a second trial),
-- CB009 (unknown plan or billing cycle, bad p_started_at),
-- CB010 (the organization already has a live subscription), CB011
-- (organization suspended or closed), CB012 (retired plan), CB013.
create or replace function create_subscription(
    p_org_id text,
    p_plan text,
    p_actor_id text default null,
    p_billing_cycle text default 'monthly',
    p_started_at timestamptz default null,
    p_trial boolean default null
)
returns text
language plpgsql
as $$
declare
    v_plan plans;
    v_live organization_subscriptions;
    v_last_end timestamptz;
    v_started timestamptz := coalesce(p_started_at, now());
    v_version plan_versions;
    v_trial_ends timestamptz;
    v_subscription organization_subscriptions;
    v_trusted boolean;
begin
    v_plan := ledger_require_open_plan(p_plan);
    if p_billing_cycle is null or p_billing_cycle not in ('monthly', 'yearly') then
        raise exception using errcode = 'CB009',
            message = format('Billing cycle must be ''monthly'' or ''yearly'' (got %L).', left(p_billing_cycle, 80));
    end if;
    perform ledger_check_occurred_at(p_started_at, 'Subscription start');
    perform ledger_require_org(p_org_id, true);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    perform subscription_check_dated(p_actor_id, p_org_id, p_started_at, 'Subscription start');
    v_trusted := p_actor_id is null or coalesce((select is_system_admin from users where id = p_actor_id), false);
    if p_trial and v_trusted then
        perform ledger_authorize(p_actor_id, p_org_id, 'system_admin');  -- a forced trial: the operator or a system admin
    end if;

    perform 1 from organizations where id = p_org_id for no key update;
    perform subscription_check_rate(p_actor_id);

    select * into v_live from organization_subscriptions
     where org_id = p_org_id and status in ('trialing', 'active', 'past_due');
    if found then
        raise exception using errcode = 'CB010',
            message = format('Organization %L already has a live subscription (%s, %s): '
                             'cancel it before subscribing to another plan.',
                             p_org_id, v_live.plan, replace(v_live.status, '_', ' '));
    end if;
    select max(coalesce(canceled_at, status_changed_at, updated_at)) into v_last_end
      from organization_subscriptions where org_id = p_org_id;
    if v_last_end > v_started then
        raise exception using errcode = 'CB009',
            message = format('Subscription start (%s) is before the end of the organization''s previous '
                             'subscription (%s): give a later start.',
                             ledger_time_text(v_started), ledger_time_text(v_last_end));
    end if;

    if p_trial and not v_trusted and v_last_end is not null then
        raise exception using errcode = 'CB008',
            message = format('Organization %L had a subscription before: a free trial is once per organization, '
                             'and only a system admin may grant another. Subscribe without a trial.', p_org_id);
    end if;
    select * into v_version from plan_version_at(p_plan, v_started);
    if v_version.trial_days is not null
       and (case when p_trial and v_trusted then true
                 when p_trial is false then false
                 else p_started_at is null and v_last_end is null end) then
        v_trial_ends := v_started + v_version.trial_days * interval '1 day';
    end if;
    insert into organization_subscriptions
        (org_id, plan, plan_version, number, status, price_amount, billing_cycle, current_period_start,
         current_period_full_start, current_period_end, trial_ends_at, created_by, status_changed_at,
         created_at, updated_at)
    select p_org_id, v_plan.code, v_version.version,
           (select coalesce(max(number), 0) + 1 from organization_subscriptions where org_id = p_org_id),
           case when v_trial_ends is null then 'active' else 'trialing' end,
           v_version.monthly_price * case when p_billing_cycle = 'yearly' then 12 else 1 end,
           p_billing_cycle, v_started, b.full_start, b.period_end, v_trial_ends, p_actor_id, v_started,
           v_started, now()
      from subscription_period_at(p_org_id, p_billing_cycle, v_started) b
    returning * into v_subscription;

    perform ledger_subscription_event(
        v_subscription, null, 'subscription_created',
        format('Subscribed to %s at $%s a %s%s', v_plan.name, trim_scale(v_subscription.price_amount),
               case when p_billing_cycle = 'yearly' then 'year' else 'month' end,
               case when v_trial_ends is null then ''
                    else format(', free trial until %s', ledger_time_text(v_trial_ends)) end),
        p_actor_id, v_started);
    if v_trial_ends is null then
        perform subscription_invoice(v_subscription, v_started);
    end if;
    perform ledger_audit(p_org_id, p_actor_id, 'subscription.created', 'subscription', v_subscription.id,
                         jsonb_build_object('plan', v_plan.code, 'plan_version', v_version.version,
                                            'billing_cycle', p_billing_cycle,
                                            'price_amount', v_subscription.price_amount,
                                            'trial_ends_at', v_trial_ends)
                         || case when p_started_at is null then '{}'::jsonb
                                 else jsonb_build_object('occurred_at', p_started_at) end);
    return v_subscription.id;
end;
$$;


-- change_subscription_plan(p_org_id, p_plan, p_actor_id, p_occurred_at):
-- returns the change: the subscription, its new plan, version and price, the
-- current period, and the proration: seconds left of the full period, the
-- credit for the unused part of the old price, the charge for the same part
-- of the new one (cents), and amount = charge - credit, which is the history
-- row's amount (negative: owed to the organization; 0 during a trial, when
-- nothing was charged). Moves the live subscription to the version of p_plan
-- in force now (upgrade or downgrade) after applying what was due up to
-- p_occurred_at (default now; a past time from system admins and the
-- operator only); a scheduled change is dropped; a pending cancel stays.
-- The period's included credits follow the rule at the top of this file:
-- the old plan's unearned, unspent part is taken back, the new plan's are
-- granted pro rata, and the credit is reduced (withheld) for included
-- credits spent above the earned share: proration_credit and amount are
-- after that (the row's metadata.included has the figures).
-- p_actor_id must be a system admin or an admin of the organization (null: a
-- trusted job); org admins are rate limited.
-- Locks the organization's row, then the subscription, then the pool,
-- allocations and lots. Raises CB002, CB008 (also: an org admin giving a
-- time), CB009 (unknown plan, bad time), CB011, CB012 (retired plan, or
-- already on it), CB013.
create or replace function change_subscription_plan(
    p_org_id text,
    p_plan text,
    p_actor_id text default null,
    p_occurred_at timestamptz default null
)
returns table (
    subscription_id text,
    plan text,
    plan_version integer,
    price_amount numeric,
    period_start timestamptz,
    period_end timestamptz,
    seconds_left numeric,
    seconds_full numeric,
    proration_credit numeric,
    proration_charge numeric,
    amount numeric
)
language plpgsql
as $$
declare
    v_plan plans;
    v_at timestamptz := coalesce(p_occurred_at, now());
    v_before organization_subscriptions;
    v_s organization_subscriptions;
    v_version integer;
    v_price numeric;
    v_p record;
    v_ic record;
    v_refund numeric;
    v_withheld numeric;
begin
    v_plan := ledger_require_open_plan(p_plan);
    perform ledger_check_occurred_at(p_occurred_at, 'Change time');
    perform subscription_check_dated(p_actor_id, p_org_id, p_occurred_at, 'Change time');
    v_before := subscription_lock_live(p_org_id, p_actor_id, v_at);
    if v_before.plan = p_plan then
        raise exception using errcode = 'CB012',
            message = format('Organization %L is on plan %s already: choose another plan.', p_org_id, v_plan.name);
    end if;
    select c.version, c.price into v_version, v_price
      from subscription_cycle_price(p_plan, v_at, v_before.billing_cycle) c;
    select * into v_p
      from subscription_proration(case when v_before.status = 'trialing' then 0 else v_before.price_amount end,
                                  case when v_before.status = 'trialing' then 0 else v_price end,
                                  v_before.current_period_full_start, v_before.current_period_end, v_at);
    select * into v_ic
      from subscription_included_change(p_org_id, v_at,
                                        (select v.included_credits from plan_versions v
                                          where v.plan = p_plan and v.version = v_version), 'plan_change');
    v_refund := subscription_withhold(v_p.credit, v_ic.overspent);
    v_withheld := v_p.credit - v_refund;
    v_p.credit := v_refund;
    v_p.net := v_p.charge - v_refund;

    update organization_subscriptions s
       set plan = p_plan, plan_version = v_version, price_amount = v_price,
           scheduled_plan = null, scheduled_by = null, scheduled_at = null, updated_at = now()
     where s.org_id = p_org_id and s.id = v_before.id
    returning * into v_s;
    perform ledger_subscription_event(
        v_s, v_before, 'subscription_plan_changed',
        format('Plan changed from %s to %s: %s%s', (select name from plans where code = v_before.plan), v_plan.name,
               case when v_p.net > 0 then format('$%s charged for the rest of the period', v_p.net)
                    when v_p.net < 0 then format('$%s credited for the rest of the period', -v_p.net)
                    else 'nothing to prorate' end,
               subscription_included_text(v_ic, v_withheld)),
        p_actor_id, v_at, v_p.net, null,
        subscription_proration_metadata(v_s, v_p) || subscription_included_metadata(v_ic, v_withheld));
    perform ledger_audit(p_org_id, p_actor_id, 'subscription.plan_changed', 'subscription', v_s.id,
                         jsonb_build_object('from', v_before.plan, 'to', p_plan, 'plan_version', v_version,
                                            'amount', v_p.net)
                         || case when p_occurred_at is null then '{}'::jsonb
                                 else jsonb_build_object('occurred_at', p_occurred_at) end);
    return query select v_s.id, v_s.plan, v_s.plan_version, v_s.price_amount, v_s.current_period_start,
                        v_s.current_period_end, v_p.seconds_left, v_p.seconds_full, v_p.credit, v_p.charge, v_p.net;
end;
$$;


-- preview_subscription_change(p_org_id, p_plan, p_actor_id, p_at): returns
-- what change_subscription_plan would return at p_at (default now), writing
-- nothing: it makes the change inside a subtransaction and rolls it back
-- (locks taken are released with it). Raises what the change would raise.
create or replace function preview_subscription_change(
    p_org_id text,
    p_plan text,
    p_actor_id text default null,
    p_at timestamptz default null
)
returns table (
    subscription_id text,
    plan text,
    plan_version integer,
    price_amount numeric,
    period_start timestamptz,
    period_end timestamptz,
    seconds_left numeric,
    seconds_full numeric,
    proration_credit numeric,
    proration_charge numeric,
    amount numeric
)
language plpgsql
as $$
declare
    v_row record;
begin
    begin
        select * into v_row from change_subscription_plan(p_org_id, p_plan, p_actor_id, p_at);
        raise exception using errcode = 'CBPRV', message = 'preview: roll back';
    exception when sqlstate 'CBPRV' then
        null;
    end;
    return query select v_row.subscription_id, v_row.plan, v_row.plan_version, v_row.price_amount,
                        v_row.period_start, v_row.period_end, v_row.seconds_left, v_row.seconds_full,
                        v_row.proration_credit, v_row.proration_charge, v_row.amount;
end;
$$;


-- schedule_subscription_change(p_org_id, p_plan, p_actor_id, p_occurred_at):
-- returns when
-- the change applies: the current period's end. Sets the live
-- subscription's scheduled plan (replacing an earlier schedule);
-- renew_subscription applies it at that boundary, at the version in force
-- then. Undo it with reactivate_subscription. p_occurred_at (default now)
-- dates a schedule entered after the fact (system admins and the operator
-- only).
-- p_actor_id must be a system admin or an admin of the organization (null: a
-- trusted job); org admins are rate limited.
-- Locks the organization's row, then the subscription. Raises CB002, CB008
-- (also: an org admin giving a time), CB009 (unknown plan), CB011, CB012
-- (retired plan, already on it or scheduled for it, a cancel pending), CB013.
create or replace function schedule_subscription_change(
    p_org_id text,
    p_plan text,
    p_actor_id text default null,
    p_occurred_at timestamptz default null
)
returns timestamptz
language plpgsql
as $$
declare
    v_plan plans;
    v_at timestamptz := coalesce(p_occurred_at, now());
    v_before organization_subscriptions;
    v_s organization_subscriptions;
begin
    v_plan := ledger_require_open_plan(p_plan);
    perform ledger_check_occurred_at(p_occurred_at, 'Schedule time');
    perform subscription_check_dated(p_actor_id, p_org_id, p_occurred_at, 'Schedule time');
    v_before := subscription_lock_live(p_org_id, p_actor_id, v_at);
    if v_before.cancel_at_period_end then
        raise exception using errcode = 'CB012',
            message = format('The subscription ends at %s: reactivate it before scheduling a plan change.',
                             ledger_time_text(v_before.current_period_end));
    end if;
    if v_before.plan = p_plan then
        raise exception using errcode = 'CB012',
            message = format('Organization %L is on plan %s already%s.', p_org_id, v_plan.name,
                             case when v_before.scheduled_plan is not null
                                  then ': to keep it, undo the scheduled change (reactivate)' else '' end);
    end if;
    if v_before.scheduled_plan = p_plan then
        raise exception using errcode = 'CB012',
            message = format('A change to %s is scheduled already for %s.', v_plan.name,
                             ledger_time_text(v_before.current_period_end));
    end if;
    update organization_subscriptions s
       set scheduled_plan = p_plan, scheduled_by = p_actor_id, scheduled_at = v_at, updated_at = now()
     where s.org_id = p_org_id and s.id = v_before.id
    returning * into v_s;
    perform ledger_subscription_event(
        v_s, v_before, 'subscription_change_scheduled',
        format('Change from %s to %s scheduled for %s', (select name from plans where code = v_s.plan),
               v_plan.name, ledger_time_text(v_s.current_period_end)),
        p_actor_id, v_at, 0, null,
        jsonb_build_object('scheduled_plan', p_plan, 'applies_at', v_s.current_period_end,
                           'replaced_scheduled_plan', v_before.scheduled_plan));
    perform ledger_audit(p_org_id, p_actor_id, 'subscription.change_scheduled', 'subscription', v_s.id,
                         jsonb_build_object('from', v_s.plan, 'to', p_plan, 'applies_at', v_s.current_period_end));
    return v_s.current_period_end;
end;
$$;


-- cancel_subscription(p_org_id, p_actor_id, p_at_period_end, p_occurred_at):
-- returns the amount recorded: minus the credit for the unused part of the
-- period when canceled now (active or past due; 0 in a trial), reduced for
-- included credits spent above the earned share (see the top of this file;
-- the unearned, unspent included credits are taken back), 0 at period end.
-- p_at_period_end (default true) keeps the subscription until its
-- period end (renew_subscription ends it then; a trial ends with the trial)
-- and drops a scheduled change; otherwise it ends at p_occurred_at (default
-- now; a past time from system admins and the operator only) and the
-- organization may subscribe again.
-- p_actor_id must be a system admin or an admin of the organization (null: a
-- trusted job); org admins are rate limited.
-- Locks the organization's row, then the subscription (then, canceled now,
-- the pool, allocations and lots). Raises CB002, CB008 (also: an org admin
-- giving a time), CB009 (bad time), CB012 (already set to end), CB013.
create or replace function cancel_subscription(
    p_org_id text,
    p_actor_id text default null,
    p_at_period_end boolean default true,
    p_occurred_at timestamptz default null
)
returns numeric
language plpgsql
as $$
declare
    v_at timestamptz := coalesce(p_occurred_at, now());
    v_before organization_subscriptions;
    v_s organization_subscriptions;
    v_name text;
    v_p record;
    v_ic record;
    v_refund numeric;
    v_withheld numeric := 0;
begin
    if p_at_period_end is null then
        raise exception using errcode = 'CB009',
            message = 'Say whether the subscription ends now or at its period end.';
    end if;
    perform ledger_check_occurred_at(p_occurred_at, 'Cancel time');
    perform subscription_check_dated(p_actor_id, p_org_id, p_occurred_at, 'Cancel time');
    v_before := subscription_lock_live(p_org_id, p_actor_id, v_at, false);
    v_name := (select name from plans where code = v_before.plan);
    if p_at_period_end then
        if v_before.cancel_at_period_end then
            raise exception using errcode = 'CB012',
                message = format('The subscription to %s ends at %s already.', v_name,
                                 ledger_time_text(least(v_before.current_period_end, v_before.trial_ends_at)));
        end if;
        update organization_subscriptions s
           set cancel_at_period_end = true, scheduled_plan = null, scheduled_by = null, scheduled_at = null,
               updated_at = now()
         where s.org_id = p_org_id and s.id = v_before.id
        returning * into v_s;
        perform ledger_subscription_event(
            v_s, v_before, 'subscription_cancel_scheduled',
            format('Subscription to %s set to end at %s', v_name,
                   ledger_time_text(least(v_s.current_period_end, v_s.trial_ends_at))),
            p_actor_id, v_at, 0, null,
            jsonb_build_object('ends_at', least(v_s.current_period_end, v_s.trial_ends_at),
                               'dropped_scheduled_plan', v_before.scheduled_plan));
        perform ledger_audit(p_org_id, p_actor_id, 'subscription.cancel_scheduled', 'subscription', v_s.id,
                             jsonb_build_object('plan', v_s.plan, 'ends_at', v_s.current_period_end));
        return 0;
    end if;
    select * into v_p
      from subscription_proration(case when v_before.status = 'trialing' then 0 else v_before.price_amount end, 0,
                                  v_before.current_period_full_start, v_before.current_period_end, v_at);
    select * into v_ic from subscription_included_change(p_org_id, v_at, 0, 'cancel');
    v_refund := subscription_withhold(v_p.credit, v_ic.overspent);
    v_withheld := v_p.credit - v_refund;
    v_p.credit := v_refund;
    v_p.net := v_p.charge - v_refund;
    update organization_subscriptions s
       set status = 'canceled', canceled_at = v_at, status_changed_at = v_at, cancel_at_period_end = false,
           scheduled_plan = null, scheduled_by = null, scheduled_at = null, updated_at = now()
     where s.org_id = p_org_id and s.id = v_before.id
    returning * into v_s;
    perform ledger_subscription_event(
        v_s, v_before, 'subscription_canceled',
        format('Subscription to %s canceled%s%s', v_name,
               case when v_p.credit > 0 then format(': $%s credited for the rest of the period', v_p.credit)
                    else '' end,
               subscription_included_text(v_ic, v_withheld)),
        p_actor_id, v_at, v_p.net, null,
        subscription_proration_metadata(v_s, v_p) || subscription_included_metadata(v_ic, v_withheld));
    perform ledger_audit(p_org_id, p_actor_id, 'subscription.canceled', 'subscription', v_s.id,
                         jsonb_build_object('plan', v_s.plan, 'credit', v_p.credit)
                         || case when p_occurred_at is null then '{}'::jsonb
                                 else jsonb_build_object('occurred_at', p_occurred_at) end);
    return v_p.net;
end;
$$;


-- reactivate_subscription(p_org_id, p_actor_id, p_occurred_at): returns
-- nothing. Undoes
-- what the live subscription was set to do at its period end: a cancel, or a
-- scheduled plan change. (A canceled organization subscribes again with
-- create_subscription.) p_occurred_at (default now) dates it after the fact
-- (system admins and the operator only).
-- p_actor_id must be a system admin or an admin of the organization (null: a
-- trusted job); org admins are rate limited.
-- Locks the organization's row, then the subscription. Raises CB002 (no live
-- subscription), CB008, CB012 (nothing to undo), CB013.
create or replace function reactivate_subscription(
    p_org_id text,
    p_actor_id text default null,
    p_occurred_at timestamptz default null
)
returns void
language plpgsql
as $$
declare
    v_at timestamptz := coalesce(p_occurred_at, now());
    v_before organization_subscriptions;
    v_s organization_subscriptions;
    v_name text;
begin
    perform ledger_check_occurred_at(p_occurred_at, 'Reactivation time');
    perform subscription_check_dated(p_actor_id, p_org_id, p_occurred_at, 'Reactivation time');
    v_before := subscription_lock_live(p_org_id, p_actor_id, v_at, false);
    v_name := (select name from plans where code = v_before.plan);
    if not v_before.cancel_at_period_end and v_before.scheduled_plan is null then
        raise exception using errcode = 'CB012',
            message = format('Nothing to undo: the subscription to %s is set neither to end nor to change plan.',
                             v_name);
    end if;
    update organization_subscriptions s
       set cancel_at_period_end = false, scheduled_plan = null, scheduled_by = null, scheduled_at = null,
           updated_at = now()
     where s.org_id = p_org_id and s.id = v_before.id
    returning * into v_s;
    perform ledger_subscription_event(
        v_s, v_before, 'subscription_reactivated',
        case when v_before.cancel_at_period_end
             then format('Subscription to %s continues: the cancel at period end is undone', v_name)
             else format('Subscription stays on %s: the change to %s is undone', v_name,
                         (select name from plans where code = v_before.scheduled_plan)) end,
        p_actor_id, v_at, 0, null,
        jsonb_build_object('undone', case when v_before.cancel_at_period_end then 'cancel' else 'scheduled_change' end,
                           'undone_scheduled_plan', v_before.scheduled_plan));
    perform ledger_audit(p_org_id, p_actor_id, 'subscription.reactivated', 'subscription', v_s.id,
                         jsonb_build_object('plan', v_s.plan,
                                            'undone', case when v_before.cancel_at_period_end then 'cancel'
                                                           else 'scheduled_change' end));
end;
$$;


-- renew_subscription(p_org_id, p_until, p_actor_id): returns how many
-- history rows it wrote (0: nothing was due). Applies to the organization's
-- live subscription everything due up to p_until (default now): trial end,
-- pending cancel, scheduled change, move to the plan version in force, next
-- periods with one invoice each, catching up every missed period. Running it
-- again, or later, writes nothing twice. Also refreshes plans' copy of the
-- versions in force.
-- p_actor_id must be a system admin (null: the period job).
-- Locks the organization's row, then the subscription. Raises CB002 (unknown
-- organization or actor), CB008, CB009 (p_until in the future or more than
-- 400 days ago).
create or replace function renew_subscription(
    p_org_id text,
    p_until timestamptz default null,
    p_actor_id text default null
)
returns integer
language plpgsql
as $$
begin
    perform ledger_check_occurred_at(p_until, 'Renew up to');
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'system_admin');
    perform plan_catalogue_refresh();
    perform 1 from organizations where id = p_org_id for no key update;
    return subscription_advance(p_org_id, coalesce(p_until, now()));
end;
$$;


-- set_subscription_status(p_org_id, p_status, p_actor_id, p_occurred_at):
-- returns nothing.
-- Moves the organization's live subscription to 'active' (payment received,
-- or a trial converted), 'past_due' (payment failed) or 'canceled' (ends it:
-- canceled_at is set, no credit is given - refunds are the external billing
-- system's - and the organization may subscribe again), after applying what
-- was due up to p_occurred_at. Setting the status it already has changes
-- nothing (a repeated webhook, say). p_occurred_at (default now) dates a
-- change entered after the fact; it cannot be earlier than the
-- subscription's last change.
-- p_actor_id must be a system admin (null: a trusted job).
-- Locks the organization's row, then the subscription. Raises CB002 (unknown
-- organization or actor, or no live subscription), CB008, CB009 (unknown
-- status, bad p_occurred_at).
create or replace function set_subscription_status(
    p_org_id text,
    p_status text,
    p_actor_id text default null,
    p_occurred_at timestamptz default null
)
returns void
language plpgsql
as $$
declare
    v_subscription organization_subscriptions;
    v_before organization_subscriptions;
    v_at timestamptz := coalesce(p_occurred_at, now());
    v_last_change timestamptz;
begin
    if p_status is null or p_status not in ('active', 'past_due', 'canceled') then
        raise exception using errcode = 'CB009',
            message = format('Subscription status must be ''active'', ''past_due'' or ''canceled'' (got %L).',
                             left(p_status, 80));
    end if;
    perform ledger_check_occurred_at(p_occurred_at, 'Status change time');
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'system_admin');

    perform 1 from organizations where id = p_org_id for no key update;
    perform subscription_advance(p_org_id, v_at);

    select * into v_subscription from organization_subscriptions
     where org_id = p_org_id and status in ('trialing', 'active', 'past_due')
       for update;
    if not found then
        raise exception using errcode = 'CB002',
            message = format('Organization %L has no live subscription: create one first.', p_org_id);
    end if;
    if v_subscription.status = p_status then
        return;
    end if;
    v_last_change := subscription_last_event_at(v_subscription);
    if v_last_change > v_at then
        raise exception using errcode = 'CB009',
            message = format('Status change time (%s) is before the subscription''s last change (%s): '
                             'give a later time.', ledger_time_text(v_at), ledger_time_text(v_last_change));
    end if;

    v_before := v_subscription;
    update organization_subscriptions
       set status = p_status,
           status_changed_at = v_at,
           canceled_at = case when p_status = 'canceled' then v_at else canceled_at end,
           trial_ends_at = case when status = 'trialing' and p_status = 'active' then least(trial_ends_at, v_at)
                                else trial_ends_at end,
           cancel_at_period_end = case when p_status = 'canceled' then false else cancel_at_period_end end,
           scheduled_plan = case when p_status = 'canceled' then null else scheduled_plan end,
           updated_at = now()
     where org_id = p_org_id and id = v_subscription.id
    returning * into v_subscription;

    perform ledger_subscription_event(
        v_subscription, v_before,
        case p_status when 'active' then 'subscription_activated'
                      when 'past_due' then 'subscription_past_due'
                      else 'subscription_canceled' end,
        format('Subscription to %s %s (was %s)',
               (select name from plans where code = v_subscription.plan),
               case p_status when 'active' then 'active again'
                             when 'past_due' then 'past due: payment failed'
                             else 'canceled' end,
               replace(v_before.status, '_', ' ')),
        p_actor_id, v_at);
    if v_before.status = 'trialing' and p_status = 'active' then
        perform subscription_invoice(v_subscription, v_at);
    end if;
    perform ledger_audit(p_org_id, p_actor_id, 'subscription.status_changed', 'subscription', v_subscription.id,
                         jsonb_build_object('from', v_before.status, 'to', p_status, 'plan', v_subscription.plan)
                         || case when p_occurred_at is null then '{}'::jsonb
                                 else jsonb_build_object('occurred_at', p_occurred_at) end);
end;
$$;


-- create_organization_with_plan(p_org_id, p_name, p_plan, p_admin_user_id,
--     p_admin_email, p_admin_name, p_admin_password_hash, p_actor_id,
--     p_billing_cycle, p_started_at): returns the subscription's id.
-- Opens an organization in one transaction: the organization and its empty
-- pool, a NEW user (the bcrypt hash of a one-time password) who becomes its
-- first admin, and its subscription; all of it or nothing.
-- p_actor_id must be a system admin (null: a trusted job).
-- Locks the new organization's row. Raises CB002 (unknown actor), CB008,
-- CB009 (bad id, name, email, plan, billing cycle, start, or a password hash
-- that is not a bcrypt hash), CB010 (organization id, user id or email taken).
create or replace function create_organization_with_plan(
    p_org_id text,
    p_name text,
    p_plan text,
    p_admin_user_id text,
    p_admin_email text,
    p_admin_name text,
    p_admin_password_hash text,
    p_actor_id text default null,
    p_billing_cycle text default 'monthly',
    p_started_at timestamptz default null
)
returns text
language plpgsql
as $$
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    perform ledger_require_plan(p_plan);
    if p_admin_password_hash is null or p_admin_password_hash !~ '^\$2[aby]?\$[0-9]{2}\$[./A-Za-z0-9]{53}$' then
        raise exception using errcode = 'CB009',
            message = 'The first admin''s password must be given as a bcrypt hash '
                      '(billing_core.auth.hash_password), never as the password itself.';
    end if;
    perform create_organization(p_org_id, p_name, p_actor_id);
    perform create_user(p_admin_user_id, p_admin_email, p_admin_name, false, p_admin_password_hash, p_actor_id);
    perform add_organization_member(p_org_id, p_admin_user_id, 'admin', p_actor_id);
    return create_subscription(p_org_id, p_plan, p_actor_id, p_billing_cycle, p_started_at);
end;
$$;


-- org_included_credits(p_org_id, p_at): the credits the organization's plan
-- includes each billing period, as it stood at p_at: the plan version named by
-- its latest subscription history row at or before p_at, while that row says
-- the subscription is live (0 otherwise, and 0 for an unknown organization).
-- The period job calls renew_subscription first, so that a version or plan
-- taking effect at a boundary is the one read there. Locks nothing; raises
-- nothing.
create or replace function org_included_credits(p_org_id text, p_at timestamptz default now())
returns numeric
language sql
stable
as $$
    select coalesce((
        select coalesce(v.included_credits, 0)
          from (select h.metadata
                  from org_billing_history h
                 where h.org_id = p_org_id
                   and h.created_at <= p_at
                   and h.metadata ? 'mrr_after'
                 order by h.created_at desc, h.id desc
                 limit 1) last
          left join plan_versions v
                 on v.plan = last.metadata ->> 'plan'
                and v.version = coalesce((last.metadata ->> 'plan_version')::integer, 1)
         where last.metadata ->> 'status' in ('trialing', 'active', 'past_due')), 0);
$$;
