-- Charging metered calls: price and deduct in one transaction (charge_usage),
-- two-phase holds for calls whose cost is known afterwards (reserve, settle,
-- release, expiry), and individual balances (personal organizations).
--
-- Callers are metered services (trusted, like deduct_credits): no acting
-- user. Which organization pays when none is named: the user's default
-- organization, else the first they joined, else their personal balance.
--
-- Holds: reserve adds the hold's credits to the member's allocation's
-- held_credits (used + held <= allocated), so a deduction still locks that
-- one row and can never spend held credits. A hold is keyed by its request
-- id per organization; settle charges the actual amount as one attribution
-- row with the same request id. Lock order: the allocation row, then its
-- hold rows (closing an allocation, which takes the pool first, releases its
-- open holds: 031_credit_allocations.sql).


-- charging_org_for(p_user_id, p_org_id): returns the organization to charge:
-- p_org_id when given; else the user's default organization, else the first
-- they joined (personal balances aside), else their personal balance. Takes
-- no lock. Raises CB002 (unknown user), CB003 (no organization and no
-- personal balance).
create or replace function charging_org_for(p_user_id text, p_org_id text default null)
returns text
language plpgsql
stable
as $$
declare
    v_org text;
begin
    if p_org_id is not null then
        return p_org_id;
    end if;
    select m.org_id into v_org
      from organization_members m
      join organizations o on o.id = m.org_id
     where m.user_id = p_user_id
     order by (o.kind = 'organization') desc, m.is_default desc, m.joined_at, m.org_id
     limit 1;
    if not found then
        perform ledger_require_user(p_user_id);
        raise exception using errcode = 'CB003',
            message = format('User %L belongs to no organization and has no individual balance: '
                             'top up their balance first.', p_user_id);
    end if;
    return v_org;
end;
$$;

comment on function charging_org_for(text, text) is
    'charging_org_for(p_user_id, p_org_id): returns the organization to charge: p_org_id when given; else the '
    'user''s default organization, else the first they joined (personal balances aside), else their personal '
    'balance. Takes no lock. Raises CB002 (unknown user), CB003 (no organization and no personal balance).';


-- charge_usage(p_org_id, p_user_id, p_service_type, p_service_name,
--              p_input_tokens, p_output_tokens, p_images, p_requests,
--              p_byok, p_request_id, p_metadata, p_occurred_at): returns
-- (org_id, credits, remaining, explanation, replayed).
-- Prices the event (price_usage, at p_occurred_at, default now) and deducts
-- it (deduct_credits) in one transaction; the attribution row's metadata is
-- p_metadata plus 'pricing': the explanation. p_org_id null: see
-- charging_org_for. The same p_request_id again charges nothing more and
-- answers as the first call did (replayed true); with another user, service
-- or usage it raises CB007. An event that costs 0 credits (a free service,
-- a BYOK call without fee) is answered but writes no row. p_metadata is
-- limited to 8 kB on its own; the stored row holds it and the explanation.
-- Locks only the member's allocation row, before it looks for the request
-- id when one is given: a retry that queued behind its first call finds that
-- call's row and answers replayed.
-- Raises what price_usage, deduct_credits and charging_org_for raise.
create or replace function charge_usage(
    p_org_id text,
    p_user_id text,
    p_service_type text,
    p_service_name text,
    p_input_tokens numeric default 0,
    p_output_tokens numeric default 0,
    p_images numeric default 0,
    p_requests numeric default 1,
    p_byok boolean default false,
    p_request_id text default null,
    p_metadata jsonb default '{}',
    p_occurred_at timestamptz default null
)
returns table (org_id text, credits numeric, remaining numeric, explanation jsonb, replayed boolean)
language plpgsql
as $$
declare
    v_first credit_usage_attribution;
    v_price record;
