-- Subscription commands: the functions the screens, the CLI and the external
-- billing system call to create, change, preview, schedule, cancel,
-- reactivate a subscription or set its status, with their checks (dated
-- changes, the org admins' rate limit) and the lock of the live
-- subscription. The rules and the lock order: the top of
-- 068_subscription_terms.sql.



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

comment on function subscription_check_dated(text, text, timestamptz, text) is
    'subscription_check_dated(p_actor_id, p_org_id, p_at, p_what): returns nothing. Only a trusted caller dates a '
    'subscription change: when p_at is given and is not the transaction''s now, p_actor_id must be a system admin '
    '(null: the operator, ledger_authorize decides on which connection). An org admin''s change happens now. '
    'Raises CB002 (unknown actor), CB008.';


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

comment on function subscription_check_rate(text) is
    'subscription_check_rate(p_actor_id): returns nothing. An org admin (not a system admin, not a job) may make '
    'at most 5 subscription changes (audit actions ''subscription.*'') in any hour, across organizations. Takes '
    'the actor''s transaction-level advisory lock first, so two parallel calls cannot both be the 5th (read '
    'committed: the count is a new snapshot after the lock). Raises CB013 saying when the actor may try again.';


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

comment on function subscription_lock_live(text, text, timestamptz, boolean) is
    'subscription_lock_live(p_org_id, p_actor_id, p_at, p_must_be_active): returns the organization''s live '
    'subscription, brought up to p_at. Checks the organization (active, when p_must_be_active) and that the actor '
    'is a system admin or an admin of it, locks the organization''s row, applies the rate limit, applies what was '
    'due up to p_at (subscription_advance), and checks that p_at is not before the subscription''s latest event. '
    'Raises CB002 (unknown organization or actor, no live subscription), CB008, CB009 (p_at before the latest '
    'event), CB011, CB013.';


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

comment on function create_subscription(text, text, text, text, timestamptz, boolean) is
    'create_subscription(p_org_id, p_plan, p_actor_id, p_billing_cycle, p_started_at, p_trial): returns the new '
    'subscription''s id. Subscribes the organization to the version of a plan in force at the start (monthly; '
    'twelve times its price when p_billing_cycle is ''yearly''), for the calendar period holding the start (a '
    'first, shorter period when it starts inside one). p_started_at (default now) dates a subscription entered '
    'after the fact: its created_at and history row; it cannot be earlier than the end of the organization''s '
    'previous subscription; system admins and the operator only. p_trial: null gives the version''s trial (status '
    '''trialing'', trial_ends_at = start + trial days, no invoice yet) when the subscription starts now and the '
    'organization never subscribed before (a trial is once per organization, ever); true from a system admin or '
    'the operator forces it whatever the start; true from an org admin is the same as null for a first '
    'subscription and refused after any earlier one; false never. Without a trial it is ''active'' with an '
    'invoice for its first period. p_actor_id must be a system admin or an admin of the organization (null: a '
    'trusted job); org admins are rate limited. Locks the organization''s row. Raises CB002 (unknown organization '
    'or actor), CB008 (also: an org admin dating it or asking a second trial), CB009 (unknown plan or billing '
    'cycle, bad p_started_at), CB010 (the organization already has a live subscription), CB011 (organization '
    'suspended or closed), CB012 (retired plan), CB013.';


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
-- The period's included credits follow the rule at the top of 068_subscription_terms.sql:
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

comment on function change_subscription_plan(text, text, text, timestamptz) is
    'change_subscription_plan(p_org_id, p_plan, p_actor_id, p_occurred_at): returns the change: the subscription, '
    'its new plan, version and price, the current period, and the proration: seconds left of the full period, the '
    'credit for the unused part of the old price, the charge for the same part of the new one (cents), and amount '
    '= charge - credit, which is the history row''s amount (negative: owed to the organization; 0 during a trial, '
    'when nothing was charged). Moves the live subscription to the version of p_plan in force now (upgrade or '
    'downgrade) after applying what was due up to p_occurred_at (default now; a past time from system admins and '
    'the operator only); a scheduled change is dropped; a pending cancel stays. The period''s included credits '
    'follow the rule at the top of 068_subscription_terms.sql: the old plan''s unearned, unspent part is taken '
    'back, the new plan''s are granted pro rata, and the credit is reduced (withheld) for included credits spent '
    'above the earned share: proration_credit and amount are after that (the row''s metadata.included has the '
    'figures). p_actor_id must be a system admin or an admin of the organization (null: a trusted job); org '
    'admins are rate limited. Locks the organization''s row, then the subscription, then the pool, allocations '
    'and lots. Raises CB002, CB008 (also: an org admin giving a time), CB009 (unknown plan, bad time), CB011, '
    'CB012 (retired plan, or already on it), CB013.';


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

comment on function preview_subscription_change(text, text, text, timestamptz) is
    'preview_subscription_change(p_org_id, p_plan, p_actor_id, p_at): returns what change_subscription_plan would '
    'return at p_at (default now), writing nothing: it makes the change inside a subtransaction and rolls it back '
    '(locks taken are released with it). Raises what the change would raise.';


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

comment on function schedule_subscription_change(text, text, text, timestamptz) is
    'schedule_subscription_change(p_org_id, p_plan, p_actor_id, p_occurred_at): returns when the change applies: '
    'the current period''s end. Sets the live subscription''s scheduled plan (replacing an earlier schedule); '
    'renew_subscription applies it at that boundary, at the version in force then. Undo it with '
    'reactivate_subscription. p_occurred_at (default now) dates a schedule entered after the fact (system admins '
    'and the operator only). p_actor_id must be a system admin or an admin of the organization (null: a trusted '
    'job); org admins are rate limited. Locks the organization''s row, then the subscription. Raises CB002, CB008 '
    '(also: an org admin giving a time), CB009 (unknown plan), CB011, CB012 (retired plan, already on it or '
    'scheduled for it, a cancel pending), CB013.';


-- cancel_subscription(p_org_id, p_actor_id, p_at_period_end, p_occurred_at):
-- returns the amount recorded: minus the credit for the unused part of the
-- period when canceled now (active or past due; 0 in a trial), reduced for
-- included credits spent above the earned share (see the top of 068_subscription_terms.sql;
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

comment on function cancel_subscription(text, text, boolean, timestamptz) is
    'cancel_subscription(p_org_id, p_actor_id, p_at_period_end, p_occurred_at): returns the amount recorded: '
    'minus the credit for the unused part of the period when canceled now (active or past due; 0 in a trial), '
    'reduced for included credits spent above the earned share (see the top of 068_subscription_terms.sql; the '
    'unearned, unspent included credits are taken back), 0 at period end. p_at_period_end (default true) keeps '
    'the subscription until its period end (renew_subscription ends it then; a trial ends with the trial) and '
    'drops a scheduled change; otherwise it ends at p_occurred_at (default now; a past time from system admins '
    'and the operator only) and the organization may subscribe again. p_actor_id must be a system admin or an '
    'admin of the organization (null: a trusted job); org admins are rate limited. Locks the organization''s row, '
    'then the subscription (then, canceled now, the pool, allocations and lots). Raises CB002, CB008 (also: an '
    'org admin giving a time), CB009 (bad time), CB012 (already set to end), CB013.';


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

comment on function reactivate_subscription(text, text, timestamptz) is
    'reactivate_subscription(p_org_id, p_actor_id, p_occurred_at): returns nothing. Undoes what the live '
    'subscription was set to do at its period end: a cancel, or a scheduled plan change. (A canceled organization '
    'subscribes again with create_subscription.) p_occurred_at (default now) dates it after the fact (system '
    'admins and the operator only). p_actor_id must be a system admin or an admin of the organization (null: a '
    'trusted job); org admins are rate limited. Locks the organization''s row, then the subscription. Raises '
    'CB002 (no live subscription), CB008, CB012 (nothing to undo), CB013.';


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

comment on function set_subscription_status(text, text, text, timestamptz) is
    'set_subscription_status(p_org_id, p_status, p_actor_id, p_occurred_at): returns nothing. Moves the '
    'organization''s live subscription to ''active'' (payment received, or a trial converted), ''past_due'' '
    '(payment failed) or ''canceled'' (ends it: canceled_at is set, no credit is given - refunds are the external '
    'billing system''s - and the organization may subscribe again), after applying what was due up to '
    'p_occurred_at. Setting the status it already has changes nothing (a repeated webhook, say). p_occurred_at '
    '(default now) dates a change entered after the fact; it cannot be earlier than the subscription''s last '
    'change. p_actor_id must be a system admin (null: a trusted job). Locks the organization''s row, then the '
    'subscription. Raises CB002 (unknown organization or actor, or no live subscription), CB008, CB009 (unknown '
    'status, bad p_occurred_at).';


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

comment on function create_organization_with_plan(text, text, text, text, text, text, text, text, text, timestamptz) is
    'create_organization_with_plan(p_org_id, p_name, p_plan, p_admin_user_id, p_admin_email, p_admin_name, '
    'p_admin_password_hash, p_actor_id, p_billing_cycle, p_started_at): returns the subscription''s id. Opens an '
    'organization in one transaction: the organization and its empty pool, a NEW user (the bcrypt hash of a '
    'one-time password) who becomes its first admin, and its subscription; all of it or nothing. p_actor_id must '
    'be a system admin (null: a trusted job). Locks the new organization''s row. Raises CB002 (unknown actor), '
    'CB008, CB009 (bad id, name, email, plan, billing cycle, start, or a password hash that is not a bcrypt '
    'hash), CB010 (organization id, user id or email taken).';
