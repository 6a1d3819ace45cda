-- The credit flow: purchase into the pool, allocate to members, take back,
-- deduct for metered usage.
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


-- add_credits_to_pool's signatures before p_occurred_at and p_expires_at were
-- added: create or replace cannot add a parameter, and two versions would make
-- calls ambiguous.
drop function if exists add_credits_to_pool(text, numeric, numeric, text, text, text);

drop function if exists add_credits_to_pool(text, numeric, numeric, text, text, text, timestamptz);


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
    update credit_pools
       set total_credits = total_credits + p_credits, updated_at = now()
     where org_id = p_org_id
    returning total_credits into v_total;
    if v_total > 10000000000000 then
        raise exception using errcode = 'CB001',
            message = format('The pool would exceed 10,000,000,000,000 credits (it holds %s).',
                             ledger_amount_text(v_total - p_credits));
    end if;

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


-- ledger_allocate_locked(p_org_id, p_user_id, p_credits, p_actor_id): returns
-- the member's remaining credits. Adds p_credits to the member's active
-- allocation, opening one if there is none. The caller holds the pool lock
-- and has checked the amount, the membership and the pool's available credits.
create or replace function ledger_allocate_locked(
    p_org_id text,
    p_user_id text,
    p_credits numeric,
    p_actor_id text
)
returns numeric
language plpgsql
as $$
declare
    v_allocation user_credit_allocations;
    v_opened boolean := false;
begin
    update user_credit_allocations
       set allocated_credits = allocated_credits + p_credits, updated_at = now()
     where org_id = p_org_id and user_id = p_user_id and is_active
    returning * into v_allocation;
    if not found then
        insert into user_credit_allocations (org_id, user_id, allocated_credits, allocated_by)
        values (p_org_id, p_user_id, p_credits, p_actor_id)
        returning * into v_allocation;
        v_opened := true;
    end if;

    update credit_pools
       set allocated_credits = allocated_credits + p_credits, updated_at = now()
     where org_id = p_org_id;

    insert into credit_allocation_events (org_id, allocation_id, user_id, kind, credits, actor_id)
    values (p_org_id, v_allocation.id, p_user_id, 'allocate', p_credits, p_actor_id);

    perform ledger_audit(p_org_id, p_actor_id,
                         case when v_opened then 'allocation.created' else 'credits.allocated' end,
                         'user', p_user_id,
                         jsonb_build_object('credits', p_credits, 'allocation_id', v_allocation.id));
    return v_allocation.remaining_credits;
end;
$$;

comment on function ledger_allocate_locked(text, text, numeric, text) is
    'ledger_allocate_locked(p_org_id, p_user_id, p_credits, p_actor_id): returns the member''s remaining credits. '
    'Adds p_credits to the member''s active allocation, opening one if there is none. The caller holds the pool '
    'lock and has checked the amount, the membership and the pool''s available credits.';


-- ledger_refuse_short_pool(p_pool, p_needed): raises CB004 when the pool's
-- available credits are below p_needed; returns nothing otherwise.
create or replace function ledger_refuse_short_pool(p_pool credit_pools, p_needed numeric)
returns void
language plpgsql
immutable
as $$
begin
    if p_pool.total_credits - p_pool.allocated_credits < p_needed then
        raise exception using errcode = 'CB004',
            message = format('Not enough credits in the pool of organization %L: %s available, %s requested. '
                             'Add credits or take back unused ones first.',
                             p_pool.org_id, ledger_amount_text(p_pool.total_credits - p_pool.allocated_credits),
                             ledger_amount_text(p_needed));
    end if;
end;
$$;

comment on function ledger_refuse_short_pool(credit_pools, numeric) is
    'ledger_refuse_short_pool(p_pool, p_needed): raises CB004 when the pool''s available credits are below '
    'p_needed; returns nothing otherwise.';


