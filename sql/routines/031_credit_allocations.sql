-- Allocations: an organization's admins give members parts of the pool and
-- take unused credits back; an allocation is closed when its member leaves.
-- The lock order: the top of 030_credit_purchases.sql.


-- ledger_allocate_locked(p_org_id, p_user_id, p_credits, p_actor_id): returns
-- the member's remaining credits. Adds p_credits to the member's active
-- allocation, opening one if there is none; its 90% alert resolves when it
-- is back under 90% used (094_alerts.sql). The caller holds the pool lock
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
    perform ledger_review_allocation_alert(p_org_id, v_allocation.id, p_actor_id);  -- a top-up under 90%: alert gone
    return v_allocation.remaining_credits;
end;
$$;

comment on function ledger_allocate_locked(text, text, numeric, text) is
    'ledger_allocate_locked(p_org_id, p_user_id, p_credits, p_actor_id): returns the member''s remaining credits. '
    'Adds p_credits to the member''s active allocation, opening one if there is none; its 90% alert resolves when '
    'it is back under 90% used (094_alerts.sql). The caller holds the pool lock and has checked the amount, the '
    'membership and the pool''s available credits.';


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
