-- The credit flow: purchase into the pool, allocate to members, take back,
-- deduct for metered usage. Three files, one subject each:
-- 030_credit_purchases.sql (this one: credits into the pool, and the
-- helpers all three use), 031_credit_allocations.sql (allocate to members,
-- take back, close an allocation) and 032_credit_deductions.sql (deduct for
-- metered usage).
--
-- Lock order, in every function: the organization's pool row first, then
-- allocation rows in user id order. Deductions lock only the member's
-- allocation row: the pool's used figure is summed from allocations (see the
-- view organization_credit_pools), so concurrent charges in one organization
-- never queue on a shared row.
-- Each function is meant to be one transaction; a caller that wraps several
-- calls in its own transaction must itself keep the order above.


-- ledger_time_text(p_at): a moment as a person reads it in a message:
-- 'YYYY-MM-DD HH:MM:SS UTC'. Raises nothing.
create or replace function ledger_time_text(p_at timestamptz)
returns text
language sql
stable
as $$
    select case when p_at is null then 'no time'
                when isfinite(p_at) then to_char(p_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')
                else p_at::text end;
$$;

comment on function ledger_time_text(timestamptz) is
    'ledger_time_text(p_at): a moment as a person reads it in a message: ''YYYY-MM-DD HH:MM:SS UTC''. Raises '
    'nothing.';


-- ledger_check_occurred_at(p_occurred_at, p_what): returns nothing.
-- For events reported after the fact (a metered service charging its calls
-- late, a purchase or plan change entered later): null is "now"; otherwise
-- the time must be neither in the future (more than one minute ahead of the
-- database clock: an allowance for the caller's clock skew) nor more than 400
-- days ago. Raises CB009.
create or replace function ledger_check_occurred_at(p_occurred_at timestamptz, p_what text)
returns void
language plpgsql
stable
as $$
begin
    if p_occurred_at is null then
        return;
    end if;
    if p_occurred_at = 'infinity' or p_occurred_at > clock_timestamp() + interval '1 minute' then
        raise exception using errcode = 'CB009',
            message = format('%s (%s) is in the future: give the time it happened, '
                             'at most now (the database clock says %s).',
                             p_what, ledger_time_text(p_occurred_at), ledger_time_text(clock_timestamp()));
    end if;
    if p_occurred_at < now() - interval '400 days' then
        raise exception using errcode = 'CB009',
            message = format('%s (%s) is more than 400 days ago: events older than that cannot be recorded.',
                             p_what, ledger_time_text(p_occurred_at));
    end if;
end;
$$;

comment on function ledger_check_occurred_at(timestamptz, text) is
    'ledger_check_occurred_at(p_occurred_at, p_what): returns nothing. For events reported after the fact (a '
    'metered service charging its calls late, a purchase or plan change entered later): null is "now"; otherwise '
    'the time must be neither in the future (more than one minute ahead of the database clock: an allowance for '
    'the caller''s clock skew) nor more than 400 days ago. Raises CB009.';



-- ledger_list_price(p_credits): the catalogue's list price of p_credits
-- credits in dollars (1 credit = $0.001), rounded up to the cent's hundredth
-- ($0.0001, money's precision). Raises nothing.
create or replace function ledger_list_price(p_credits numeric)
returns numeric
language sql
immutable
as $$
    select greatest(ceil(p_credits * 10) / 10000, 0.0001);
$$;

comment on function ledger_list_price(numeric) is
    'ledger_list_price(p_credits): the catalogue''s list price of p_credits credits in dollars (1 credit = '
    '$0.001), rounded up to the cent''s hundredth ($0.0001, money''s precision). Raises nothing.';


-- ledger_authorize_credits_in(p_actor_id, p_org_id, p_what): returns nothing.
-- Only trusted callers put credits in a pool directly: a system admin, or
-- the operator (a null actor, as ledger_authorize decides). Anyone else is
-- told to buy through an order. Raises CB002 (unknown actor), CB008.
create or replace function ledger_authorize_credits_in(p_actor_id text, p_org_id text, p_what text)
returns void
language plpgsql
stable
as $$
begin
    if p_actor_id is not null and ledger_role_in(p_actor_id, p_org_id) is distinct from 'system_admin' then
        perform ledger_require_user(p_actor_id, 'Acting user');
        raise exception using errcode = 'CB008',
            message = format('User %L cannot %s: only a system admin or the operator puts credits in a pool. '
                             'To buy credits, create an order (create_credit_order, `billing orders create`, '
                             'or "Buy credits"): its credits arrive when its payment is recorded.',
                             p_actor_id, p_what);
    end if;
    perform ledger_authorize(p_actor_id, p_org_id, 'system_admin');
end;
$$;

comment on function ledger_authorize_credits_in(text, text, text) is
    'ledger_authorize_credits_in(p_actor_id, p_org_id, p_what): returns nothing. Only trusted callers put credits '
    'in a pool directly: a system admin, or the operator (a null actor, as ledger_authorize decides). Anyone else '
    'is told to buy through an order. Raises CB002 (unknown actor), CB008.';


-- ledger_raise_pool_total(p_org_id, p_credits): returns the pool's total
-- credits after adding p_credits (a purchase or a grant coming in). The caller
-- holds the pool lock and writes the history row. Raises CB001 when the pool
-- would exceed 10^13 credits.
create or replace function ledger_raise_pool_total(p_org_id text, p_credits numeric)
returns numeric
language plpgsql
as $$
declare
    v_total numeric;
begin
    update credit_pools
       set total_credits = total_credits + p_credits, updated_at = now()
     where org_id = p_org_id
    returning total_credits into v_total;
    if v_total > 10000000000000 then
        raise exception using errcode = 'CB001',
            message = format('The pool would exceed 10,000,000,000,000 credits (it holds %s).',
                             ledger_amount_text(v_total - p_credits));
    end if;
    return v_total;
end;
$$;

comment on function ledger_raise_pool_total(text, numeric) is
    'ledger_raise_pool_total(p_org_id, p_credits): returns the pool''s total credits after adding p_credits (a '
    'purchase or a grant coming in). The caller holds the pool lock and writes the history row. Raises CB001 '
    'when the pool would exceed 10^13 credits.';


-- ledger_record_purchase_locked(p_org_id, p_order_id, p_credits, p_amount,
--                               p_actor_id, p_description, p_external_ref,
--                               p_occurred_at, p_expires_at): returns the
-- pool's total credits after the purchase.
-- The one internal path by which bought credits enter a pool: adds p_credits
-- to the pool, writes the 'credit_purchase' history row naming the paid
-- order p_order_id (its lot follows from the row, 092_lots.sql), the audit
-- row, and re-evaluates the pool's low-balance alert. The caller holds the
-- pool lock and has checked the figures, the actor and the order (paid).
-- Raises CB001 (the pool would exceed 10^13 credits).
create or replace function ledger_record_purchase_locked(
    p_org_id text,
    p_order_id text,
    p_credits numeric,
    p_amount numeric,
    p_actor_id text,
    p_description text,
    p_external_ref text,
    p_occurred_at timestamptz,
    p_expires_at timestamptz
)
returns numeric
language plpgsql
as $$
declare
    v_total numeric;
begin
    v_total := ledger_raise_pool_total(p_org_id, p_credits);

    insert into org_billing_history
        (org_id, event_type, credits, amount, description, total_credits_after, external_ref, created_by,
         created_at, credits_expire_at, credit_order_id)
    values (p_org_id, 'credit_purchase', p_credits, p_amount,
            coalesce(nullif(btrim(p_description), ''), format('%s credits purchased', ledger_amount_text(p_credits))),
            v_total, p_external_ref, p_actor_id, coalesce(p_occurred_at, now()), p_expires_at, p_order_id);

    perform ledger_audit(p_org_id, p_actor_id, 'credits.purchased', 'organization', p_org_id,
                         jsonb_build_object('credits', p_credits, 'amount', p_amount,
                                            'external_ref', p_external_ref, 'order_id', p_order_id)
                         || case when p_occurred_at is null then '{}'::jsonb
                                 else jsonb_build_object('occurred_at', p_occurred_at) end
                         || case when p_expires_at is null then '{}'::jsonb
                                 else jsonb_build_object('expires_at', p_expires_at) end);
    perform ledger_evaluate_pool_alert(p_org_id);
    return v_total;
end;
$$;

comment on function ledger_record_purchase_locked(text, text, numeric, numeric, text, text, text, timestamptz, timestamptz) is
    'ledger_record_purchase_locked(p_org_id, p_order_id, p_credits, p_amount, p_actor_id, p_description, '
    'p_external_ref, p_occurred_at, p_expires_at): returns the pool''s total credits after the purchase. The one '
    'internal path by which bought credits enter a pool: adds p_credits to the pool, writes the '
    '''credit_purchase'' history row naming the paid order p_order_id (its lot follows from the row, '
    '092_lots.sql), the audit row, and re-evaluates the pool''s low-balance alert. The caller holds the pool lock '
    'and has checked the figures, the actor and the order (paid). Raises CB001 (the pool would exceed 10^13 '
    'credits).';


-- add_credits_to_pool(p_org_id, p_credits, p_purchase_amount, p_actor_id,
--                     p_description, p_external_ref, p_occurred_at,
--                     p_expires_at): returns the pool's total credits after
-- the purchase.
-- A trusted caller's direct entry of a purchase that was paid outside an
-- order (a system admin, or the operator: a null actor on the owner's
-- connection; anyone else gets CB008 and is told to create an order). It is
-- recorded as a paid order (source 'direct', credit_orders) and one
-- 'credit_purchase' history row naming it, so every credit that enters a
-- pool has a paid order or a grant. The amount paid must be more than $0
-- (free credits are a grant: grant_credits, with a reason) and at most the
-- list price of the credits (1 credit = $0.001): a price above it is a typo
-- that would land in revenue; below it is a discount the trusted caller
-- agreed to.
-- p_external_ref (the payment's id) is unique across all organizations: the
-- same reference again for the same organization and figures changes nothing
-- and returns the first answer; for other figures or another organization it
-- raises CB007.
-- p_occurred_at (default now) dates the history row when the purchase is
-- entered after the fact; its recorded_at stays the time of the call. The
-- credits are in the pool from the call on, whatever the date.
-- p_expires_at (default never) is when the credits expire: their lot's
-- unconsumed remainder then leaves the pool (092_lots.sql). Re-evaluates the
-- pool's low-balance alert (094_alerts.sql).
-- Locks the pool row. Raises CB001 (also: $0, above the list price), CB002,
-- CB011, CB008, CB007 (reference reused with other figures or for another
-- organization), CB009 (also: p_occurred_at in the future or more than 400
-- days ago, p_expires_at not in the future).
create or replace function add_credits_to_pool(
    p_org_id text,
    p_credits numeric,
    p_purchase_amount numeric,
    p_actor_id text default null,
    p_description text default null,
    p_external_ref text default null,
    p_occurred_at timestamptz default null,
    p_expires_at timestamptz default null
)
returns numeric
language plpgsql
as $$
declare
    v_first credit_orders;
    v_order_id text;
    v_total numeric;
begin
    perform ledger_check_credits(p_credits, 'Credits to add');
    perform ledger_check_money(p_purchase_amount, 'Purchase amount');
    perform ledger_check_text(p_description, 'Description', 500, false);
    perform ledger_check_text(p_external_ref, 'Payment reference', 200, false);
    perform ledger_check_occurred_at(p_occurred_at, 'Purchase time');
    if p_expires_at <= now() or p_expires_at = 'infinity' then
        raise exception using errcode = 'CB009',
            message = format('Expiry (%s) must be a moment in the future (leave it empty for credits that never expire).',
                             ledger_time_text(p_expires_at));
    end if;
    perform ledger_require_org(p_org_id, true);
    perform ledger_authorize_credits_in(p_actor_id, p_org_id, 'add credits to a pool');
    -- the price is judged once the caller is known to be trusted: the figures below are theirs to fix
    if p_purchase_amount = 0 then
        raise exception using errcode = 'CB001',
            message = 'Purchase amount is $0: a purchase carries the amount paid. Free credits are a grant: '
                      'use grant_credits(org, credits, reason, actor) (`billing credits grant ORG CREDITS --reason TEXT`) '
                      'with the reason for them.';
    end if;
    if p_purchase_amount > ledger_list_price(p_credits) then
        raise exception using errcode = 'CB001',
            message = format('Purchase amount $%s is above the list price of %s credits ($%s at $0.001 a credit): '
                             'check the amount paid.',
                             ledger_amount_text(p_purchase_amount), ledger_amount_text(p_credits),
                             ledger_amount_text(ledger_list_price(p_credits)));
    end if;

    perform ledger_lock_pool(p_org_id);

    if p_external_ref is not null then
        select * into v_first from credit_orders where payment_reference = p_external_ref;
        if found then
            if v_first.org_id <> p_org_id or v_first.credits <> p_credits or v_first.price <> p_purchase_amount
               or v_first.credits_expire_at is distinct from p_expires_at then
                raise exception using errcode = 'CB007',
                    message = format('Payment reference %L was already recorded for order %s (%s credits, $%s)%s; '
                                     'one payment credits one order: use the payment''s own reference.',
                                     p_external_ref, v_first.id, ledger_amount_text(v_first.credits),
                                     ledger_amount_text(v_first.price),
                                     case when v_first.org_id <> p_org_id
                                          then format(' of organization %L', v_first.org_id) else '' end);
            end if;
            return (select h.total_credits_after from org_billing_history h
                     where h.org_id = v_first.org_id and h.credit_order_id = v_first.id);
        end if;
        if exists (select 1 from org_billing_history h where h.org_id = p_org_id and h.external_ref = p_external_ref) then
            raise exception using errcode = 'CB007',
                message = format('Payment reference %L is already in the billing history of organization %L; '
                                 'use the payment''s own reference.', p_external_ref, p_org_id);
        end if;
    end if;

    v_order_id := ledger_new_order_id();
    begin
        insert into credit_orders
            (org_id, id, source, ordered_credits, credits, list_price, price, description, status,
             credits_expire_at, ordered_by, payment_reference, paid_at, payment_recorded_by, payment_recorded_at)
        values (p_org_id, v_order_id, 'direct', p_credits, p_credits, ledger_list_price(p_credits), p_purchase_amount,
                coalesce(nullif(btrim(p_description), ''), format('%s credits', ledger_amount_text(p_credits))),
                'paid', p_expires_at, p_actor_id, p_external_ref, coalesce(p_occurred_at, now()), p_actor_id, now());
    exception when unique_violation then
        raise exception using errcode = 'CB007',
            message = format('Payment reference %L was recorded for another order meanwhile; '
                             'one payment credits one order.', p_external_ref);
    end;
    v_total := ledger_record_purchase_locked(p_org_id, v_order_id, p_credits, p_purchase_amount, p_actor_id,
                                             coalesce(p_description, format('%s credits purchased', p_credits)),
                                             p_external_ref, p_occurred_at, p_expires_at);
    return v_total;
end;
$$;

comment on function add_credits_to_pool(text, numeric, numeric, text, text, text, timestamptz, timestamptz) is
    'add_credits_to_pool(p_org_id, p_credits, p_purchase_amount, p_actor_id, p_description, p_external_ref, '
    'p_occurred_at, p_expires_at): returns the pool''s total credits after the purchase. A trusted caller''s '
    'direct entry of a purchase that was paid outside an order (a system admin, or the operator: a null actor on '
    'the owner''s connection; anyone else gets CB008 and is told to create an order). It is recorded as a paid '
    'order (source ''direct'', credit_orders) and one ''credit_purchase'' history row naming it, so every credit '
    'that enters a pool has a paid order or a grant. The amount paid must be more than $0 (free credits are a '
    'grant: grant_credits, with a reason) and at most the list price of the credits (1 credit = $0.001): a price '
    'above it is a typo that would land in revenue; below it is a discount the trusted caller agreed to. '
    'p_external_ref (the payment''s id) is unique across all organizations: the same reference again for the same '
    'organization and figures changes nothing and returns the first answer; for other figures or another '
    'organization it raises CB007. p_occurred_at (default now) dates the history row when the purchase is entered '
    'after the fact; its recorded_at stays the time of the call. The credits are in the pool from the call on, '
    'whatever the date. p_expires_at (default never) is when the credits expire: their lot''s unconsumed '
    'remainder then leaves the pool (092_lots.sql). Re-evaluates the pool''s low-balance alert (094_alerts.sql). '
    'Locks the pool row. Raises CB001 (also: $0, above the list price), CB002, CB011, CB008, CB007 (reference '
    'reused with other figures or for another organization), CB009 (also: p_occurred_at in the future or more '
    'than 400 days ago, p_expires_at not in the future).';