begin
    org_id := charging_org_for(p_user_id, p_org_id);
    perform ledger_check_occurred_at(p_occurred_at, 'Usage time');
    -- the caller's metadata alone counts against its 8 kB; the explanation is added to it below
    perform ledger_check_usage(p_service_type, p_service_name, p_request_id, coalesce(p_metadata, '{}'));
    if p_request_id is not null then
        -- Lock the member's allocation row first (the charge below locks it anyway): a retry that
        -- arrives while its first call is in flight queues here, and looks for the first call's row
        -- (in the next, new statement) only once that call committed, so it answers replayed. A
        -- second look, in a new statement, finds the member's new allocation when a period reset
        -- closed the one this waited on.
        perform 1 from user_credit_allocations a
         where a.org_id = charge_usage.org_id and a.user_id = p_user_id and a.is_active
           for update;
        if not found then
            perform 1 from user_credit_allocations a
             where a.org_id = charge_usage.org_id and a.user_id = p_user_id and a.is_active
               for update;
        end if;
        select * into v_first from credit_usage_attribution c
         where c.org_id = charge_usage.org_id and c.request_id = p_request_id;
        if found then
            if v_first.user_id <> p_user_id or v_first.service_type <> p_service_type
               or v_first.service_name <> p_service_name
               or v_first.metadata #> '{pricing,usage}' is distinct from
                  jsonb_build_object('input_tokens', p_input_tokens, 'output_tokens', p_output_tokens,
                                     'images', p_images, 'requests', p_requests)
               or v_first.metadata #> '{pricing,byok}' is distinct from to_jsonb(coalesce(p_byok, false)) then
                raise exception using errcode = 'CB007',
                    message = format('Request id %L was already used for another charge (%s credits to user %L '
                                     'for %s/%s); use a new request id for a new charge.',
                                     p_request_id, ledger_amount_text(v_first.credits_used), v_first.user_id,
                                     v_first.service_type, v_first.service_name);
            end if;
            credits := v_first.credits_used;
            remaining := v_first.remaining_after;
            explanation := v_first.metadata -> 'pricing';
            replayed := true;
            return next;
            return;
        end if;
    end if;
    select * into v_price
      from price_usage(org_id, p_service_type, p_service_name, p_input_tokens, p_output_tokens, p_images,
                       p_requests, p_byok, coalesce(p_occurred_at, now()));
    credits := v_price.credits;
    explanation := v_price.explanation;
    replayed := false;
    if credits = 0 then
        -- nothing to charge; the member must still be one who could be charged
        perform ledger_require_org(org_id, true);
        perform ledger_require_member(org_id, p_user_id);
        select a.remaining_credits - a.held_credits into remaining
          from user_credit_allocations a
         where a.org_id = charge_usage.org_id and a.user_id = p_user_id and a.is_active;
        remaining := coalesce(remaining, 0);
        return next;
        return;
    end if;
    remaining := deduct_credits(org_id, p_user_id, credits, p_service_type, p_service_name, p_request_id,
                                coalesce(p_metadata, '{}') || jsonb_build_object('pricing', explanation),
                                p_occurred_at);
    return next;
end;
$$;

comment on function charge_usage(text, text, text, text, numeric, numeric, numeric, numeric, boolean, text, jsonb, timestamptz) is
    'charge_usage(p_org_id, p_user_id, p_service_type, p_service_name, p_input_tokens, p_output_tokens, p_images, '
    'p_requests, p_byok, p_request_id, p_metadata, p_occurred_at): returns (org_id, credits, remaining, '
    'explanation, replayed). Prices the event (price_usage, at p_occurred_at, default now) and deducts it '
    '(deduct_credits) in one transaction; the attribution row''s metadata is p_metadata plus ''pricing'': the '
    'explanation. p_org_id null: see charging_org_for. The same p_request_id again charges nothing more and '
    'answers as the first call did (replayed true); with another user, service or usage it raises CB007. An event '
    'that costs 0 credits (a free service, a BYOK call without fee) is answered but writes no row. p_metadata is '
    'limited to 8 kB on its own; the stored row holds it and the explanation. Locks only the member''s allocation '
    'row, before it looks for the request id when one is given: a retry that queued behind its first call finds '
    'that call''s row and answers replayed. Raises what price_usage, deduct_credits and charging_org_for raise.';


-- ledger_check_request_id(p_request_id): returns nothing. Raises CB009
-- unless the request id is 1-200 characters without control characters.
create or replace function ledger_check_request_id(p_request_id text)
returns void
language plpgsql
immutable
as $$
begin
    perform ledger_check_text(p_request_id, 'Request id', 200);
end;
$$;

comment on function ledger_check_request_id(text) is
    'ledger_check_request_id(p_request_id): returns nothing. Raises CB009 unless the request id is 1-200 '
    'characters without control characters.';


-- ledger_free_holds(p_org_id, p_allocation_id, p_status, p_reason,
--                   p_hold_id, p_expired_by): returns the credits freed.
-- Closes the allocation's open holds (only p_hold_id when given; only those
-- expired by p_expired_by when given) with p_status and p_reason, and takes
-- their credits off the allocation's held_credits. The caller holds the
-- allocation's lock.
create or replace function ledger_free_holds(
    p_org_id text,
    p_allocation_id text,
    p_status text,
    p_reason text,
    p_hold_id bigint default null,
    p_expired_by timestamptz default null
)
returns numeric
language plpgsql
as $$
declare
    v_ids bigint[];
    v_freed numeric;
    v_remaining numeric;