-- allocate_credits_to_user(p_org_id, p_user_id, p_credits, p_allocated_by):
-- returns the member's remaining credits after the allocation.
-- Moves p_credits from the pool's available credits to the member's active
-- allocation (created if missing). p_allocated_by must be an admin of the
-- org (null: a trusted job). Locks the pool row, then the allocation.
-- Raises CB001, CB002, CB003, CB004, CB008, CB011.
create or replace function allocate_credits_to_user(
    p_org_id text,
    p_user_id text,
    p_credits numeric,
    p_allocated_by text
)
returns numeric
language plpgsql
as $$
declare
    v_pool credit_pools;
begin
    perform ledger_check_credits(p_credits, 'Credits to allocate');
    perform ledger_require_org(p_org_id, true);
    perform ledger_authorize(p_allocated_by, p_org_id, 'admin');
    v_pool := ledger_lock_pool(p_org_id);
    -- membership is checked under the pool lock: removals take it too
    perform ledger_require_member(p_org_id, p_user_id);
    perform ledger_refuse_short_pool(v_pool, p_credits);
    return ledger_allocate_locked(p_org_id, p_user_id, p_credits, p_allocated_by);
end;
$$;

comment on function allocate_credits_to_user(text, text, numeric, text) is
    'allocate_credits_to_user(p_org_id, p_user_id, p_credits, p_allocated_by): returns the member''s remaining '
    'credits after the allocation. Moves p_credits from the pool''s available credits to the member''s active '
    'allocation (created if missing). p_allocated_by must be an admin of the org (null: a trusted job). Locks the '
    'pool row, then the allocation. Raises CB001, CB002, CB003, CB004, CB008, CB011.';


-- allocate_credits_to_users(p_org_id, p_user_ids, p_credits, p_allocated_by):
-- returns the number of members allocated to.
-- Gives each listed member p_credits, all or nothing. Locks the pool row,
-- then the allocations in user id order, whatever order the list has.
-- Raises CB001, CB002, CB003, CB004, CB008, CB009 (empty list or a user
-- listed twice), CB011.
create or replace function allocate_credits_to_users(
    p_org_id text,
    p_user_ids text[],
    p_credits numeric,
    p_allocated_by text
)
returns integer
language plpgsql
as $$
declare
    v_pool credit_pools;
    v_user_id text;
    v_count integer;
begin
    perform ledger_check_credits(p_credits, 'Credits to allocate to each member');
    v_count := coalesce(cardinality(p_user_ids), 0);
    if v_count = 0 then
        raise exception using errcode = 'CB009', message = 'Choose at least one member to allocate to.';
    end if;
    if v_count <> (select count(distinct u) from unnest(p_user_ids) u) then
        raise exception using errcode = 'CB009', message = 'A member is listed more than once.';
    end if;
    perform ledger_check_credits(p_credits * v_count, 'Total credits to allocate');
    perform ledger_require_org(p_org_id, true);
    perform ledger_authorize(p_allocated_by, p_org_id, 'admin');
    v_pool := ledger_lock_pool(p_org_id);
    for v_user_id in select u from unnest(p_user_ids) u order by u collate "C" loop
        perform ledger_require_member(p_org_id, v_user_id);
    end loop;
    perform ledger_refuse_short_pool(v_pool, p_credits * v_count);
    for v_user_id in select u from unnest(p_user_ids) u order by u collate "C" loop
        perform ledger_allocate_locked(p_org_id, v_user_id, p_credits, p_allocated_by);
    end loop;
    return v_count;
end;
$$;

comment on function allocate_credits_to_users(text, text[], numeric, text) is
    'allocate_credits_to_users(p_org_id, p_user_ids, p_credits, p_allocated_by): returns the number of members '
    'allocated to. Gives each listed member p_credits, all or nothing. Locks the pool row, then the allocations '
    'in user id order, whatever order the list has. Raises CB001, CB002, CB003, CB004, CB008, CB009 (empty list '
    'or a user listed twice), CB011.';


