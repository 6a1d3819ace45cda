-- Credit orders (0010_credit_orders.sql) and grants: how money comes in.
--
-- A customer (an org admin, or a user for their individual balance) orders a
-- credit package or a number of credits at the catalogue's list price; the
-- order waits for payment. A system admin or the operator records the
-- payment with its reference: the credits then reach the pool through the
-- one purchase path (ledger_record_purchase_locked, 030_credit_purchases.sql), in the
-- same transaction. A grant (free credits) is a system admin's or the
-- operator's act with a reason: a 'credit_grant' history row of $0, never
-- revenue.
--
-- Lock order: the organization's pool row first, then the order row, then
-- (for a personal balance) the owner's allocation: as in 030_credit_purchases.sql.


-- ledger_new_order_id(): a new order id, 'ord-' and 16 hex digits. Raises
-- nothing.
create or replace function ledger_new_order_id()
returns text
language sql
volatile
as $$
    select 'ord-' || left(replace(gen_random_uuid()::text, '-', ''), 16);
$$;

comment on function ledger_new_order_id() is
    'ledger_new_order_id(): a new order id, ''ord-'' and 16 hex digits. Raises nothing.';


-- ledger_order(p_order_id, p_lock): returns the order, locked FOR UPDATE
-- when p_lock. Raises CB009 (malformed id), CB002 (no such order).
create or replace function ledger_order(p_order_id text, p_lock boolean default false)
returns credit_orders
language plpgsql
as $$
declare
    v_order credit_orders;
begin
    perform ledger_check_id(p_order_id, 'Order id');
    if p_lock then
        select * into v_order from credit_orders where id = p_order_id for update;
    else
        select * into v_order from credit_orders where id = p_order_id;
    end if;
    if not found then
        raise exception using errcode = 'CB002', message = format('Order %L does not exist.', p_order_id);
    end if;
    return v_order;
end;
$$;

comment on function ledger_order(text, boolean) is
    'ledger_order(p_order_id, p_lock): returns the order, locked FOR UPDATE when p_lock. Raises CB009 (malformed '
    'id), CB002 (no such order).';


-- credit_order_quote(p_package_code, p_credits): one row: what an order of
-- a credit package (its credits plus its bonus, at its price) or of a whole
-- number of credits (at the list price, $0.001 a credit) would hold and
-- cost; the screens show it before the customer confirms. Writes nothing,
-- locks nothing. Raises CB001 (credits: missing, 0, negative, NaN, over
-- 10^12, not whole), CB002 (unknown package), CB009 (both or neither of
-- package and credits), CB012 (package no longer on sale, or free).
drop function if exists credit_order_quote(text, numeric);

create function credit_order_quote(p_package_code text, p_credits numeric)
returns table (package_code text, ordered_credits numeric, bonus_credits numeric, credits numeric,
               price numeric, description text)
language plpgsql
stable
as $$
declare
    v_package credit_packages;
begin
    if (p_package_code is null) = (p_credits is null) then
        raise exception using errcode = 'CB009',
            message = 'Order either a credit package or a number of credits (one of the two).';
    end if;
    if p_credits is not null then
        perform ledger_check_credits(p_credits, 'Credits to buy');
        if p_credits <> trunc(p_credits) then
            raise exception using errcode = 'CB001',
                message = format('Credits to buy must be a whole number (got %s).', ledger_amount_text(p_credits));
        end if;
        return query select null::text, p_credits, 0::numeric, p_credits, p_credits / 1000,
                            format('%s credits at $0.001 a credit', ledger_amount_text(p_credits));
        return;
    end if;
    v_package := ledger_package_on_sale(p_package_code);
    return query select v_package.code, v_package.credits, v_package.bonus_credits,
                        v_package.credits + v_package.bonus_credits, v_package.price,
                        format('Package %s: %s credits%s for $%s', v_package.name,
                               ledger_amount_text(v_package.credits),
                               case when v_package.bonus_credits > 0
                                    then format(' + %s bonus', ledger_amount_text(v_package.bonus_credits))
                                    else '' end,
                               ledger_amount_text(v_package.price));
