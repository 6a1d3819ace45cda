-- Subscriptions: an organization pays a monthly (or yearly) plan.
--
-- At most one live subscription (trialing, active or past_due) per
-- organization; a canceled one stays as history. Every change writes an
-- org_billing_history row (credits 0, amount 0: invoices and payments are the
-- external billing system's) and an audit_log row.
-- Subscription history rows carry, in metadata: subscription_id, plan,
-- billing_cycle, price_amount, monthly_amount (price, or price / 12 when
-- yearly), status, previous_status, and mrr_after: what the organization
-- contributes to MRR after the event (monthly_amount while active or
-- past_due, else 0). The latest such row at or before a moment gives the
-- organization's MRR at that moment.
-- Lock: the organization's row FOR NO KEY UPDATE (serializes subscription
-- changes of one organization; deductions, purchases and memberships do not
-- take it, and foreign keys' share locks do not conflict with it).


-- subscription_period_bounds(p_started_at, p_billing_cycle, p_at): the
-- billing period (start, end) of a subscription started at p_started_at that
-- contains p_at: whole months (or years) counted from the start. Raises
-- nothing.
create or replace function subscription_period_bounds(
    p_started_at timestamptz,
    p_billing_cycle text,
    p_at timestamptz default now()
)
returns table (period_start timestamptz, period_end timestamptz)
language plpgsql
stable
as $$
declare
    v_step interval := case when p_billing_cycle = 'yearly' then interval '1 year' else interval '1 month' end;
    v_age interval := age(greatest(p_at, p_started_at), p_started_at);
    v_periods integer;
begin
    v_periods := case when p_billing_cycle = 'yearly' then extract(year from v_age)::integer
                      else (extract(year from v_age) * 12 + extract(month from v_age))::integer end;
    -- age() and month arithmetic can disagree by a day at month ends: settle on the interval holding p_at
    while p_started_at + v_step * v_periods > p_at and v_periods > 0 loop
        v_periods := v_periods - 1;
    end loop;
    while p_started_at + v_step * (v_periods + 1) <= p_at loop
        v_periods := v_periods + 1;
    end loop;
    period_start := p_started_at + v_step * v_periods;
    period_end := p_started_at + v_step * (v_periods + 1);
    return next;
end;
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
                             (select string_agg(code, ', ' order by sort_order, code) from plans));
    end if;
    return v_plan;
end;
$$;


-- ledger_subscription_event(p_subscription, p_event_type, p_previous_status,
-- p_description, p_actor_id, p_occurred_at): appends the subscription's
-- org_billing_history row (metadata as described at the top of this file)
-- dated p_occurred_at. Locks nothing.
create or replace function ledger_subscription_event(
    p_subscription organization_subscriptions,
    p_event_type text,
    p_previous_status text,
    p_description text,
    p_actor_id text,
    p_occurred_at timestamptz
)
returns void
language plpgsql
as $$
declare
    v_monthly numeric := case when p_subscription.billing_cycle = 'yearly'
                              then p_subscription.price_amount / 12
                              else p_subscription.price_amount end;
begin
    insert into org_billing_history (org_id, event_type, description, metadata, created_by, created_at)
    values (p_subscription.org_id, p_event_type, p_description,
            jsonb_build_object(
                'subscription_id', p_subscription.id,
                'plan', p_subscription.plan,
                'billing_cycle', p_subscription.billing_cycle,
                'price_amount', p_subscription.price_amount,
                'monthly_amount', round(v_monthly, 4),
                'status', p_subscription.status,
                'previous_status', p_previous_status,
                'mrr_after', case when p_subscription.status in ('active', 'past_due')
                                  then round(v_monthly, 4) else 0 end),
            p_actor_id, p_occurred_at);
end;
$$;


-- create_subscription(p_org_id, p_plan, p_actor_id, p_billing_cycle,
--                     p_started_at): returns the new subscription's id.
-- Subscribes the organization to a plan of the catalogue, status 'active',
-- at the plan's price (monthly; twelve times it when p_billing_cycle is
-- 'yearly'). p_started_at (default now) dates a subscription entered after
-- the fact: it becomes the subscription's created_at, its history row's date,
-- and its current billing period is counted from it; it cannot be earlier
-- than the end of the organization's previous subscription.
-- p_actor_id must be a system admin (null: a trusted job).
-- Locks the organization's row. Raises CB002 (unknown organization or
-- actor), CB008, CB009 (unknown plan or billing cycle, bad p_started_at),
-- CB010 (the organization already has a live subscription), CB011
-- (organization suspended or closed).
create or replace function create_subscription(
    p_org_id text,
    p_plan text,
    p_actor_id text default null,
    p_billing_cycle text default 'monthly',
    p_started_at timestamptz default null
)
returns text
language plpgsql
as $$
declare
    v_plan plans;
    v_live organization_subscriptions;
    v_last_end timestamptz;
    v_started timestamptz := coalesce(p_started_at, now());
    v_subscription organization_subscriptions;
