-- Subscription history: the org_billing_history rows (and audit rows) a
-- subscription change writes, their metadata and descriptions, and the reads
-- of them (what the organization's plan included at a moment). The rules:
-- the top of 068_subscription_terms.sql.



-- ledger_subscription_event(p_subscription, p_before, p_event_type,
-- p_description, p_actor_id, p_occurred_at, p_amount, p_external_ref,
-- p_extra): appends the subscription's org_billing_history row (metadata as
-- described at the top of 068_subscription_terms.sql, plus p_extra) dated p_occurred_at;
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

comment on function ledger_subscription_event(organization_subscriptions, organization_subscriptions, text, text, text, timestamptz, numeric, text, jsonb) is
    'ledger_subscription_event(p_subscription, p_before, p_event_type, p_description, p_actor_id, p_occurred_at, '
    'p_amount, p_external_ref, p_extra): appends the subscription''s org_billing_history row (metadata as '
    'described at the top of 068_subscription_terms.sql, plus p_extra) dated p_occurred_at; p_before is the '
    'subscription before the event (null: it is new). With an external_ref already recorded for the organization '
    'it writes nothing. Locks nothing.';


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

comment on function subscription_invoice(organization_subscriptions, timestamptz) is
    'subscription_invoice(p_subscription, p_from): appends the ''invoice'' row of the subscription''s current '
    'period for the part [p_from, period end) it pays: price_amount x that part''s seconds / the full period''s, '
    'in cents, dated p_from. Idempotent: its external_ref names the subscription''s number and the period''s '
    'start. Locks nothing.';


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

comment on function subscription_proration_metadata(organization_subscriptions, record) is
    'subscription_proration_metadata(p_s, p_p): the ''proration'' metadata of a change or cancel row: the period, '
    'and p_p''s seconds, credit and charge (a subscription_proration row). Raises nothing.';


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

comment on function subscription_included_metadata(record, numeric) is
    'subscription_included_metadata(p_ic, p_withheld): the ''included'' metadata of a change or cancel row: what '
    'subscription_included_change did (taken_back, overspent, granted credits) and the refund withheld for the '
    'overspent credits (dollars). Raises nothing.';


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

comment on function subscription_included_text(record, numeric) is
    'subscription_included_text(p_ic, p_withheld): the words a change or cancel row''s description adds about '
    'included credits ('''' when nothing moved). Raises nothing.';


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

comment on function subscription_last_event_at(organization_subscriptions) is
    'subscription_last_event_at(p_subscription): when the subscription''s latest history row (a change, an '
    'invoice) is dated. Raises nothing.';


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

comment on function org_included_credits(text, timestamptz) is
    'org_included_credits(p_org_id, p_at): the credits the organization''s plan includes each billing period, as '
    'it stood at p_at: the plan version named by its latest subscription history row at or before p_at, while '
    'that row says the subscription is live (0 otherwise, and 0 for an unknown organization). The period job '
    'calls renew_subscription first, so that a version or plan taking effect at a boundary is the one read there. '
    'Locks nothing; raises nothing.';