begin
    with freed as (
        update credit_holds h
           set status = p_status, close_reason = p_reason, closed_at = now()
         where h.org_id = p_org_id and h.allocation_id = p_allocation_id and h.status = 'open'
           and (p_hold_id is null or h.id = p_hold_id)
           and (p_expired_by is null or h.expires_at <= p_expired_by)
        returning h.id, h.credits
    )
    select array_agg(freed.id), coalesce(sum(freed.credits), 0) into v_ids, v_freed from freed;
    if v_freed > 0 then
        update user_credit_allocations a
           set held_credits = held_credits - v_freed, updated_at = now()
         where a.org_id = p_org_id and a.id = p_allocation_id
        returning a.remaining_credits - a.held_credits into v_remaining;
        update credit_holds h
           set remaining_at_close = v_remaining
         where h.org_id = p_org_id and h.id = any (v_ids);
    end if;
    return v_freed;
end;
$$;

comment on function ledger_free_holds(text, text, text, text, bigint, timestamptz) is
    'ledger_free_holds(p_org_id, p_allocation_id, p_status, p_reason, p_hold_id, p_expired_by): returns the '
    'credits freed. Closes the allocation''s open holds (only p_hold_id when given; only those expired by '
    'p_expired_by when given) with p_status and p_reason, and takes their credits off the allocation''s '
    'held_credits. The caller holds the allocation''s lock.';


-- reserve_credits(p_org_id, p_user_id, p_credits, p_request_id,
--                 p_service_type, p_service_name, p_ttl_seconds): returns
-- (org_id, request_id, credits, expires_at, remaining, replayed).
-- Holds p_credits of the member's allocation for a call in progress, until
-- settle_hold, release_hold or expiry (p_ttl_seconds, default the platform
-- rule's hold lifetime). remaining is what the member can still spend. When
-- the member is short, their own expired holds are freed first. A reserve
-- that waited on the member's allocation while a period reset closed it and
-- opened the next one holds on the new allocation. The same
-- request id again holds nothing more and answers as the first call did;
-- with another user, amount or service it raises CB007, as it does when the
-- request id was already charged. p_org_id null: see charging_org_for.
-- The service must be one the price list prices now: a fixed-price service
-- type, else p_service_name a model with a price (as price_usage requires).
-- Locks the member's allocation row. Raises CB001, CB002 (also: a model with
-- no price), CB003, CB005, CB006, CB007, CB009 (also: a withdrawn service or
-- model), CB011.
create or replace function reserve_credits(
    p_org_id text,
    p_user_id text,
    p_credits numeric,
    p_request_id text,
    p_service_type text,
    p_service_name text,
    p_ttl_seconds integer default null
)
returns table (org_id text, request_id text, credits numeric, expires_at timestamptz, remaining numeric,
               replayed boolean)
language plpgsql
as $$
declare
    v_org text;
    v_hold credit_holds;
    v_allocation_id text;
    v_remaining numeric;
    v_ttl integer;
    v_attempt integer;