end;
$$;

comment on function credit_order_quote(text, numeric) is
    'credit_order_quote(p_package_code, p_credits): one row: what an order of a credit package (its credits plus '
    'its bonus, at its price) or of a whole number of credits (at the list price, $0.001 a credit) would hold and '
    'cost; the screens show it before the customer confirms. Writes nothing, locks nothing. Raises CB001 '
    '(credits: missing, 0, negative, NaN, over 10^12, not whole), CB002 (unknown package), CB009 (both or neither '
    'of package and credits), CB012 (package no longer on sale, or free).';


-- create_credit_order(p_org_id, p_package_code, p_credits, p_actor_id):
-- returns the order, awaiting payment.
-- Orders either a credit package (p_package_code: its credits plus its bonus,
-- at its price) or a number of credits (p_credits: a whole number, at the
-- list price of $0.001 a credit), as credit_order_quote says; the price
-- always comes from the catalogue, never from the caller. Nothing enters the
-- pool until the payment is recorded (record_order_payment). p_actor_id: an
-- admin of the organization (the owner of a personal balance is its admin),
-- a system admin, or the operator. Locks nothing. Raises what
-- credit_order_quote raises, and CB002 (organization), CB008, CB011.
create or replace function create_credit_order(
    p_org_id text,
    p_package_code text,
    p_credits numeric,
    p_actor_id text
)
returns credit_orders
language plpgsql
as $$
declare
    v_quote record;
    v_order credit_orders;
begin
    select * into v_quote from credit_order_quote(p_package_code, p_credits);
    perform ledger_require_org(p_org_id, true);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');

    insert into credit_orders
        (org_id, id, source, package_code, ordered_credits, bonus_credits, credits, list_price, price,
         description, ordered_by)
    values (p_org_id, ledger_new_order_id(), 'order', v_quote.package_code, v_quote.ordered_credits,
            v_quote.bonus_credits, v_quote.credits, v_quote.price, v_quote.price, v_quote.description, p_actor_id)
    returning * into v_order;
    perform ledger_audit(p_org_id, p_actor_id, 'order.created', 'credit_order', v_order.id,
                         jsonb_build_object('package_code', v_order.package_code, 'credits', v_order.credits,
                                            'price', v_order.price));
    return v_order;
end;
$$;

comment on function create_credit_order(text, text, numeric, text) is
    'Orders a credit package or a whole number of credits at the catalogue''s list price; returns the order, '
    'awaiting payment (nothing enters the pool yet). Actor: an org admin (a personal balance''s owner), a system '
    'admin or the operator. Locks nothing. Raises CB001, CB002, CB008, CB009, CB011, CB012.';


-- ledger_personal_organization(p_user_id, p_actor_id): returns the id of the
-- user's personal organization (their individual balance), creating it (the
-- user its only member and admin, never their default organization; an empty
-- pool) when missing. The caller has checked the actor. Raises CB002.
create or replace function ledger_personal_organization(p_user_id text, p_actor_id text)
returns text
language plpgsql
as $$
declare
    v_org text;
    v_name text;
begin
    perform ledger_require_user(p_user_id);
    v_org := personal_organization_of(p_user_id);
    if v_org is not null then
        return v_org;
    end if;
    select left('Personal balance: ' || coalesce(u.display_name, u.email), 200) into v_name
      from users u where u.id = p_user_id;
    insert into organizations (id, name, kind, personal_user_id)
    values ('personal-' || gen_random_uuid()::text, v_name, 'personal', p_user_id)
    on conflict (personal_user_id) where personal_user_id is not null do nothing
    returning id into v_org;
    if v_org is null then
        return personal_organization_of(p_user_id);  -- created meanwhile by a concurrent call
    end if;
    insert into credit_pools (org_id) values (v_org);
    insert into organization_members (org_id, user_id, role, is_default) values (v_org, p_user_id, 'admin', false);
    perform ledger_audit(v_org, p_actor_id, 'organization.created', 'organization', v_org,
                         jsonb_build_object('name', v_name, 'kind', 'personal', 'user_id', p_user_id));
    return v_org;