-- reclaim_credits_from_user(p_org_id, p_user_id, p_credits, p_reclaimed_by):
-- returns the credits taken back.
-- Moves unused credits from the member's active allocation back to the
-- pool's available credits; p_credits null takes back everything unused.
-- Never takes back credits already used or held for a call in progress.
-- Locks the pool row, then the allocation. Raises CB001, CB002, CB003, CB005 (fewer unused credits than
-- asked), CB006 (no active allocation), CB008.
create or replace function reclaim_credits_from_user(
    p_org_id text,
    p_user_id text,
    p_credits numeric,
    p_reclaimed_by text
)
returns numeric
language plpgsql
as $$
declare
    v_allocation user_credit_allocations;
    v_credits numeric;
begin
    if p_credits is not null then
        perform ledger_check_credits(p_credits, 'Credits to take back');
    end if;
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_reclaimed_by, p_org_id, 'admin');
    perform ledger_lock_pool(p_org_id);
    perform ledger_require_member(p_org_id, p_user_id);
    select * into v_allocation
      from user_credit_allocations
     where org_id = p_org_id and user_id = p_user_id and is_active
       for update;
    if not found then
        raise exception using errcode = 'CB006',
            message = format('User %L has no active allocation in organization %L: nothing to take back.',
                             p_user_id, p_org_id);
    end if;
    v_credits := coalesce(p_credits, v_allocation.remaining_credits - v_allocation.held_credits);
    if v_credits > v_allocation.remaining_credits - v_allocation.held_credits then
        raise exception using errcode = 'CB005',
            message = format('User %L has only %s unused credits%s: cannot take back %s.',
                             p_user_id, ledger_amount_text(v_allocation.remaining_credits - v_allocation.held_credits),
                             case when v_allocation.held_credits > 0
                                  then format(' (%s more are held for calls in progress)',
                                              ledger_amount_text(v_allocation.held_credits)) else '' end,
                             ledger_amount_text(v_credits));
    end if;
    if v_credits = 0 then
        return 0;
    end if;

    update user_credit_allocations
       set allocated_credits = allocated_credits - v_credits, updated_at = now()
     where org_id = p_org_id and id = v_allocation.id;
    update credit_pools
       set allocated_credits = allocated_credits - v_credits, updated_at = now()
     where org_id = p_org_id;
    insert into credit_allocation_events (org_id, allocation_id, user_id, kind, credits, actor_id)
    values (p_org_id, v_allocation.id, p_user_id, 'reclaim', -v_credits, p_reclaimed_by);
    perform ledger_audit(p_org_id, p_reclaimed_by, 'credits.reclaimed', 'user', p_user_id,
                         jsonb_build_object('credits', v_credits, 'allocation_id', v_allocation.id));
    return v_credits;
end;
$$;

comment on function reclaim_credits_from_user(text, text, numeric, text) is
    'reclaim_credits_from_user(p_org_id, p_user_id, p_credits, p_reclaimed_by): returns the credits taken back. '
    'Moves unused credits from the member''s active allocation back to the pool''s available credits; p_credits '
    'null takes back everything unused. Never takes back credits already used or held for a call in progress. '
    'Locks the pool row, then the allocation. Raises CB001, CB002, CB003, CB005 (fewer unused credits than '
    'asked), CB006 (no active allocation), CB008.';


-- ledger_close_allocation's signature before p_closed_at was added.
drop function if exists ledger_close_allocation(text, text, text);

drop function if exists ledger_close_allocation(text, text, text, timestamptz);