begin
    v_org := charging_org_for(p_user_id, p_org_id);
    perform ledger_check_credits(p_credits, 'Credits to hold');
    perform ledger_check_request_id(p_request_id);
    perform ledger_check_usage(p_service_type, p_service_name, p_request_id, '{}');
    -- a call the price list cannot price is refused now, as price_usage would, not when settle_usage prices it
    if (pricing_service_price_at(p_service_type, now())).id is null then
        perform pricing_model_price_at(p_service_name, now());
    end if;
    if p_ttl_seconds is not null and p_ttl_seconds not between 1 and 604800 then
        raise exception using errcode = 'CB001',
            message = format('Hold lifetime must be between 1 second and 7 days (604800 seconds); got %s.',
                             p_ttl_seconds);
    end if;
    v_ttl := coalesce(p_ttl_seconds, (pricing_platform_rule_at(now())).hold_ttl_seconds);

    select * into v_hold from credit_holds h where h.org_id = v_org and h.request_id = p_request_id;
    if not found then
        if exists (select 1 from credit_usage_attribution c
                    where c.org_id = v_org and c.request_id = p_request_id) then
            raise exception using errcode = 'CB007',
                message = format('Request id %L was already charged: use a new request id for a new hold.',
                                 p_request_id);
        end if;
        for v_attempt in 1 .. 2 loop
            update user_credit_allocations a
               set held_credits = held_credits + p_credits, updated_at = now()
             where a.org_id = v_org and a.user_id = p_user_id and a.is_active
               and a.remaining_credits - a.held_credits >= p_credits
               and exists (select 1 from organizations o where o.id = v_org and o.status = 'active')
            returning a.id, a.remaining_credits - a.held_credits into v_allocation_id, v_remaining;
            exit when found or v_attempt = 2;
            -- Short, as its statement saw it. Lock the member's active allocation in a new statement (a
            -- new snapshot: after a wait on an allocation that a period reset closed and reopened, the
            -- first UPDATE could not see the new one), free the member's own expired holds, and try once
            -- more when that allocation now pays for the hold.
            select a.id into v_allocation_id from user_credit_allocations a
             where a.org_id = v_org and a.user_id = p_user_id and a.is_active
               for update;
            exit when not found;
            perform ledger_free_holds(v_org, v_allocation_id, 'expired', 'expired', null, now());
            exit when not exists (select 1 from user_credit_allocations a
                                   where a.org_id = v_org and a.id = v_allocation_id
                                     and a.remaining_credits - a.held_credits >= p_credits);
        end loop;
        if v_remaining is null then
            -- a first call with this request id that committed while this one waited may have taken
            -- what was left: answer as it did; otherwise refuse
            select * into v_hold from credit_holds h where h.org_id = v_org and h.request_id = p_request_id;
            if not found then
                perform ledger_refuse_deduction(v_org, p_user_id, p_credits);
            end if;
        else
            insert into credit_holds (org_id, request_id, user_id, allocation_id, credits, service_type,
                                      service_name, remaining_at_reserve, expires_at)
            values (v_org, p_request_id, p_user_id, v_allocation_id, p_credits, p_service_type, p_service_name,
                    v_remaining, now() + make_interval(secs => v_ttl))
            on conflict on constraint credit_holds_request_once do nothing
            returning * into v_hold;
            if v_hold.id is not null then
                return query select v_org, p_request_id, p_credits, v_hold.expires_at, v_remaining, false;
                return;
            end if;
            -- the first call with this request id committed while this one waited for the allocation:
            -- take this hold back and answer as the first call did
            update user_credit_allocations a
               set held_credits = held_credits - p_credits
             where a.org_id = v_org and a.id = v_allocation_id;
            select * into v_hold from credit_holds h where h.org_id = v_org and h.request_id = p_request_id;
        end if;
    end if;
    if v_hold.user_id <> p_user_id or v_hold.credits <> p_credits
       or v_hold.service_type <> p_service_type or v_hold.service_name <> p_service_name then
        raise exception using errcode = 'CB007',
            message = format('Request id %L already holds %s credits for user %L (%s/%s); '
                             'use a new request id for a new hold.', p_request_id,
                             ledger_amount_text(v_hold.credits), v_hold.user_id, v_hold.service_type,
                             v_hold.service_name);
    end if;
    return query select v_org, p_request_id, v_hold.credits, v_hold.expires_at, v_hold.remaining_at_reserve, true;
end;
$$;

comment on function reserve_credits(text, text, numeric, text, text, text, integer) is
    'reserve_credits(p_org_id, p_user_id, p_credits, p_request_id, p_service_type, p_service_name, '
    'p_ttl_seconds): returns (org_id, request_id, credits, expires_at, remaining, replayed). Holds p_credits of '
    'the member''s allocation for a call in progress, until settle_hold, release_hold or expiry (p_ttl_seconds, '
    'default the platform rule''s hold lifetime). remaining is what the member can still spend. When the member '
    'is short, their own expired holds are freed first. A reserve that waited on the member''s allocation while a '
    'period reset closed it and opened the next one holds on the new allocation. The same request id again holds '
    'nothing more and answers as the first call did; with another user, amount or service it raises CB007, as it '
    'does when the request id was already charged. p_org_id null: see charging_org_for. The service must be one '
    'the price list prices now: a fixed-price service type, else p_service_name a model with a price (as '
    'price_usage requires). Locks the member''s allocation row. Raises CB001, CB002 (also: a model with no '
    'price), CB003, CB005, CB006, CB007, CB009 (also: a withdrawn service or model), CB011.';


