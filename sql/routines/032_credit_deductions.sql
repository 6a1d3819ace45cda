-- Deductions: a member's metered usage is charged to their allocation, once
-- per request id. The lock order: the top of 030_credit_purchases.sql.


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
-- (allocation closed), CB005 (no allocation, or too few credits remaining;
-- DETAIL 'remaining=<credits> needed=<credits>' for programs).
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
                             'ask an org admin to allocate credits.', p_user_id, p_org_id),
            detail = format('remaining=0 needed=%s', p_credits);
    end if;
    raise exception using errcode = 'CB005',
        message = format('Insufficient credits: user %L has %s remaining in organization %L%s, %s needed.',
                         p_user_id, ledger_amount_text(v_remaining), p_org_id,
                         case when v_held > 0 then format(' (%s more held for calls in progress)',
                                                          ledger_amount_text(v_held)) else '' end,
                         ledger_amount_text(p_credits)),
        detail = format('remaining=%s needed=%s', v_remaining, p_credits);
end;
$$;

comment on function ledger_refuse_deduction(text, text, numeric) is
    'ledger_refuse_deduction(p_org_id, p_user_id, p_credits): always raises, saying why a deduction found no '
    'allocation able to pay: CB002 (unknown org or user), CB011 (org not active), CB003 (not a member), CB006 '
    '(allocation closed), CB005 (no allocation, or too few credits remaining; DETAIL ''remaining=<credits> '
    'needed=<credits>'' for programs).';



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
-- current allocation. The row's metadata is p_metadata, plus "api_key_id"
-- when the transaction acts through an API key (ledger_api_key_id): so
-- charge_usage, settle_hold and settle_usage carry it too.
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
                   p_request_id,
                   p_metadata || jsonb_strip_nulls(jsonb_build_object('api_key_id', ledger_api_key_id())),
                   c.remaining_credits, coalesce(p_occurred_at, now())
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
    'row''s metadata is p_metadata, plus "api_key_id" when the transaction acts through an API key '
    '(ledger_api_key_id): so charge_usage, settle_hold and settle_usage carry it too. The '
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
