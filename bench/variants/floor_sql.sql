-- Pricing only (NOT a valid change: no argument checks, no refusals, no
-- replay): deduct_credits as one LANGUAGE SQL statement, the charge and the
-- attribution row as data-modifying CTEs. What the writes themselves cost
-- with the repository's schema (its indexes): the floor that
-- no PL/pgSQL refinement can go below.
-- the repository's deduct_credits takes a trailing p_occurred_at: drop it, or
-- the 7-argument version below would make every call ambiguous
drop function if exists deduct_credits(text, text, numeric, text, text, text, jsonb, timestamptz);

create or replace function deduct_credits(
    p_org_id text, p_user_id text, p_credits numeric, p_service_type text, p_service_name text,
    p_request_id text default null, p_metadata jsonb default '{}')
returns numeric
language sql
as $$
    with charged as (
        update user_credit_allocations
           set used_credits = used_credits + p_credits, updated_at = now()
         where org_id = p_org_id and user_id = p_user_id and is_active
           and remaining_credits >= p_credits
           and exists (select 1 from organizations where id = p_org_id and status = 'active')
        returning id, remaining_credits
    ), recorded as (
        insert into credit_usage_attribution
            (org_id, user_id, allocation_id, credits_used, service_type, service_name,
             request_id, metadata, remaining_after)
        select p_org_id, p_user_id, c.id, p_credits, p_service_type, p_service_name,
               p_request_id, p_metadata, c.remaining_credits
          from charged c
        on conflict (org_id, request_id) where request_id is not null do nothing
        returning remaining_after
    )
    select remaining_after from recorded;
$$;