-- ledger_close_allocation(p_org_id, p_allocation_id, p_actor_id,
-- p_closed_at, p_keep_holds): returns the unused credits returned to the
-- pool. Closes an active allocation: unused credits (held ones included)
-- return to the pool's available credits ('close' event), what it used
-- leaves the pool's total (a 'usage_settlement' billing history row) and
-- moves to closed_used_credits, so the pool's used figure is unchanged. Its
-- open credit holds are released (status 'released', reason
-- 'allocation_closed'), unless p_keep_holds: then they stay open for the
-- caller to move to the member's next allocation in the same transaction (a
-- period reset). p_closed_at (default now: the period job passes the
-- boundary) is the allocation's period_end and the settlement row's date.
-- The caller holds the pool lock; locks the allocation, then its holds.
create or replace function ledger_close_allocation(
    p_org_id text,
    p_allocation_id text,
    p_actor_id text,
    p_closed_at timestamptz default null,
    p_keep_holds boolean default false
)
returns numeric
language plpgsql
as $$
declare
    v_allocation user_credit_allocations;
    v_total numeric;
begin
    select * into v_allocation
      from user_credit_allocations
     where org_id = p_org_id and id = p_allocation_id and is_active
       for update;
    if not found then
        return 0;
    end if;
    if v_allocation.held_credits > 0 and not p_keep_holds then
        update credit_holds
           set status = 'released', close_reason = 'allocation_closed', closed_at = now()
         where org_id = p_org_id and allocation_id = p_allocation_id and status = 'open';
    end if;
    update user_credit_allocations
       set allocated_credits = used_credits, held_credits = 0, is_active = false,
           period_end = coalesce(p_closed_at, now()),
           closed_at = now(), updated_at = now()
     where org_id = p_org_id and id = p_allocation_id;
    if v_allocation.remaining_credits > 0 then
        insert into credit_allocation_events (org_id, allocation_id, user_id, kind, credits, actor_id)
        values (p_org_id, p_allocation_id, v_allocation.user_id, 'close',
                -v_allocation.remaining_credits, p_actor_id);
    end if;
    update credit_pools
       set allocated_credits = allocated_credits - v_allocation.allocated_credits,
           total_credits = total_credits - v_allocation.used_credits,
           closed_used_credits = closed_used_credits + v_allocation.used_credits,
           updated_at = now()
     where org_id = p_org_id
    returning total_credits into v_total;
    if v_allocation.used_credits > 0 then
        insert into org_billing_history
            (org_id, event_type, credits, description, metadata, total_credits_after, created_by, created_at)
        values (p_org_id, 'usage_settlement', -v_allocation.used_credits,
                format('%s credits used by %s settled when the allocation closed',
                       ledger_amount_text(v_allocation.used_credits), v_allocation.user_id),
                jsonb_build_object('allocation_id', p_allocation_id, 'user_id', v_allocation.user_id),
                v_total, p_actor_id, coalesce(p_closed_at, now()));
    end if;
    perform ledger_audit(p_org_id, p_actor_id, 'allocation.closed', 'user', v_allocation.user_id,
                         jsonb_build_object('allocation_id', p_allocation_id,
                                            'used', v_allocation.used_credits,
                                            'returned', v_allocation.remaining_credits));
    return v_allocation.remaining_credits;
end;
$$;