-- ledger_hold_for(p_org_id, p_request_id): returns the hold, unlocked.
-- Raises CB002 (unknown organization, or no hold with this request id in it:
-- another organization's hold is not found either), CB009.
create or replace function ledger_hold_for(p_org_id text, p_request_id text)
returns credit_holds
language plpgsql
stable
as $$
declare
    v_hold credit_holds;
begin
    perform ledger_check_request_id(p_request_id);
    perform ledger_require_org(p_org_id);
    select * into v_hold from credit_holds h where h.org_id = p_org_id and h.request_id = p_request_id;
    if not found then
        raise exception using errcode = 'CB002',
            message = format('No credit hold with request id %L in organization %L.', p_request_id, p_org_id);
    end if;
    return v_hold;
end;
$$;

comment on function ledger_hold_for(text, text) is
    'ledger_hold_for(p_org_id, p_request_id): returns the hold, unlocked. Raises CB002 (unknown organization, or '
    'no hold with this request id in it: another organization''s hold is not found either), CB009.';


-- ledger_lock_hold(p_hold): returns the hold as it stands once its
-- allocation's row and then its own row are locked (the lock order). A hold
-- that a period reset moved to the member's new allocation while this waited
-- is followed there: that allocation is locked too, before the hold.
create or replace function ledger_lock_hold(p_hold credit_holds)
returns credit_holds
language plpgsql
as $$
declare
    v_hold credit_holds;
    v_allocation_id text := p_hold.allocation_id;
    v_now_on text;
begin
    loop
        perform 1 from user_credit_allocations a
         where a.org_id = p_hold.org_id and a.id = v_allocation_id
           for update;
        -- a new statement: sees a move that committed while the lock above waited
        select h.allocation_id into v_now_on from credit_holds h where h.org_id = p_hold.org_id and h.id = p_hold.id;
        exit when v_now_on is not distinct from v_allocation_id;
        v_allocation_id := v_now_on;  -- only a period reset moves a hold, under its old allocation's lock
    end loop;
    select * into v_hold from credit_holds h where h.org_id = p_hold.org_id and h.id = p_hold.id for update;
    return v_hold;
end;
$$;

comment on function ledger_lock_hold(credit_holds) is
    'ledger_lock_hold(p_hold): returns the hold as it stands once its allocation''s row and then its own row are '
    'locked (the lock order). A hold that a period reset moved to the member''s new allocation while this waited '
    'is followed there: that allocation is locked too, before the hold.';


-- ledger_refuse_closed_hold(p_hold, p_action): always raises CB014, saying
-- why the hold can no longer be settled (p_action 'settle') or released.
create or replace function ledger_refuse_closed_hold(p_hold credit_holds, p_action text)
returns void
language plpgsql
stable
as $$
begin
    raise exception using errcode = 'CB014',
        message = case
            when p_hold.status = 'settled' then
                format('The hold for request %L was already settled for %s credits: nothing to %s.',
                       p_hold.request_id, ledger_amount_text(p_hold.settled_credits), p_action)
            when p_hold.status = 'expired' or (p_hold.status = 'open' and p_hold.expires_at <= now()) then
                format('The hold for request %L expired at %s and its credits were (or will be) released: '
                       'it can no longer be settled; charge the call with a new request id.',
                       p_hold.request_id, ledger_time_text(p_hold.expires_at))
            when p_hold.close_reason = 'allocation_closed' then
                format('The hold for request %L was released when the member''s allocation closed: '
                       'charge the call with a new request id.', p_hold.request_id)
            else
                format('The hold for request %L was released: nothing to %s; charge the call with a new '
                       'request id.', p_hold.request_id, p_action)
        end;
end;
$$;

comment on function ledger_refuse_closed_hold(credit_holds, text) is
    'ledger_refuse_closed_hold(p_hold, p_action): always raises CB014, saying why the hold can no longer be '
    'settled (p_action ''settle'') or released.';


-- settle_hold(p_org_id, p_request_id, p_actual_credits, p_metadata):
-- returns (credits, remaining, replayed).
-- Ends the hold: charges p_actual_credits (0 allowed: nothing used) to the
-- member as one attribution row with the hold's request id, service and
-- p_metadata (plus 'hold': its figures), and frees the rest of the hold. An
-- actual above the hold is charged when the member's free credits cover the
-- difference, else refused (CB005) and the hold stays open. The same call
-- again answers as the first did (replayed true); another actual raises
-- CB007. Locks the allocation row, then the hold. Raises CB001, CB002 (no
-- such hold in the organization), CB005, CB007, CB009, CB011, CB014 (hold
-- expired, released or settled).
create or replace function settle_hold(
    p_org_id text,
    p_request_id text,
    p_actual_credits numeric,
    p_metadata jsonb default '{}'
)
returns table (credits numeric, remaining numeric, replayed boolean)
language plpgsql
as $$
declare
    v_hold credit_holds;
    v_free numeric;
begin
    if p_actual_credits is distinct from 0 then
        perform ledger_check_credits(p_actual_credits, 'Actual credits');
    end if;
    v_hold := ledger_lock_hold(ledger_hold_for(p_org_id, p_request_id));
    if v_hold.status = 'settled' and v_hold.settled_credits = p_actual_credits then
        return query select v_hold.settled_credits, v_hold.remaining_at_close, true;
        return;
    end if;
    if v_hold.status = 'settled' then
        raise exception using errcode = 'CB007',
            message = format('The hold for request %L was already settled for %s credits, not %s.',
                             p_request_id, ledger_amount_text(v_hold.settled_credits),
                             ledger_amount_text(p_actual_credits));
    end if;
    if v_hold.status <> 'open' or v_hold.expires_at <= now() then
        perform ledger_refuse_closed_hold(v_hold, 'settle');
    end if;
    if exists (select 1 from credit_usage_attribution c where c.org_id = p_org_id and c.request_id = p_request_id) then
        raise exception using errcode = 'CB007',
            message = format('Request id %L was already charged outside its hold: release the hold instead.',
                             p_request_id);
    end if;

    update user_credit_allocations a
       set held_credits = held_credits - v_hold.credits
     where a.org_id = p_org_id and a.id = v_hold.allocation_id
    returning a.remaining_credits - a.held_credits into v_free;
    if p_actual_credits > v_free then
        raise exception using errcode = 'CB005',
            message = format('Cannot settle %s credits for request %L: the hold is %s and user %L has only %s '
                             'credits free with it; settle at most that, or release the hold.',
                             ledger_amount_text(p_actual_credits), p_request_id, ledger_amount_text(v_hold.credits),
                             v_hold.user_id, ledger_amount_text(v_free)),
            detail = format('remaining=%s needed=%s', v_free, p_actual_credits);
    end if;
    if p_actual_credits > 0 then
        v_free := deduct_credits(p_org_id, v_hold.user_id, p_actual_credits, v_hold.service_type,
                                 v_hold.service_name, p_request_id,
                                 coalesce(p_metadata, '{}')
                                 || jsonb_build_object('hold', jsonb_build_object('held_credits', v_hold.credits,
                                                                                  'reserved_at', v_hold.created_at)));
    end if;
    update credit_holds h
       set status = 'settled', settled_credits = p_actual_credits, close_reason = 'settled',
           closed_at = now(), remaining_at_close = v_free
     where h.org_id = p_org_id and h.id = v_hold.id;
    return query select p_actual_credits, v_free, false;
end;
$$;

comment on function settle_hold(text, text, numeric, jsonb) is
    'settle_hold(p_org_id, p_request_id, p_actual_credits, p_metadata): returns (credits, remaining, replayed). '
    'Ends the hold: charges p_actual_credits (0 allowed: nothing used) to the member as one attribution row with '
    'the hold''s request id, service and p_metadata (plus ''hold'': its figures), and frees the rest of the hold. '
    'An actual above the hold is charged when the member''s free credits cover the difference, else refused '
    '(CB005) and the hold stays open. The same call again answers as the first did (replayed true); another '
    'actual raises CB007. Locks the allocation row, then the hold. Raises CB001, CB002 (no such hold in the '
    'organization), CB005, CB007, CB009, CB011, CB014 (hold expired, released or settled).';


-- settle_usage(p_org_id, p_request_id, p_input_tokens, p_output_tokens,
--              p_images, p_requests, p_byok, p_metadata): returns
-- (credits, remaining, explanation, replayed).
-- Prices the call the hold was made for (its service type and name, now) and
-- settles the hold at that price, in one transaction; the attribution row's
-- metadata carries the explanation under 'pricing'. Locks and raises as
-- price_usage and settle_hold.
create or replace function settle_usage(
    p_org_id text,
    p_request_id text,
    p_input_tokens numeric default 0,
    p_output_tokens numeric default 0,
    p_images numeric default 0,
    p_requests numeric default 1,
    p_byok boolean default false,
    p_metadata jsonb default '{}'
)
returns table (credits numeric, remaining numeric, explanation jsonb, replayed boolean)
language plpgsql
as $$
declare
    v_hold credit_holds;
    v_price record;
    v_settled record;
begin
    v_hold := ledger_hold_for(p_org_id, p_request_id);
    if v_hold.status = 'settled' then
        -- a retry: price as the first call did, from its attribution row
        select c.metadata -> 'pricing' into explanation
          from credit_usage_attribution c where c.org_id = p_org_id and c.request_id = p_request_id;
        if explanation is not null and explanation -> 'usage' = jsonb_build_object(
               'input_tokens', p_input_tokens, 'output_tokens', p_output_tokens,
               'images', p_images, 'requests', p_requests) then
            return query select v_hold.settled_credits, v_hold.remaining_at_close, explanation, true;
            return;
        end if;
    end if;
    select * into v_price
      from price_usage(p_org_id, v_hold.service_type, v_hold.service_name, p_input_tokens, p_output_tokens,
                       p_images, p_requests, p_byok, now());
    select * into v_settled
      from settle_hold(p_org_id, p_request_id, v_price.credits,
                       coalesce(p_metadata, '{}') || jsonb_build_object('pricing', v_price.explanation));
    return query select v_settled.credits, v_settled.remaining, v_price.explanation, v_settled.replayed;
end;
$$;

comment on function settle_usage(text, text, numeric, numeric, numeric, numeric, boolean, jsonb) is
    'settle_usage(p_org_id, p_request_id, p_input_tokens, p_output_tokens, p_images, p_requests, p_byok, '
    'p_metadata): returns (credits, remaining, explanation, replayed). Prices the call the hold was made for (its '
    'service type and name, now) and settles the hold at that price, in one transaction; the attribution row''s '
    'metadata carries the explanation under ''pricing''. Locks and raises as price_usage and settle_hold.';


-- release_hold(p_org_id, p_request_id): returns (credits, remaining,
-- replayed): the credits freed and what the member can spend after.
-- Frees an open hold (also one past its expiry). The same call again, or a
-- release of a hold that expired, answers as the first did (replayed true).
-- Locks the allocation row, then the hold. Raises CB002, CB009, CB014 (the
-- hold was settled).
create or replace function release_hold(p_org_id text, p_request_id text)
returns table (credits numeric, remaining numeric, replayed boolean)
language plpgsql
as $$
declare
    v_hold credit_holds;
begin
    v_hold := ledger_lock_hold(ledger_hold_for(p_org_id, p_request_id));
    if v_hold.status = 'settled' then
        perform ledger_refuse_closed_hold(v_hold, 'release');
    end if;
    if v_hold.status <> 'open' then
        return query select v_hold.credits, v_hold.remaining_at_close, true;
        return;
    end if;
    perform ledger_free_holds(p_org_id, v_hold.allocation_id, 'released', 'released', v_hold.id);
    return query select v_hold.credits, h.remaining_at_close, false
                   from credit_holds h where h.org_id = p_org_id and h.id = v_hold.id;
end;
$$;

comment on function release_hold(text, text) is
    'release_hold(p_org_id, p_request_id): returns (credits, remaining, replayed): the credits freed and what the '
    'member can spend after. Frees an open hold (also one past its expiry). The same call again, or a release of '
    'a hold that expired, answers as the first did (replayed true). Locks the allocation row, then the hold. '
    'Raises CB002, CB009, CB014 (the hold was settled).';


-- release_expired_holds(p_now): returns the number of holds freed.
-- Frees every open hold whose expiry is at or before p_now (default now):
-- status 'expired'. The period job calls it. Locks the allocations concerned,
-- one after another in (organization, user) order, each before its holds.
-- Raises CB009 (infinite p_now, or p_now in the future).
create or replace function release_expired_holds(p_now timestamptz default null)
returns integer
language plpgsql
as $$
declare
    v_now timestamptz := pricing_check_moment(p_now);
    v_allocation record;
    v_count integer := 0;
begin
    perform ledger_check_not_future(p_now, 'Hold expiry time');  -- a future time would free holds of calls still running
    for v_allocation in
        select distinct h.org_id, h.user_id, h.allocation_id
          from credit_holds h
         where h.status = 'open' and h.expires_at <= v_now
         order by h.org_id, h.user_id
    loop
        perform 1 from user_credit_allocations a
         where a.org_id = v_allocation.org_id and a.id = v_allocation.allocation_id
           for update;
        v_count := v_count + (select count(*) from credit_holds h
                               where h.org_id = v_allocation.org_id and h.allocation_id = v_allocation.allocation_id
                                 and h.status = 'open' and h.expires_at <= v_now);
        perform ledger_free_holds(v_allocation.org_id, v_allocation.allocation_id, 'expired', 'expired', null, v_now);
    end loop;
    return v_count;
end;
$$;

comment on function release_expired_holds(timestamptz) is
    'release_expired_holds(p_now): returns the number of holds freed. Frees every open hold whose expiry is at or '
    'before p_now (default now): status ''expired''. The period job calls it. Locks the allocations concerned, '
    'one after another in (organization, user) order, each before its holds. Raises CB009 (infinite p_now, or '
    'p_now in the future).';


-- personal_organization_of(p_user_id): returns the id of the user's
-- personal balance (organization of kind 'personal'), or null. Raises nothing.
create or replace function personal_organization_of(p_user_id text)
returns text
language sql
stable
as $$
    select id from organizations where personal_user_id = p_user_id;
$$;

comment on function personal_organization_of(text) is
    'personal_organization_of(p_user_id): returns the id of the user''s personal balance (organization of kind '
    '''personal''), or null. Raises nothing.';


-- top_up_personal_balance(p_user_id, p_credits, p_purchase_amount,
--                         p_actor_id, p_description, p_external_ref):
-- returns (org_id, remaining).
-- A trusted caller's direct entry of a paid purchase for a user's individual
-- balance: a personal organization (created on the first top-up or order,
-- the user its only member and admin; never their default organization)
-- whose credits are all allocated to the user. Only a system admin or the
-- operator (null actor) enters it: a user buys for themself with an order
-- (order_personal_credits), credited when its payment is recorded.
-- The purchase is one add_credits_to_pool (a paid order and its billing
-- history row: amount above $0, at most the list price) and one allocation,
-- in one transaction; p_external_ref makes it idempotent.
-- Locks the pool row, then the allocation. Raises CB001, CB002, CB007,
-- CB008, CB009.
create or replace function top_up_personal_balance(
    p_user_id text,
    p_credits numeric,
    p_purchase_amount numeric,
    p_actor_id text default null,
    p_description text default null,
    p_external_ref text default null
)
returns table (org_id text, remaining numeric)
language plpgsql
as $$
declare
    v_org text;
begin
    perform ledger_require_user(p_user_id);
    perform ledger_check_credits(p_credits, 'Credits to add');
    perform ledger_check_money(p_purchase_amount, 'Purchase amount');
    perform ledger_authorize_credits_in(p_actor_id, null, 'top up an individual balance');
    v_org := ledger_personal_organization(p_user_id, p_actor_id);
    perform ledger_lock_pool(v_org);
    if p_external_ref is not null
       and exists (select 1 from org_billing_history b where b.org_id = v_org and b.external_ref = p_external_ref) then
        -- a retry: add_credits_to_pool answers it (or raises CB007); nothing is allocated again
        perform add_credits_to_pool(p_org_id => v_org, p_credits => p_credits, p_purchase_amount => p_purchase_amount,
                                    p_actor_id => p_actor_id, p_description => p_description,
                                    p_external_ref => p_external_ref);
        return query select v_org, a.remaining_credits - a.held_credits from user_credit_allocations a
                      where a.org_id = v_org and a.user_id = p_user_id and a.is_active;
        return;
    end if;
    perform add_credits_to_pool(p_org_id => v_org, p_credits => p_credits, p_purchase_amount => p_purchase_amount,
                                p_actor_id => p_actor_id,
                                p_description => coalesce(p_description,
                                                          format('%s credits added to the individual balance',
                                                                 ledger_amount_text(p_credits))),
                                p_external_ref => p_external_ref);
    perform allocate_credits_to_user(v_org, p_user_id, p_credits, p_actor_id);
    return query select v_org, a.remaining_credits - a.held_credits from user_credit_allocations a
                  where a.org_id = v_org and a.user_id = p_user_id and a.is_active;
end;
$$;

comment on function top_up_personal_balance(text, numeric, numeric, text, text, text) is
    'top_up_personal_balance(p_user_id, p_credits, p_purchase_amount, p_actor_id, p_description, p_external_ref): '
    'returns (org_id, remaining). A trusted caller''s direct entry of a paid purchase for a user''s individual '
    'balance: a personal organization (created on the first top-up or order, the user its only member and admin; '
    'never their default organization) whose credits are all allocated to the user. Only a system admin or the '
    'operator (null actor) enters it: a user buys for themself with an order (order_personal_credits), credited '
    'when its payment is recorded. The purchase is one add_credits_to_pool (a paid order and its billing history '
    'row: amount above $0, at most the list price) and one allocation, in one transaction; p_external_ref makes '
    'it idempotent. Locks the pool row, then the allocation. Raises CB001, CB002, CB007, CB008, CB009.';


-- credit_holds_of(p_org_id, p_actor_id, p_open_only): the organization's
-- credit holds, newest first; p_open_only: those still open. p_actor_id: an
-- admin of it, a system admin or the operator. Locks nothing. Raises CB002,
-- CB008.
create or replace function credit_holds_of(p_org_id text, p_actor_id text, p_open_only boolean default false)
returns table (request_id text, user_id text, credits numeric, service_type text, service_name text, status text,
               settled_credits numeric, expires_at timestamptz, created_at timestamptz, closed_at timestamptz,
               close_reason text)
language plpgsql
stable
as $$
#variable_conflict use_column
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    return query
        select h.request_id, h.user_id, h.credits, h.service_type, h.service_name, h.status, h.settled_credits,
               h.expires_at, h.created_at, h.closed_at, h.close_reason
          from credit_holds h
         where h.org_id = p_org_id and (h.status = 'open' or not p_open_only)
         order by h.created_at desc, h.id desc;
end;
$$;

comment on function credit_holds_of(text, text, boolean) is
    'credit_holds_of(p_org_id, p_actor_id, p_open_only): the organization''s credit holds, newest first; '
    'p_open_only: those still open. p_actor_id: an admin of it, a system admin or the operator. Locks nothing. '
    'Raises CB002, CB008.';