end;
$$;

comment on function ledger_personal_organization(text, text) is
    'ledger_personal_organization(p_user_id, p_actor_id): returns the id of the user''s personal organization '
    '(their individual balance), creating it (the user its only member and admin, never their default '
    'organization; an empty pool) when missing. The caller has checked the actor. Raises CB002.';


-- order_personal_credits(p_user_id, p_package_code, p_credits, p_actor_id):
-- returns the order, awaiting payment.
-- A user's order for their individual balance (a personal organization,
-- created on the first order): as create_credit_order; when the payment is
-- recorded the credits are allocated to the user. p_actor_id: the user
-- themself, a system admin, or the operator. Raises what
-- create_credit_order raises, and CB002 (unknown user).
create or replace function order_personal_credits(
    p_user_id text,
    p_package_code text,
    p_credits numeric,
    p_actor_id text
)
returns credit_orders
language plpgsql
as $$
begin
    perform ledger_require_user(p_user_id);
    if p_actor_id is distinct from p_user_id then
        perform ledger_authorize(p_actor_id, null, 'system_admin');
    end if;
    if (p_package_code is null) = (p_credits is null) then
        raise exception using errcode = 'CB009',
            message = 'Order either a credit package or a number of credits (one of the two).';
    end if;
    return create_credit_order(ledger_personal_organization(p_user_id, p_actor_id), p_package_code, p_credits,
                               p_actor_id);
end;
$$;

comment on function order_personal_credits(text, text, numeric, text) is
    'A user''s order of credits for their individual balance (created on the first order), at the list price; '
    'returns the order awaiting payment. Actor: the user, a system admin or the operator. Raises as '
    'create_credit_order.';


-- record_order_payment_check(p_order_id, p_payment_reference, p_actor_id,
-- p_paid_at): returns when this payment was recorded already (the same
-- order with the same reference: a retry, which changes nothing), or null
-- when record_order_payment would record it now. The screens ask it before
-- "Confirm?"; record_order_payment runs it under its locks. Writes nothing,
-- locks nothing. Raises what record_order_payment raises: CB002 (order),
-- CB007 (reference used for another order or in the organization's billing
-- history, or the order paid with another reference), CB008, CB009, CB011,
-- CB012 (the order was canceled).
create or replace function record_order_payment_check(
    p_order_id text,
    p_payment_reference text,
    p_actor_id text,
    p_paid_at timestamptz default null
)
returns timestamptz
language plpgsql
stable
as $$
declare
    v_order credit_orders;
    v_other credit_orders;
begin
    perform ledger_check_text(p_payment_reference, 'Payment reference', 200);
    perform ledger_check_occurred_at(p_paid_at, 'Payment time');
    v_order := ledger_order(p_order_id);
    perform ledger_authorize(p_actor_id, v_order.org_id, 'system_admin');
    if v_order.status = 'paid' then
        if v_order.payment_reference = p_payment_reference then
            return v_order.payment_recorded_at;
        end if;
        raise exception using errcode = 'CB007',
            message = format('Order %s was already paid (payment reference %L): a second payment is not '
                             'recorded on it.', v_order.id, coalesce(v_order.payment_reference, 'none'));
    end if;
    if v_order.status = 'canceled' then
        raise exception using errcode = 'CB012',
            message = format('Order %s was canceled: it cannot be paid. Create a new order.', v_order.id);
    end if;
    select * into v_other from credit_orders where payment_reference = p_payment_reference;
    if found then
        raise exception using errcode = 'CB007',
            message = format('Payment reference %L already paid order %s of organization %L: one payment '
                             'credits one order.', p_payment_reference, v_other.id, v_other.org_id);
    end if;
    if exists (select 1 from org_billing_history h
                where h.org_id = v_order.org_id and h.external_ref = p_payment_reference) then
        raise exception using errcode = 'CB007',
            message = format('Payment reference %L is already in the billing history of organization %L.',
                             p_payment_reference, v_order.org_id);
    end if;
    perform ledger_require_org(v_order.org_id, true);
    return null;
