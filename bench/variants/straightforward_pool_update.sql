-- Reference (not a valid change): the issue's "straightforward design" on the
-- same server and run. deduct_credits as in sql/routines/032_credit_deductions.sql plus
-- an UPDATE of the organization's pool row on every charge, which is what
-- keeping used_credits stored on the pool costs: every charge of one
-- organization queues on that row.
-- the repository's deduct_credits takes a trailing p_occurred_at: drop it, or
-- the 7-argument version below would make every call ambiguous
drop function if exists deduct_credits(text, text, numeric, text, text, text, jsonb, timestamptz);

create or replace function deduct_credits(
    p_org_id text,
    p_user_id text,
    p_credits numeric,
    p_service_type text,
    p_service_name text,
    p_request_id text default null,
    p_metadata jsonb default '{}'
)
returns numeric
language plpgsql
as $$
declare
    v_first credit_usage_attribution;
    v_allocation_id text;
    v_remaining numeric;
    v_recorded boolean;
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
                    and jsonb_typeof(p_metadata) = 'object' and octet_length(p_metadata::text) <= 8192,
                    false) then
        perform ledger_check_credits(p_credits, 'Credits to deduct');
        perform ledger_check_usage(p_service_type, p_service_name, p_request_id, p_metadata);
    end if;

    -- The charge and its attribution row in one statement. The UPDATE's WHERE
    -- clause is re-checked on the newest row version after a wait, so
    -- concurrent charges can never overdraw the allocation.
    with charged as (
        update user_credit_allocations
           set used_credits = used_credits + p_credits, updated_at = now()
         where org_id = p_org_id and user_id = p_user_id and is_active
           and remaining_credits >= p_credits
           and exists (select 1 from organizations where id = p_org_id and status = 'active')
           -- a retry of a recorded request touches nothing: it is answered below
           and not exists (select 1 from credit_usage_attribution
                            where org_id = p_org_id and request_id = p_request_id)
        returning id, remaining_credits
    ), recorded as (
        insert into credit_usage_attribution
            (org_id, user_id, allocation_id, credits_used, service_type, service_name,
             request_id, metadata, remaining_after)
        select p_org_id, p_user_id, c.id, p_credits, p_service_type, p_service_name,
               p_request_id, p_metadata, c.remaining_credits
          from charged c
        on conflict (org_id, request_id) where request_id is not null do nothing
        returning 1
    )
    select c.id, c.remaining_credits, exists (select 1 from recorded)
      into v_allocation_id, v_remaining, v_recorded
      from charged c;
    if v_recorded then
        -- the straightforward design: the pool row carries the used figure,
        -- so every charge also updates it (one hot row per organization)
        update credit_pools set closed_used_credits = closed_used_credits, updated_at = now()
         where org_id = p_org_id;
        return v_remaining;
    end if;

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