comment on function ledger_close_allocation(text, text, text, timestamptz, boolean) is
    'ledger_close_allocation(p_org_id, p_allocation_id, p_actor_id, p_closed_at, p_keep_holds): returns the '
    'unused credits returned to the pool. Closes an active allocation: unused credits (held ones included) return '
    'to the pool''s available credits (''close'' event), what it used leaves the pool''s total (a '
    '''usage_settlement'' billing history row) and moves to closed_used_credits, so the pool''s used figure is '
    'unchanged. Its open credit holds are released (status ''released'', reason ''allocation_closed''), unless '
    'p_keep_holds: then they stay open for the caller to move to the member''s next allocation in the same '
    'transaction (a period reset). p_closed_at (default now: the period job passes the boundary) is the '
    'allocation''s period_end and the settlement row''s date. The caller holds the pool lock; locks the '
    'allocation, then its holds.';


-- ledger_check_usage(p_service_type, p_service_name, p_request_id, p_metadata):
-- returns nothing. Raises CB009 unless the service type is a lowercase key
-- (letters, digits, '_', '.', '-'; at most 64), the service name is 1-200
-- characters, the request id (optional) 1-200 characters and the metadata a
-- JSON object of at most 8 kB, not counting its 'pricing' and 'hold' entries
-- (the ledger's own: charge_usage and settle add them), which may take 8 kB more.
create or replace function ledger_check_usage(
    p_service_type text,
    p_service_name text,
    p_request_id text,
    p_metadata jsonb
)
returns void
language plpgsql
immutable
as $$
begin
    if p_service_type is null or p_service_type !~ '^[a-z][a-z0-9_.-]{0,63}$' then
        raise exception using errcode = 'CB009',
            message = format('Service type must be a lowercase key like ''company_enrichment'' '
                             '(letters, digits, _ . -; at most 64 characters); got %L.',
                             left(p_service_type, 80));
    end if;
    perform ledger_check_text(p_service_name, 'Service name', 200);
    if p_request_id is not null then
        perform ledger_check_text(p_request_id, 'Request id', 200);
    end if;
    if p_metadata is null or jsonb_typeof(p_metadata) <> 'object' then
        raise exception using errcode = 'CB009', message = 'Metadata must be a JSON object.';
    end if;
    -- the caller's metadata: 8 kB; what the ledger itself adds (charge_usage's pricing explanation,
    -- settle_hold's hold figures) is counted apart
    if octet_length((p_metadata - 'pricing' - 'hold')::text) > 8192 then
        raise exception using errcode = 'CB009', message = 'Metadata is too large: at most 8 kB.';
    end if;
    if octet_length(p_metadata::text) > 16384 then
        raise exception using errcode = 'CB009',
            message = 'Metadata is too large: its ''pricing'' and ''hold'' entries may take at most 8 kB more.';
    end if;
end;
$$;

comment on function ledger_check_usage(text, text, text, jsonb) is
    'ledger_check_usage(p_service_type, p_service_name, p_request_id, p_metadata): returns nothing. Raises CB009 '
    'unless the service type is a lowercase key (letters, digits, ''_'', ''.'', ''-''; at most 64), the service '
    'name is 1-200 characters, the request id (optional) 1-200 characters and the metadata a JSON object of at '
    'most 8 kB, not counting its ''pricing'' and ''hold'' entries (the ledger''s own: charge_usage and settle add '
    'them), which may take 8 kB more.';


-- ledger_replay_deduction(p_first, p_user_id, p_credits, p_service_type,
-- p_service_name): returns the remaining credits the first call answered.
-- Raises CB007 when the retry differs from the first call in user, amount or
-- service.
create or replace function ledger_replay_deduction(
    p_first credit_usage_attribution,
    p_user_id text,
    p_credits numeric,
    p_service_type text,
    p_service_name text
)
returns numeric
language plpgsql
immutable
as $$
begin
    if p_first.user_id <> p_user_id or p_first.credits_used <> p_credits
       or p_first.service_type <> p_service_type or p_first.service_name <> p_service_name then
        raise exception using errcode = 'CB007',
            message = format('Request id %L was already used for another charge '
                             '(%s credits to user %L for %s/%s); use a new request id for a new charge.',
                             p_first.request_id, ledger_amount_text(p_first.credits_used), p_first.user_id,
                             p_first.service_type, p_first.service_name);
    end if;
    return p_first.remaining_after;
end;
$$;

comment on function ledger_replay_deduction(credit_usage_attribution, text, numeric, text, text) is
    'ledger_replay_deduction(p_first, p_user_id, p_credits, p_service_type, p_service_name): returns the '
    'remaining credits the first call answered. Raises CB007 when the retry differs from the first call in user, '
    'amount or service.';


-- ledger_refuse_deduction(p_org_id, p_user_id, p_credits): always raises,
-- saying why a deduction found no allocation able to pay: CB002 (unknown
-- org or user), CB011 (org not active), CB003 (not a member), CB006
-- (allocation closed), CB005 (no allocation, or too few credits remaining).
create or replace function ledger_refuse_deduction(p_org_id text, p_user_id text, p_credits numeric)
returns void
language plpgsql
stable
as $$
declare
    v_remaining numeric;
    v_held numeric;
begin
    perform ledger_require_org(p_org_id, true);
    perform ledger_require_member(p_org_id, p_user_id);
    select remaining_credits - held_credits, held_credits into v_remaining, v_held
      from user_credit_allocations
     where org_id = p_org_id and user_id = p_user_id and is_active;
    if not found then
        if exists (select 1 from user_credit_allocations where org_id = p_org_id and user_id = p_user_id) then
            raise exception using errcode = 'CB006',
                message = format('The allocation of user %L in organization %L is closed: '
                                 'ask an org admin to allocate credits.', p_user_id, p_org_id);
        end if;
        raise exception using errcode = 'CB005',
            message = format('User %L has no credits allocated in organization %L: '
                             'ask an org admin to allocate credits.', p_user_id, p_org_id);
    end if;
    raise exception using errcode = 'CB005',
        message = format('Insufficient credits: user %L has %s remaining in organization %L%s, %s needed.',
                         p_user_id, ledger_amount_text(v_remaining), p_org_id,
                         case when v_held > 0 then format(' (%s more held for calls in progress)',
                                                          ledger_amount_text(v_held)) else '' end,
                         ledger_amount_text(p_credits));
end;
$$;

comment on function ledger_refuse_deduction(text, text, numeric) is
    'ledger_refuse_deduction(p_org_id, p_user_id, p_credits): always raises, saying why a deduction found no '
    'allocation able to pay: CB002 (unknown org or user), CB011 (org not active), CB003 (not a member), CB006 '
    '(allocation closed), CB005 (no allocation, or too few credits remaining).';


-- deduct_credits's signature before p_occurred_at was added (see
-- add_credits_to_pool above).
drop function if exists deduct_credits(text, text, numeric, text, text, text, jsonb);


-- deduct_credits(p_org_id, p_user_id, p_credits, p_service_type,
--                p_service_name, p_request_id, p_metadata, p_occurred_at):
-- returns the member's remaining credits after the charge (net of credits
-- held for calls in progress, which a charge cannot spend).
-- Charges the member's active allocation and writes one attribution row, in
-- one statement; the pool's used figure follows from the allocation.
-- A non-null p_request_id makes the call idempotent per organization: the
-- same request again charges nothing more and returns the first answer; the
-- same request id with another user, amount or service raises CB007.
-- p_occurred_at, for a call reported after the fact, is when the call
-- happened (default now): the attribution row's created_at; its recorded_at
-- is the time of the charge. The charge always comes out of the member's
-- current allocation.
-- The charge that takes the allocation from under 90% used to 90% or more
-- also opens its low-balance alert (094_alerts.sql; once per allocation).
-- A charge that waited on the member's allocation while a period reset
-- closed it and opened the next one is charged to the new allocation (one
-- more attempt, in a new statement), never refused for it.
-- Locks only the member's allocation row. Raises CB001, CB002, CB003, CB005,
-- CB006, CB007, CB009 (also: p_occurred_at in the future or more than 400
-- days ago), CB011.
create or replace function deduct_credits(
    p_org_id text,
    p_user_id text,
    p_credits numeric,
    p_service_type text,
    p_service_name text,
    p_request_id text default null,
    p_metadata jsonb default '{}',
    p_occurred_at timestamptz default null
)
returns numeric
language plpgsql
as $$
declare
    v_first credit_usage_attribution;
    v_allocation_id text;
    v_allocated numeric;
    v_used numeric;
    v_remaining numeric;
    v_recorded boolean;
    v_attempt integer;
begin
    -- one expression for the common case; the checks that name what is wrong
    -- (and raise) run only when it fails. This is the hottest path of the ledger.
    if not coalesce(p_credits > 0 and p_credits <= 1000000000000 and p_credits = round(p_credits, 6)
                    and p_service_type ~ '^[a-z][a-z0-9_.-]{0,63}$'
                    and length(p_service_name) <= 200 and btrim(p_service_name) <> ''
                    and p_service_name !~ '[[:cntrl:]]'
                    and (p_request_id is null
                         or (length(p_request_id) <= 200 and btrim(p_request_id) <> ''
                             and p_request_id !~ '[[:cntrl:]]'))
                    and jsonb_typeof(p_metadata) = 'object' and octet_length(p_metadata::text) <= 8192
                    and (p_occurred_at is null
                         or (p_occurred_at <= clock_timestamp() + interval '1 minute'
                             and p_occurred_at >= now() - interval '400 days')),
                    false) then
        perform ledger_check_credits(p_credits, 'Credits to deduct');
        perform ledger_check_usage(p_service_type, p_service_name, p_request_id, p_metadata);
        perform ledger_check_occurred_at(p_occurred_at, 'Usage time');
    end if;

    -- The charge and its attribution row in one statement. The UPDATE's WHERE
    -- clause is re-checked on the newest row version after a wait, so
    -- concurrent charges can never overdraw the allocation. The loop runs it
    -- a second time only when it charged nothing (see the end of the loop).
    for v_attempt in 1 .. 2 loop
        with charged as (
            update user_credit_allocations
               set used_credits = used_credits + p_credits, updated_at = now()
             where org_id = p_org_id and user_id = p_user_id and is_active
               and remaining_credits - held_credits >= p_credits
               and exists (select 1 from organizations where id = p_org_id and status = 'active')
               -- a retry of a recorded request touches nothing: it is answered below
               and not exists (select 1 from credit_usage_attribution
                                where org_id = p_org_id and request_id = p_request_id)
            returning id, allocated_credits, used_credits, remaining_credits - held_credits as remaining_credits
        ), recorded as (
            insert into credit_usage_attribution
                (org_id, user_id, allocation_id, credits_used, service_type, service_name,
                 request_id, metadata, remaining_after, created_at)
            select p_org_id, p_user_id, c.id, p_credits, p_service_type, p_service_name,
                   p_request_id, p_metadata, c.remaining_credits, coalesce(p_occurred_at, now())
              from charged c
            on conflict (org_id, request_id) where request_id is not null do nothing
            returning 1
        )
        select c.id, c.allocated_credits, c.used_credits, c.remaining_credits, exists (select 1 from recorded)
          into v_allocation_id, v_allocated, v_used, v_remaining, v_recorded
          from charged c;
        if v_recorded then
            -- crossing 90% used: rare, one extra insert
            if v_used * 10 >= v_allocated * 9 and (v_used - p_credits) * 10 < v_allocated * 9 then
                perform ledger_raise_allocation_alert(p_org_id, v_allocation_id, p_user_id, v_allocated, v_used);
            end if;
            return v_remaining;
        end if;
        -- Charged nothing. Under read committed, an UPDATE that waited on the
        -- member's allocation while the period job closed it and opened the next
        -- one re-checks the closed row (no longer active) and cannot see the new
        -- one: its statement's snapshot is older than the new row. When a new
        -- statement (a new snapshot) finds an active allocation that pays for
        -- the charge, run the charge once more; otherwise answer or refuse below.
        exit when v_allocation_id is not null or v_attempt = 2
               or (p_request_id is not null
                   and exists (select 1 from credit_usage_attribution
                                where org_id = p_org_id and request_id = p_request_id))
               or not exists (select 1 from user_credit_allocations
                               where org_id = p_org_id and user_id = p_user_id and is_active
                                 and remaining_credits - held_credits >= p_credits);
    end loop;

    -- Nothing recorded: a retry of a recorded request id (also one that queued
    -- behind its own first call and found the balance spent), or a refusal.
    if p_request_id is not null then
        select * into v_first from credit_usage_attribution
         where org_id = p_org_id and request_id = p_request_id;
        if found then
            if v_allocation_id is not null then
                -- the first call committed while this one waited for the row
                -- (so the check above could not see it): take this charge back
                update user_credit_allocations
                   set used_credits = used_credits - p_credits
                 where org_id = p_org_id and id = v_allocation_id;
            end if;
            return ledger_replay_deduction(v_first, p_user_id, p_credits, p_service_type, p_service_name);
        end if;
    end if;
    if v_allocation_id is not null then
        -- unreachable under read committed; refuse rather than keep an unrecorded charge
        raise exception using errcode = 'XX000',
            message = format('deduct_credits: the charge for request %L was neither recorded nor replayed.',
                             p_request_id);
    end if;
    perform ledger_refuse_deduction(p_org_id, p_user_id, p_credits);
    return null;  -- not reached: ledger_refuse_deduction always raises
end;
$$;

comment on function deduct_credits(text, text, numeric, text, text, text, jsonb, timestamptz) is
    'deduct_credits(p_org_id, p_user_id, p_credits, p_service_type, p_service_name, p_request_id, p_metadata, '
    'p_occurred_at): returns the member''s remaining credits after the charge (net of credits held for calls in '
    'progress, which a charge cannot spend). Charges the member''s active allocation and writes one attribution '
    'row, in one statement; the pool''s used figure follows from the allocation. A non-null p_request_id makes '
    'the call idempotent per organization: the same request again charges nothing more and returns the first '
    'answer; the same request id with another user, amount or service raises CB007. p_occurred_at, for a call '
    'reported after the fact, is when the call happened (default now): the attribution row''s created_at; its '
    'recorded_at is the time of the charge. The charge always comes out of the member''s current allocation. The '
    'charge that takes the allocation from under 90% used to 90% or more also opens its low-balance alert '
    '(094_alerts.sql; once per allocation). A charge that waited on the member''s allocation while a period reset '
    'closed it and opened the next one is charged to the new allocation (one more attempt, in a new statement), '
    'never refused for it. Locks only the member''s allocation row. Raises CB001, CB002, CB003, CB005, CB006, '
    'CB007, CB009 (also: p_occurred_at in the future or more than 400 days ago), CB011.';


-- has_sufficient_credits(p_org_id, p_user_id, p_credits): true when the
-- member's active allocation has at least p_credits remaining, net of held
-- credits, and the organization is active. Takes no lock (the answer can be stale by the time
-- of the charge; deduct_credits decides). Raises CB001, CB002, CB003.
create or replace function has_sufficient_credits(p_org_id text, p_user_id text, p_credits numeric)
returns boolean
language plpgsql
stable
as $$
declare
    v_remaining numeric;
begin
    perform ledger_check_credits(p_credits, 'Credits needed');
    if ledger_require_org(p_org_id) <> 'active' then
        return false;
    end if;
    select remaining_credits - held_credits into v_remaining
      from user_credit_allocations
     where org_id = p_org_id and user_id = p_user_id and is_active;
    if not found then
        perform ledger_require_member(p_org_id, p_user_id);
        return false;
    end if;
    return v_remaining >= p_credits;
end;
$$;

comment on function has_sufficient_credits(text, text, numeric) is
    'has_sufficient_credits(p_org_id, p_user_id, p_credits): true when the member''s active allocation has at '
    'least p_credits remaining, net of held credits, and the organization is active. Takes no lock (the answer '
    'can be stale by the time of the charge; deduct_credits decides). Raises CB001, CB002, CB003.';