end;
$$;

comment on function record_order_payment_check(text, text, text, timestamptz) is
    'record_order_payment_check(p_order_id, p_payment_reference, p_actor_id, p_paid_at): returns when this payment '
    'was recorded already (the same order with the same reference: a retry, which changes nothing), or null when '
    'record_order_payment would record it now. The screens ask it before "Confirm?"; record_order_payment runs it '
    'under its locks. Writes nothing, locks nothing. Raises what record_order_payment raises: CB002, CB007, CB008, '
    'CB009, CB011, CB012.';


-- record_order_payment(p_order_id, p_payment_reference, p_actor_id,
--                      p_paid_at): returns the order, paid.
-- Records that the order was paid: its credits enter the pool now, through
-- the purchase path (a 'credit_purchase' history row naming the order, its
-- lot, the audit row, the pool's alert); for a personal balance they are
-- allocated to its owner in the same transaction. Only a system admin or the
-- operator records a payment. p_payment_reference (the invoice or transfer
-- id) credits one order only, across all organizations. The same order with
-- the same reference again changes nothing and returns the order (a retry).
-- p_paid_at (default now) dates the payment when it is recorded after the
-- fact (these trusted callers only; not in the future nor over 400 days ago).
-- Locks the pool row, then the order, then (personal balance) the owner's
-- allocation. Raises CB002 (order), CB007 (reference used for another order,
-- or the order paid with another reference), CB008, CB009, CB011, CB012 (the
-- order was canceled).
create or replace function record_order_payment(
    p_order_id text,
    p_payment_reference text,
    p_actor_id text,
    p_paid_at timestamptz default null
)
returns credit_orders
language plpgsql
as $$
declare
    v_order credit_orders;
    v_owner text;
begin
    -- refused before any lock, then checked again under the locks (the answer that counts)
    perform record_order_payment_check(p_order_id, p_payment_reference, p_actor_id, p_paid_at);
    v_order := ledger_order(p_order_id);
    perform ledger_lock_pool(v_order.org_id);
    v_order := ledger_order(p_order_id, true);
    if record_order_payment_check(p_order_id, p_payment_reference, p_actor_id, p_paid_at) is not null then
        return v_order;  -- a retry: nothing more
    end if;

    begin
        update credit_orders
           set status = 'paid', payment_reference = p_payment_reference, paid_at = coalesce(p_paid_at, now()),
               payment_recorded_by = p_actor_id, payment_recorded_at = now()
         where org_id = v_order.org_id and id = v_order.id
        returning * into v_order;
    exception when unique_violation then
        raise exception using errcode = 'CB007',
            message = format('Payment reference %L was recorded for another order meanwhile: one payment '
                             'credits one order.', p_payment_reference);
    end;
    perform ledger_record_purchase_locked(v_order.org_id, v_order.id, v_order.credits, v_order.price, p_actor_id,
                                          v_order.description, p_payment_reference, p_paid_at,
                                          v_order.credits_expire_at);
    select personal_user_id into v_owner from organizations where id = v_order.org_id;
    if v_owner is not null then
        perform ledger_allocate_locked(v_order.org_id, v_owner, v_order.credits, p_actor_id);
    end if;
    perform ledger_audit(v_order.org_id, p_actor_id, 'order.paid', 'credit_order', v_order.id,
                         jsonb_build_object('payment_reference', p_payment_reference, 'credits', v_order.credits,
                                            'price', v_order.price)
                         || case when p_paid_at is null then '{}'::jsonb
                                 else jsonb_build_object('paid_at', p_paid_at) end);
    return v_order;
end;
$$;

comment on function record_order_payment(text, text, text, timestamptz) is
    'Records an order''s payment (system admin or operator only): its credits enter the pool now (a personal '
    'balance''s go to its owner); the reference credits one order across all organizations; a retry with the '
    'same reference changes nothing. Locks the pool, then the order. Raises CB002, CB007, CB008, CB009, CB011, CB012.';


-- cancel_credit_order(p_order_id, p_actor_id): returns the order, canceled.
-- Cancels an order awaiting payment (an admin of its organization, a system
-- admin, or the operator); canceling a canceled order again changes nothing.
-- Locks the pool row, then the order (as record_order_payment, so the two
-- never cross). Raises CB002, CB008, CB009, CB012 (the order was paid).
create or replace function cancel_credit_order(p_order_id text, p_actor_id text)
returns credit_orders
language plpgsql
as $$
declare
    v_order credit_orders;
begin
    v_order := ledger_order(p_order_id);
    perform ledger_authorize(p_actor_id, v_order.org_id, 'admin');
    perform ledger_lock_pool(v_order.org_id);
    v_order := ledger_order(p_order_id, true);
    if v_order.status = 'canceled' then
        return v_order;
    end if;
    if v_order.status = 'paid' then
        raise exception using errcode = 'CB012',
            message = format('Order %s is paid: a paid order cannot be canceled.', v_order.id);
    end if;
    update credit_orders
       set status = 'canceled', canceled_by = p_actor_id, canceled_at = now()
     where org_id = v_order.org_id and id = v_order.id
    returning * into v_order;
    perform ledger_audit(v_order.org_id, p_actor_id, 'order.canceled', 'credit_order', v_order.id,
                         jsonb_build_object('credits', v_order.credits, 'price', v_order.price));
    return v_order;
end;
$$;

comment on function cancel_credit_order(text, text) is
    'Cancels an order awaiting payment (org admin of its organization, system admin or operator); again: no change. '
    'Locks the pool, then the order. Raises CB002, CB008, CB009, CB012 (paid).';


-- grant_credits_check(p_org_id, p_credits, p_reason, p_actor_id,
-- p_expires_at): returns nothing when grant_credits would accept these
-- (the screens ask it before "Confirm?"; grant_credits runs it first).
-- Writes nothing, locks nothing. Raises CB001 (credits), CB002, CB008,
-- CB009 (reason missing, too long or with control characters; expiry not in
-- the future), CB011.
create or replace function grant_credits_check(
    p_org_id text,
    p_credits numeric,
    p_reason text,
    p_actor_id text,
    p_expires_at timestamptz default null
)
returns void
language plpgsql
stable
as $$
begin
    perform ledger_check_credits(p_credits, 'Credits to grant');
    perform ledger_check_text(p_reason, 'Reason for the grant', 500);
    if p_expires_at <= now() or p_expires_at = 'infinity' then
        raise exception using errcode = 'CB009',
            message = format('Expiry (%s) must be a moment in the future (leave it empty for credits that never expire).',
                             ledger_time_text(p_expires_at));
    end if;
    perform ledger_require_org(p_org_id, true);
    perform ledger_authorize_credits_in(p_actor_id, p_org_id, 'grant credits');
end;
$$;

comment on function grant_credits_check(text, numeric, text, text, timestamptz) is
    'grant_credits_check(p_org_id, p_credits, p_reason, p_actor_id, p_expires_at): returns nothing when '
    'grant_credits would accept these (the screens ask it before "Confirm?"; grant_credits runs it first). Writes '
    'nothing, locks nothing. Raises CB001 (credits), CB002, CB008, CB009 (reason missing, too long or with control '
    'characters; expiry not in the future), CB011.';


-- grant_credits(p_org_id, p_credits, p_reason, p_actor_id, p_expires_at,
--               p_occurred_at): returns the pool's total credits after the grant.
-- Gives free credits: a 'credit_grant' history row of $0 (never revenue)
-- whose description is the reason, with metadata source 'grant', the reason
-- and who granted (granted_as 'system_admin' or 'operator'); its lot follows
-- (092_lots.sql). For a personal balance the credits are allocated to its
-- owner. Only a system admin or the operator grants, and only with a reason.
-- p_expires_at (default never): when the granted credits expire.
-- p_occurred_at (default now) dates the history row of a grant entered after
-- the fact (not in the future nor over 400 days ago); the credits are in the
-- pool from the call on.
-- Locks the pool row (then the owner's allocation). Raises CB001, CB002,
-- CB008, CB009 (reason missing, too long or with control characters; expiry
-- not in the future), CB011.
create or replace function grant_credits(
    p_org_id text,
    p_credits numeric,
    p_reason text,
    p_actor_id text,
    p_expires_at timestamptz default null,
    p_occurred_at timestamptz default null
)
returns numeric
language plpgsql
as $$
declare
    v_total numeric;
    v_owner text;
begin
    perform grant_credits_check(p_org_id, p_credits, p_reason, p_actor_id, p_expires_at);
    perform ledger_check_occurred_at(p_occurred_at, 'Grant time');
    perform ledger_lock_pool(p_org_id);

    v_total := ledger_raise_pool_total(p_org_id, p_credits);
    insert into org_billing_history
        (org_id, event_type, credits, amount, description, metadata, total_credits_after, created_by,
         credits_expire_at, created_at)
    values (p_org_id, 'credit_grant', p_credits, 0, btrim(p_reason),
            jsonb_build_object('source', 'grant', 'reason', btrim(p_reason),
                               'granted_as', case when p_actor_id is null then 'operator' else 'system_admin' end),
            v_total, p_actor_id, p_expires_at, coalesce(p_occurred_at, now()));
    select personal_user_id into v_owner from organizations where id = p_org_id;
    if v_owner is not null then
        perform ledger_allocate_locked(p_org_id, v_owner, p_credits, p_actor_id);
    end if;
    perform ledger_audit(p_org_id, p_actor_id, 'credits.granted', 'organization', p_org_id,
                         jsonb_build_object('credits', p_credits, 'reason', btrim(p_reason))
                         || case when p_expires_at is null then '{}'::jsonb
                                 else jsonb_build_object('expires_at', p_expires_at) end);
    perform ledger_evaluate_pool_alert(p_org_id);
    return v_total;
end;
$$;

comment on function grant_credits(text, numeric, text, text, timestamptz, timestamptz) is
    'Grants free credits with a reason (system admin or operator only): a $0 credit_grant history row, never '
    'revenue. Returns the pool''s total. Locks the pool. Raises CB001, CB002, CB008, CB009, CB011.';


-- credit_orders_of(p_org_id, p_actor_id): the organization's orders, newest
-- first. p_actor_id: an admin of the organization, a system admin or the
-- operator. Locks nothing. Raises CB002, CB008.
create or replace function credit_orders_of(p_org_id text, p_actor_id text)
returns setof credit_orders
language plpgsql
stable
as $$
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    return query select * from credit_orders o where o.org_id = p_org_id order by o.ordered_at desc, o.id;
end;
$$;

comment on function credit_orders_of(text, text) is
    'credit_orders_of(p_org_id, p_actor_id): the organization''s orders, newest first. p_actor_id: an admin of '
    'the organization, a system admin or the operator. Locks nothing. Raises CB002, CB008.';


-- credit_orders_awaiting_payment(p_actor_id): every order awaiting payment,
-- oldest first, with its organization's name. System admins and the
-- operator only. Locks nothing. Raises CB002, CB008.
create or replace function credit_orders_awaiting_payment(p_actor_id text)
returns table (org_id text, org_name text, id text, package_code text, credits numeric, price numeric,
               description text, ordered_by text, ordered_at timestamptz)
language plpgsql
stable
as $$
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    return query
        select o.org_id, g.name, o.id, o.package_code, o.credits, o.price, o.description, o.ordered_by, o.ordered_at
          from credit_orders o
          join organizations g on g.id = o.org_id
         where o.status = 'awaiting_payment'
         order by o.ordered_at, o.id;
end;
$$;

comment on function credit_orders_awaiting_payment(text) is
    'credit_orders_awaiting_payment(p_actor_id): every order awaiting payment, oldest first, with its '
    'organization''s name. System admins and the operator only. Locks nothing. Raises CB002, CB008.';
