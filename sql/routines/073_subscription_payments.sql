-- Subscription payments: a past-due subscription becomes active when its
-- payment is recorded (the external billing system's `invoice.paid`, or a
-- system admin who saw the money arrive), never by a status change alone.
-- The rules: the top of 068_subscription_terms.sql.
--
-- A payment is one org_billing_history row of event_type
-- 'subscription_payment' (credits 0, amount 0: the invoice row carries what
-- was charged) whose external_ref is the payment's reference, so a reference
-- is recorded once per organization; the same reference again changes
-- nothing and says when it was recorded. A reference that already names
-- another row of the organization (an order's payment, say) or another
-- order's payment is refused.
--
-- Lock order: the organization's row FOR NO KEY UPDATE, then the subscription
-- (as set_subscription_status, which the recording calls).


-- subscription_payment_check(p_org_id, p_payment_reference, p_actor_id,
-- p_paid_at): returns when this payment was recorded already (null: recording
-- it would mark the subscription active now). What the screen asks before it
-- asks "Confirm?", and what record_subscription_payment checks under its
-- lock: the same rule. p_actor_id must be a system admin (null: a trusted
-- job). Writes nothing, locks nothing. Raises CB002 (unknown organization or
-- actor, no live subscription), CB007 (the reference is another payment's),
-- CB008, CB009 (reference missing or too long, bad p_paid_at, the
-- subscription is not past due).
create or replace function subscription_payment_check(
    p_org_id text,
    p_payment_reference text,
    p_actor_id text default null,
    p_paid_at timestamptz default null
)
returns timestamptz
language plpgsql
stable
as $$
declare
    v_row org_billing_history;
    v_order credit_orders;
    v_status text;
    v_org text;
begin
    perform ledger_check_text(p_payment_reference, 'Payment reference', 200);
    perform ledger_check_occurred_at(p_paid_at, 'Payment time');
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'system_admin');
    select format('%s (%s)', o.name, o.id) into v_org from organizations o where o.id = p_org_id;

    select * into v_row from org_billing_history h
     where h.org_id = p_org_id and h.external_ref = p_payment_reference;
    if found then
        if v_row.event_type = 'subscription_payment' then
            return v_row.created_at;  -- recorded before: nothing to do
        end if;
        raise exception using errcode = 'CB007',
            message = format('Payment reference %s is already in the billing history of %s '
                             '(%s, %s): give the reference of this subscription payment.',
                             p_payment_reference, v_org, replace(v_row.event_type, '_', ' '),
                             ledger_time_text(v_row.created_at));
    end if;
    select * into v_order from credit_orders o where o.payment_reference = p_payment_reference;
    if found then
        raise exception using errcode = 'CB007',
            message = format('Payment reference %s already paid order %s of %s: one payment is recorded once.',
                             p_payment_reference, v_order.id,
                             (select format('%s (%s)', o.name, o.id) from organizations o where o.id = v_order.org_id));
    end if;
    select s.status into v_status from organization_subscriptions s
     where s.org_id = p_org_id and s.status in ('trialing', 'active', 'past_due');
    if not found then
        raise exception using errcode = 'CB002',
            message = format('%s has no live subscription: there is no payment to record.', v_org);
    end if;
    if v_status <> 'past_due' then
        raise exception using errcode = 'CB009',
            message = format('The subscription of %s is %s, not past due: no payment is awaited.',
                             v_org, replace(v_status, '_', ' '));
    end if;
    return null;
end;
$$;

comment on function subscription_payment_check(text, text, text, timestamptz) is
    'subscription_payment_check(p_org_id, p_payment_reference, p_actor_id, p_paid_at): returns when this payment '
    'was recorded already (null: recording it would mark the subscription active now). What the screen asks '
    'before it asks "Confirm?", and what record_subscription_payment checks under its lock: the same rule. '
    'p_actor_id must be a system admin (null: a trusted job). Writes nothing, locks nothing. Raises CB002 (unknown '
    'organization or actor, no live subscription), CB007 (the reference is another payment''s), CB008, CB009 '
    '(reference missing or too long, bad p_paid_at, the subscription is not past due).';


-- record_subscription_payment(p_org_id, p_payment_reference, p_actor_id,
-- p_paid_at): returns one row: whether this call recorded the payment, and
-- when the payment was recorded (now, or the first time).
-- Records the payment of a past-due subscription: its 'subscription_payment'
-- history row (external_ref = the reference) and audit row, and the
-- subscription active again (set_subscription_status: its history and audit
-- rows). The same reference again returns recorded = false with the first
-- recording's time and changes nothing. p_paid_at (default now) dates a
-- payment entered after the fact. p_actor_id must be a system admin (null: a
-- trusted job). Locks the organization's row, then the subscription. Raises
-- what subscription_payment_check raises.
create or replace function record_subscription_payment(
    p_org_id text,
    p_payment_reference text,
    p_actor_id text default null,
    p_paid_at timestamptz default null
)
returns table (recorded boolean, recorded_at timestamptz)
language plpgsql
as $$
declare
    v_at timestamptz := coalesce(p_paid_at, now());
    v_before timestamptz;
    v_subscription organization_subscriptions;
begin
    perform ledger_require_org(p_org_id);
    perform 1 from organizations where id = p_org_id for no key update;
    v_before := subscription_payment_check(p_org_id, p_payment_reference, p_actor_id, p_paid_at);
    if v_before is not null then
        return query select false, v_before;
        return;
    end if;

    perform set_subscription_status(p_org_id, 'active', p_actor_id, p_paid_at);
    select * into v_subscription from organization_subscriptions
     where org_id = p_org_id and status in ('trialing', 'active', 'past_due');
    perform ledger_subscription_event(
        v_subscription, v_subscription, 'subscription_payment',
        format('Payment %s received for the subscription to %s', p_payment_reference,
               (select name from plans where code = v_subscription.plan)),
        p_actor_id, v_at, 0, p_payment_reference, jsonb_build_object('payment_reference', p_payment_reference));
    perform ledger_audit(p_org_id, p_actor_id, 'subscription.payment_recorded', 'subscription', v_subscription.id,
                         jsonb_build_object('payment_reference', p_payment_reference)
                         || case when p_paid_at is null then '{}'::jsonb
                                 else jsonb_build_object('paid_at', p_paid_at) end);
    return query select true, v_at;
end;
$$;

comment on function record_subscription_payment(text, text, text, timestamptz) is
    'record_subscription_payment(p_org_id, p_payment_reference, p_actor_id, p_paid_at): returns one row: whether '
    'this call recorded the payment, and when the payment was recorded (now, or the first time). Records the '
    'payment of a past-due subscription: its ''subscription_payment'' history row (external_ref = the reference) '
    'and audit row, and the subscription active again (set_subscription_status). The same reference again returns '
    'recorded = false with the first recording''s time and changes nothing. p_paid_at (default now) dates a '
    'payment entered after the fact. p_actor_id must be a system admin (null: a trusted job). Locks the '
    'organization''s row, then the subscription. Raises what subscription_payment_check raises.';