begin
    v_plan := ledger_require_plan(p_plan);
    if p_billing_cycle is null or p_billing_cycle not in ('monthly', 'yearly') then
        raise exception using errcode = 'CB009',
            message = format('Billing cycle must be ''monthly'' or ''yearly'' (got %L).', left(p_billing_cycle, 80));
    end if;
    perform ledger_check_occurred_at(p_started_at, 'Subscription start');
    perform ledger_require_org(p_org_id, true);
    perform ledger_authorize(p_actor_id, p_org_id, 'system_admin');

    perform 1 from organizations where id = p_org_id for no key update;

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

    insert into organization_subscriptions
        (org_id, plan, status, price_amount, billing_cycle, current_period_start, current_period_end,
         created_by, status_changed_at, created_at, updated_at)
    select p_org_id, v_plan.code, 'active',
           v_plan.monthly_price * case when p_billing_cycle = 'yearly' then 12 else 1 end,
           p_billing_cycle, b.period_start, b.period_end, p_actor_id, v_started, v_started, now()
      from subscription_period_bounds(v_started, p_billing_cycle, now()) b
    returning * into v_subscription;

    perform ledger_subscription_event(
        v_subscription, 'subscription_created', null,
        format('Subscribed to %s at $%s a %s', v_plan.name, trim_scale(v_subscription.price_amount),
               case when p_billing_cycle = 'yearly' then 'year' else 'month' end),
        p_actor_id, v_started);
    perform ledger_audit(p_org_id, p_actor_id, 'subscription.created', 'subscription', v_subscription.id,
                         jsonb_build_object('plan', v_plan.code, 'billing_cycle', p_billing_cycle,
                                            'price_amount', v_subscription.price_amount)
                         || case when p_started_at is null then '{}'::jsonb
                                 else jsonb_build_object('occurred_at', p_started_at) end);
    return v_subscription.id;
end;
$$;


-- set_subscription_status(p_org_id, p_status, p_actor_id, p_occurred_at):
-- returns nothing.
-- Moves the organization's live subscription to 'active' (payment received),
-- 'past_due' (payment failed) or 'canceled' (ends it: canceled_at is set and
-- the organization may subscribe again). Setting the status it already has
-- changes nothing (a repeated webhook, say). p_occurred_at (default now)
-- dates a change entered after the fact; it cannot be earlier than the
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
    v_previous text;
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
    v_last_change := coalesce(v_subscription.status_changed_at, v_subscription.created_at);
    if v_last_change > v_at then
        raise exception using errcode = 'CB009',
            message = format('Status change time (%s) is before the subscription''s last change (%s): '
                             'give a later time.', ledger_time_text(v_at), ledger_time_text(v_last_change));
    end if;

    v_previous := v_subscription.status;
    update organization_subscriptions
       set status = p_status,
           status_changed_at = v_at,
           canceled_at = case when p_status = 'canceled' then v_at else canceled_at end,
           updated_at = now()
     where org_id = p_org_id and id = v_subscription.id
    returning * into v_subscription;

    perform ledger_subscription_event(
        v_subscription,
        case p_status when 'active' then 'subscription_activated'
                      when 'past_due' then 'subscription_past_due'
                      else 'subscription_canceled' end,
        v_previous,
        format('Subscription to %s %s (was %s)',
               (select name from plans where code = v_subscription.plan),
               case p_status when 'active' then 'active again'
                             when 'past_due' then 'past due: payment failed'
                             else 'canceled' end,
               replace(v_previous, '_', ' ')),
        p_actor_id, v_at);
    perform ledger_audit(p_org_id, p_actor_id, 'subscription.status_changed', 'subscription', v_subscription.id,
                         jsonb_build_object('from', v_previous, 'to', p_status, 'plan', v_subscription.plan)
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


-- org_included_credits(p_org_id, p_at): the credits the plan of the
-- organization's live subscription at p_at includes each billing period (0
-- when it has none). Locks nothing; raises nothing.
create or replace function org_included_credits(p_org_id text, p_at timestamptz default now())
returns numeric
language sql
stable
as $$
    select coalesce((select pl.included_credits
                       from organization_subscriptions s
                       join plans pl on pl.code = s.plan
                      where s.org_id = p_org_id
                        and s.status in ('trialing', 'active', 'past_due')
                        and s.created_at <= p_at
                      limit 1), 0);
$$;
