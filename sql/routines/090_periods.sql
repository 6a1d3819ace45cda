-- Billing periods: each organization's settings for its period boundaries,
-- and the period job that performs them exactly once.
--
-- At a boundary (the start of a period, on the organization's calendar):
--   1. every active allocation closes (unused credits return to the pool,
--      what was used stays in history: ledger_close_allocation);
--   2. lots expiring at or before the boundary expire (092_lots.sql);
--   3. the pool receives the monthly refresh amount and the plan's included
--      credits (org_included_credits) as two 'credit_grant' history rows
--      (metadata.source 'monthly_refresh' / 'plan_included'); both expire at
--      the period's end;
--   4. each member reopens at their standing amount, plus, under the
--      'rollover' policy, their unused credits up to the cap. When the pool
--      cannot fund every amount, each member gets the same fraction of theirs
--      (rounded down to 6 decimals; what rounding leaves stays in the pool).
-- A member's standing amount is organization_members.standing_credits when
-- set; otherwise what they were allocated in the closing period: the
-- standing amount it reopened at plus what admins allocated minus what they
-- took back (rollover and expiry take-backs excluded).
-- The period that contains the moment the job first sees an organization
-- (from its creation) is its baseline: nothing is granted for it.
-- A calendar change (anchor day, time zone) never moves the current period's
-- end; the period after it runs to the new calendar's first boundary, or, if
-- the old end is not a boundary of the new calendar, to the second one (so it
-- lasts one to two months and a change never adds a boundary).
--
-- Locks, per organization: the organization row (FOR NO KEY UPDATE, as
-- subscription changes do), then the pool row, then allocation rows in user
-- id order, then lot rows.


-- ledger_check_not_future(p_at, p_what): returns nothing. Refuses a time
-- beyond the database clock (the same one minute of clock skew
-- ledger_check_occurred_at allows) or infinite: work due "as of" a future time
-- (a boundary, an expiry) must wait for that time. Null passes (now).
-- Raises CB009.
create or replace function ledger_check_not_future(p_at timestamptz, p_what text)
returns void
language plpgsql
stable
as $$
begin
    if p_at is null then
        return;
    end if;
    if not isfinite(p_at) or p_at > clock_timestamp() + interval '1 minute' then
        raise exception using errcode = 'CB009',
            message = format('%s (%s) is in the future: work due then waits until then '
                             '(the database clock says %s).',
                             p_what, ledger_time_text(p_at), ledger_time_text(clock_timestamp()));
    end if;
end;
$$;

comment on function ledger_check_not_future(timestamptz, text) is
    'ledger_check_not_future(p_at, p_what): returns nothing. Refuses a time beyond the database clock (the same '
    'one minute of clock skew ledger_check_occurred_at allows) or infinite: work due "as of" a future time (a '
    'boundary, an expiry) must wait for that time. Null passes (now). Raises CB009.';


-- ledger_check_credits_or_zero(p_credits, p_what): returns nothing.
-- Like ledger_check_credits, but 0 is accepted. Raises CB001.
create or replace function ledger_check_credits_or_zero(p_credits numeric, p_what text)
returns void
language plpgsql
immutable
as $$
begin
    if p_credits is distinct from 0 then
        perform ledger_check_credits(p_credits, p_what);
    end if;
end;
$$;

comment on function ledger_check_credits_or_zero(numeric, text) is
    'ledger_check_credits_or_zero(p_credits, p_what): returns nothing. Like ledger_check_credits, but 0 is '
    'accepted. Raises CB001.';


-- ledger_lock_org_periods(p_org_id): returns the pool row, locked.
-- Locks the organization row FOR NO KEY UPDATE, then the pool row (created
-- if missing). Raises CB002 for an unknown organization.
create or replace function ledger_lock_org_periods(p_org_id text)
returns credit_pools
language plpgsql
as $$
begin
    perform 1 from organizations where id = p_org_id for no key update;
    if not found then
        raise exception using errcode = 'CB002',
            message = format('Organization %L does not exist.', p_org_id);
    end if;
    return ledger_lock_pool(p_org_id);
end;
$$;

comment on function ledger_lock_org_periods(text) is
    'ledger_lock_org_periods(p_org_id): returns the pool row, locked. Locks the organization row FOR NO KEY '
    'UPDATE, then the pool row (created if missing). Raises CB002 for an unknown organization.';


-- ledger_current_period(p_org_id): returns the organization's latest
-- billing_periods row, inserting its baseline period (the one containing its
-- creation) when it has none. The caller holds the organization's locks.
create or replace function ledger_current_period(p_org_id text)
returns billing_periods
language plpgsql
as $$
declare
    v_period billing_periods;
begin
    select * into v_period from billing_periods where org_id = p_org_id order by period_start desc limit 1;
    if not found then
        insert into billing_periods (org_id, period_start, period_end, is_baseline)
        select p_org_id, b.period_start, b.period_end, true
          from organizations o
         cross join lateral org_billing_period(o.id, o.created_at) b
         where o.id = p_org_id
        returning * into v_period;
    end if;
    return v_period;
end;
$$;

comment on function ledger_current_period(text) is
    'ledger_current_period(p_org_id): returns the organization''s latest billing_periods row, inserting its '
    'baseline period (the one containing its creation) when it has none. The caller holds the organization''s '
    'locks.';


-- billing_next_period(p_org_id, p_after): the period that follows one ending
-- at p_after, on the organization's current calendar: (p_after, the
-- calendar's boundary after it), or, when p_after is not a boundary of the
-- calendar (it changed), (p_after, the second boundary after it).
-- Raises CB002 for an unknown organization. Locks nothing.
create or replace function billing_next_period(p_org_id text, p_after timestamptz)
returns table (period_start timestamptz, period_end timestamptz)
language plpgsql
stable
as $$
declare
    v_first record;
begin
    select * into v_first from org_billing_period(p_org_id, p_after);
    period_start := p_after;
    if v_first.period_start = p_after then
        period_end := v_first.period_end;
    else
        select b.period_end into period_end from org_billing_period(p_org_id, v_first.period_end) b;
    end if;
    return next;
end;
$$;

comment on function billing_next_period(text, timestamptz) is
    'billing_next_period(p_org_id, p_after): the period that follows one ending at p_after, on the '
    'organization''s current calendar: (p_after, the calendar''s boundary after it), or, when p_after is not a '
    'boundary of the calendar (it changed), (p_after, the second boundary after it). Raises CB002 for an unknown '
    'organization. Locks nothing.';


-- billing_current_period(p_org_id, p_actor_id): the organization's current
-- period as the period job keeps it (start, end, next_end), the one after
-- it ending at next_end. p_actor_id must be a member of the organization
-- (null: trusted). Before the job has seen the organization, its baseline
-- period (the one containing its creation). Raises CB002, CB008. Writes and
-- locks nothing.
create or replace function billing_current_period(p_org_id text, p_actor_id text default null)
returns table (period_start timestamptz, period_end timestamptz, next_period_end timestamptz)
language plpgsql
stable
as $$
declare
    v_period billing_periods;
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'member');
    select * into v_period from billing_periods b where b.org_id = p_org_id order by b.period_start desc limit 1;
    if found then
        period_start := v_period.period_start;
        period_end := v_period.period_end;
    else
        -- the job has not seen the organization yet: its baseline period, computed, not recorded (a read writes nothing)
        select b.period_start, b.period_end into period_start, period_end
          from organizations o cross join lateral org_billing_period(o.id, o.created_at) b
         where o.id = p_org_id;
    end if;
    select n.period_end into next_period_end from billing_next_period(p_org_id, period_end) n;
    return next;
end;
$$;

comment on function billing_current_period(text, text) is
    'billing_current_period(p_org_id, p_actor_id): the organization''s current period as the period job keeps it '
    '(start, end, next_end), the one after it ending at next_end. p_actor_id must be a member of the organization '
    '(null: trusted). Before the job has seen the organization, its baseline period (the one containing its '
    'creation). Raises CB002, CB008. Writes and locks nothing.';


-- set_billing_calendar(p_org_id, p_anchor_day, p_timezone, p_actor_id):
-- returns true when the calendar changed, false when it already was this
-- one (nothing written, no audit row). Sets the day of the month (1-31)
-- and the time zone the organization's periods start on. The current period
-- keeps its end; the next one runs to the new calendar's first boundary after
-- it, or to the second when that end is not a boundary of the new calendar. p_actor_id must
-- be an admin of the organization (null: trusted). Locks the organization
-- row, then the pool. Raises CB002, CB008, CB009 (bad day or time zone).

create or replace function set_billing_calendar(
    p_org_id text,
    p_anchor_day integer,
    p_timezone text,
    p_actor_id text default null
)
returns boolean
language plpgsql
as $$
declare
    v_org organizations;
    v_period billing_periods;
begin
    perform ledger_check_anchor_day(p_anchor_day);
    perform ledger_check_timezone(p_timezone);
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    perform ledger_lock_org_periods(p_org_id);
    select * into v_org from organizations where id = p_org_id;
    if v_org.billing_anchor_day = p_anchor_day and v_org.billing_timezone = p_timezone then
        return false;
    end if;
    v_period := ledger_current_period(p_org_id);  -- pinned on the old calendar
    update organizations
       set billing_anchor_day = p_anchor_day, billing_timezone = p_timezone, updated_at = now()
     where id = p_org_id;
    perform ledger_audit(p_org_id, p_actor_id, 'billing.calendar_changed', 'organization', p_org_id,
                         jsonb_build_object('from_anchor_day', v_org.billing_anchor_day,
                                            'from_timezone', v_org.billing_timezone,
                                            'anchor_day', p_anchor_day, 'timezone', p_timezone,
                                            'current_period_end', v_period.period_end,
                                            'next_period_end',
                                            (select n.period_end from billing_next_period(p_org_id, v_period.period_end) n)));
    return true;
end;
$$;

comment on function set_billing_calendar(text, integer, text, text) is
    'set_billing_calendar(p_org_id, p_anchor_day, p_timezone, p_actor_id): returns true when the calendar changed, '
    'false when it already was this one (nothing written, no audit row). Sets the day of the '
    'month (1-31) and the time zone the organization''s periods start on. The current period keeps its end; the '
    'next one runs to the new calendar''s first boundary after it, or to the second when that end is not a '
    'boundary of the new calendar. p_actor_id must be an admin of the organization (null: trusted). Locks the '
    'organization row, then the pool. Raises CB002, CB008, CB009 (bad day or time zone).';


-- set_allocation_policy(p_org_id, p_policy, p_rollover_cap, p_actor_id):
-- returns nothing. 'reset': members' unused credits return to the pool at
-- each boundary (p_rollover_cap must be null); 'rollover': up to
-- p_rollover_cap of them are carried into the next period. p_actor_id must be
-- an admin of the organization (null: trusted). Locks the organization row,
-- then the pool. Raises CB001 (bad cap), CB002, CB008, CB009 (unknown policy,
-- cap missing or given for 'reset').
create or replace function set_allocation_policy(
    p_org_id text,
    p_policy text,
    p_rollover_cap numeric default null,
    p_actor_id text default null
)
returns void
language plpgsql
as $$
declare
    v_pool credit_pools;
begin
    if p_policy is null or p_policy not in ('reset', 'rollover') then
        raise exception using errcode = 'CB009',
            message = format('Allocation policy must be ''reset'' or ''rollover'' (got %L).', left(p_policy, 80));
    end if;
    if p_policy = 'reset' and p_rollover_cap is not null then
        raise exception using errcode = 'CB009',
            message = 'A rollover cap applies to the ''rollover'' policy only: leave it empty for ''reset''.';
    end if;
    if p_policy = 'rollover' then
        if p_rollover_cap is null then
            raise exception using errcode = 'CB009',
                message = 'The ''rollover'' policy needs a cap: the most unused credits one member carries over.';
        end if;
        perform ledger_check_credits(p_rollover_cap, 'Rollover cap');
    end if;
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    v_pool := ledger_lock_org_periods(p_org_id);
    update credit_pools
       set allocation_policy = p_policy, rollover_cap = p_rollover_cap, updated_at = now()
     where org_id = p_org_id;
    perform ledger_audit(p_org_id, p_actor_id, 'billing.allocation_policy_changed', 'organization', p_org_id,
                         jsonb_build_object('from_policy', v_pool.allocation_policy,
                                            'from_rollover_cap', v_pool.rollover_cap,
                                            'policy', p_policy, 'rollover_cap', p_rollover_cap));
end;
$$;

comment on function set_allocation_policy(text, text, numeric, text) is
    'set_allocation_policy(p_org_id, p_policy, p_rollover_cap, p_actor_id): returns nothing. ''reset'': members'' '
    'unused credits return to the pool at each boundary (p_rollover_cap must be null); ''rollover'': up to '
    'p_rollover_cap of them are carried into the next period. p_actor_id must be an admin of the organization '
    '(null: trusted). Locks the organization row, then the pool. Raises CB001 (bad cap), CB002, CB008, CB009 '
    '(unknown policy, cap missing or given for ''reset'').';


-- set_member_standing_credits(p_org_id, p_user_id, p_credits, p_actor_id):
-- returns nothing. What the member's allocation reopens at each period
-- (0: nothing; null: what they were allocated in the closing period).
-- p_actor_id must be an admin of the organization (null: trusted). Locks the
-- organization row, then the pool. Raises CB001, CB002, CB003, CB008.
create or replace function set_member_standing_credits(
    p_org_id text,
    p_user_id text,
    p_credits numeric,
    p_actor_id text default null
)
returns void
language plpgsql
as $$
declare
    v_before numeric;
begin
    perform ledger_check_credits_or_zero(p_credits, 'Standing credits');
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    perform ledger_lock_org_periods(p_org_id);
    perform ledger_require_member(p_org_id, p_user_id);
    select standing_credits into v_before from organization_members where org_id = p_org_id and user_id = p_user_id;
    update organization_members
       set standing_credits = p_credits
     where org_id = p_org_id and user_id = p_user_id;
    perform ledger_audit(p_org_id, p_actor_id, 'billing.standing_credits_changed', 'user', p_user_id,
                         jsonb_build_object('from', v_before, 'to', p_credits));
end;
$$;

comment on function set_member_standing_credits(text, text, numeric, text) is
    'set_member_standing_credits(p_org_id, p_user_id, p_credits, p_actor_id): returns nothing. What the member''s '
    'allocation reopens at each period (0: nothing; null: what they were allocated in the closing period). '
    'p_actor_id must be an admin of the organization (null: trusted). Locks the organization row, then the pool. '
    'Raises CB001, CB002, CB003, CB008.';


-- set_low_balance_threshold(p_org_id, p_threshold, p_actor_id): returns
-- nothing. An alert opens when the pool's unspent credits (total - used)
-- fall below p_threshold (null: no alert); the pool is evaluated at once.
-- p_actor_id must be an admin of the organization (null: trusted). Locks the
-- organization row, then the pool. Raises CB001, CB002, CB008.
create or replace function set_low_balance_threshold(
    p_org_id text,
    p_threshold numeric,
    p_actor_id text default null
)
returns void
language plpgsql
as $$
declare
    v_pool credit_pools;
begin
    perform ledger_check_credits_or_zero(p_threshold, 'Low-balance threshold');
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    v_pool := ledger_lock_org_periods(p_org_id);
    update credit_pools
       set low_balance_threshold = p_threshold, updated_at = now()
     where org_id = p_org_id;
    perform ledger_audit(p_org_id, p_actor_id, 'billing.low_balance_threshold_changed', 'organization', p_org_id,
                         jsonb_build_object('from', v_pool.low_balance_threshold, 'to', p_threshold));
    perform ledger_evaluate_pool_alert(p_org_id);
end;
$$;

comment on function set_low_balance_threshold(text, numeric, text) is
    'set_low_balance_threshold(p_org_id, p_threshold, p_actor_id): returns nothing. An alert opens when the '
    'pool''s unspent credits (total - used) fall below p_threshold (null: no alert); the pool is evaluated at '
    'once. p_actor_id must be an admin of the organization (null: trusted). Locks the organization row, then the '
    'pool. Raises CB001, CB002, CB008.';


-- set_monthly_refresh_amount(p_org_id, p_credits, p_actor_id): returns
-- nothing. Credits granted to the pool at every period start (0: none).
-- Free credits, so p_actor_id must be a system admin (null: trusted).
-- Locks the organization row, then the pool. Raises CB001, CB002, CB008.
create or replace function set_monthly_refresh_amount(
    p_org_id text,
    p_credits numeric,
    p_actor_id text default null
)
returns void
language plpgsql
as $$
declare
    v_pool credit_pools;
begin
    if p_credits is null then
        raise exception using errcode = 'CB001',
            message = 'Monthly refresh amount is missing: give a number of credits (0 for none).';
    end if;
    perform ledger_check_credits_or_zero(p_credits, 'Monthly refresh amount');
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'system_admin');
    v_pool := ledger_lock_org_periods(p_org_id);
    update credit_pools
       set monthly_refresh_amount = p_credits, updated_at = now()
     where org_id = p_org_id;
    perform ledger_audit(p_org_id, p_actor_id, 'billing.monthly_refresh_changed', 'organization', p_org_id,
                         jsonb_build_object('from', v_pool.monthly_refresh_amount, 'to', p_credits));
end;
$$;

comment on function set_monthly_refresh_amount(text, numeric, text) is
    'set_monthly_refresh_amount(p_org_id, p_credits, p_actor_id): returns nothing. Credits granted to the pool at '
    'every period start (0: none). Free credits, so p_actor_id must be a system admin (null: trusted). Locks the '
    'organization row, then the pool. Raises CB001, CB002, CB008.';


-- ledger_grant_period_credits(p_org_id, p_credits, p_source, p_start,
-- p_end): returns nothing. Adds p_credits (when > 0) to the pool as a
-- 'credit_grant' history row dated p_start, expiring at p_end (its lot
-- follows from the row). The caller holds the pool lock.
create or replace function ledger_grant_period_credits(
    p_org_id text,
    p_credits numeric,
    p_source text,
    p_start timestamptz,
    p_end timestamptz
)
returns void
language plpgsql
as $$
declare
    v_total numeric;
begin
    if coalesce(p_credits, 0) <= 0 then
        return;
    end if;
    update credit_pools
       set total_credits = total_credits + p_credits, updated_at = now()
     where org_id = p_org_id
    returning total_credits into v_total;
    insert into org_billing_history
        (org_id, event_type, credits, description, metadata, total_credits_after, credits_expire_at, created_at)
    values (p_org_id, 'credit_grant', p_credits,
            format('%s credits %s for the period from %s', ledger_amount_text(p_credits),
                   case p_source when 'monthly_refresh' then 'of monthly refresh' else 'included in the plan' end,
                   ledger_time_text(p_start)),
            jsonb_build_object('source', p_source, 'period_start', p_start, 'period_end', p_end),
            v_total, p_end, p_start);
end;
$$;

comment on function ledger_grant_period_credits(text, numeric, text, timestamptz, timestamptz) is
    'ledger_grant_period_credits(p_org_id, p_credits, p_source, p_start, p_end): returns nothing. Adds p_credits '
    '(when > 0) to the pool as a ''credit_grant'' history row dated p_start, expiring at p_end (its lot follows '
    'from the row). The caller holds the pool lock.';


-- ledger_open_period(p_run_id, p_org_id, p_start, p_end): returns nothing.
-- Performs the boundary at p_start for the period [p_start, p_end) as the
-- top of this file describes, and records it in billing_periods (its primary
-- key makes a second attempt fail rather than grant twice). Open credit
-- holds (calls in flight) move to the member's new allocation, on top of its
-- standing amount and rollover (held credits never roll over as unused). The caller holds the organization's locks and has settled the
-- lots. Locks allocations in user id order, then their holds, then lots.
create or replace function ledger_open_period(
    p_run_id bigint,
    p_org_id text,
    p_start timestamptz,
    p_end timestamptz
)
returns void
language plpgsql
as $$
declare
    v_pool credit_pools;
    v_plan jsonb;
    v_member jsonb;
    v_closing record;
    v_refresh numeric;
    v_included numeric;
    v_requested numeric;
    v_available numeric;
    v_amount numeric;
    v_funded numeric;
    v_reopen numeric;
    v_held numeric;
    v_allocation_id text;
    v_closed integer := 0;
    v_opened integer := 0;
    v_allocated numeric := 0;
begin
    select * into v_pool from credit_pools where org_id = p_org_id;

    -- what each member reopens at, read before their allocations close
    select coalesce(jsonb_agg(jsonb_build_object('user_id', m.user_id, 'standing', x.standing,
                                                 'rollover', x.rollover, 'allocation_id', a.id,
                                                 'held', coalesce(a.held_credits, 0))
                              order by m.user_id collate "C"), '[]')
      into v_plan
      from organization_members m
      left join user_credit_allocations a on a.org_id = m.org_id and a.user_id = m.user_id and a.is_active
      left join lateral (
            select sum(e.credits) filter (where e.kind in ('allocate', 'reclaim')) as moved
              from credit_allocation_events e
             where e.org_id = a.org_id and e.allocation_id = a.id
           ) ev on true
     cross join lateral (
            select coalesce(m.standing_credits,
                            greatest(coalesce(a.standing_credits, 0) + coalesce(ev.moved, 0), 0)) as standing,
                   case when v_pool.allocation_policy = 'rollover'
                        then least(coalesce(a.remaining_credits - a.held_credits, 0), v_pool.rollover_cap)
                        else 0 end as rollover
           ) x
     where m.org_id = p_org_id and (a.id is not null or m.standing_credits is not null);

    for v_closing in
        select id from user_credit_allocations
         where org_id = p_org_id and is_active
         order by user_id collate "C"
    loop
        perform ledger_close_allocation(p_org_id, v_closing.id, null, p_start, true);  -- holds move on below
        update credit_alerts
           set status = 'resolved', resolved_at = now()
         where org_id = p_org_id and allocation_id = v_closing.id and status <> 'resolved';
        v_closed := v_closed + 1;
    end loop;

    perform ledger_expire_due_lots(p_org_id, p_start);

    v_refresh := v_pool.monthly_refresh_amount;
    v_included := org_included_credits(p_org_id, p_start);
    perform ledger_grant_period_credits(p_org_id, v_refresh, 'monthly_refresh', p_start, p_end);
    perform ledger_grant_period_credits(p_org_id, v_included, 'plan_included', p_start, p_end);

    select coalesce(sum((e ->> 'standing')::numeric + (e ->> 'rollover')::numeric + (e ->> 'held')::numeric), 0)
      into v_requested
      from jsonb_array_elements(v_plan) e;
    select total_credits - allocated_credits into v_available from credit_pools where org_id = p_org_id;

    for v_member in select e from jsonb_array_elements(v_plan) e loop
        -- a call in flight keeps its hold across the boundary, on top of what the member gets
        v_held := (v_member ->> 'held')::numeric;
        v_amount := (v_member ->> 'standing')::numeric + (v_member ->> 'rollover')::numeric + v_held;
        continue when v_amount <= 0;
        v_funded := case when v_requested <= v_available then v_amount
                         else trunc(v_amount * v_available / v_requested, 6) end;
        v_funded := greatest(v_funded, v_held);  -- a short pool still carries the hold whole
        v_reopen := least(v_funded, (v_member ->> 'standing')::numeric);
        insert into user_credit_allocations
            (org_id, user_id, allocated_credits, period_start, standing_credits)
        values (p_org_id, v_member ->> 'user_id', v_funded, p_start, (v_member ->> 'standing')::numeric)
        returning id into v_allocation_id;
        if v_reopen > 0 then
            insert into credit_allocation_events (org_id, allocation_id, user_id, kind, credits)
            values (p_org_id, v_allocation_id, v_member ->> 'user_id', 'reopen', v_reopen);
        end if;
        if v_funded > v_reopen then
            insert into credit_allocation_events (org_id, allocation_id, user_id, kind, credits)
            values (p_org_id, v_allocation_id, v_member ->> 'user_id', 'rollover', v_funded - v_reopen);
        end if;
        if v_held > 0 then
            -- the open holds the closed allocation kept move to the new one
            update credit_holds
               set allocation_id = v_allocation_id
             where org_id = p_org_id and allocation_id = v_member ->> 'allocation_id' and status = 'open';
            update user_credit_allocations set held_credits = v_held
             where org_id = p_org_id and id = v_allocation_id;
        end if;
        perform ledger_audit(p_org_id, null, 'allocation.reopened', 'user', v_member ->> 'user_id',
                             jsonb_build_object('allocation_id', v_allocation_id, 'credits', v_funded,
                                                'standing', v_member -> 'standing',
                                                'rollover', v_member -> 'rollover', 'period_start', p_start));
        v_opened := v_opened + 1;
        v_allocated := v_allocated + v_funded;
    end loop;
    update credit_pools
       set allocated_credits = allocated_credits + v_allocated, updated_at = now()
     where org_id = p_org_id;

    insert into billing_periods
        (org_id, period_start, period_end, run_id, refresh_credits, included_credits, allocations_closed,
         allocations_opened, credits_requested, credits_allocated)
    values (p_org_id, p_start, p_end, p_run_id, v_refresh, v_included, v_closed, v_opened, v_requested,
            v_allocated);
    if v_allocated < v_requested then
        perform ledger_audit(p_org_id, null, 'billing.allocation_shortfall', 'organization', p_org_id,
                             jsonb_build_object('period_start', p_start, 'requested', v_requested,
                                                'allocated', v_allocated));
    end if;
end;
$$;

comment on function ledger_open_period(bigint, text, timestamptz, timestamptz) is
    'ledger_open_period(p_run_id, p_org_id, p_start, p_end): returns nothing. Performs the boundary at p_start '
    'for the period [p_start, p_end) as the top of this file describes, and records it in billing_periods (its '
    'primary key makes a second attempt fail rather than grant twice). Open credit holds (calls in flight) move '
    'to the member''s new allocation, on top of its standing amount and rollover (held credits never roll over as '
    'unused). The caller holds the organization''s locks and has settled the lots. Locks allocations in user id '
    'order, then their holds, then lots.';


-- billing_periods_process_org(p_run_id, p_org_id, p_now): returns
-- (periods_closed, lots_expired). Does the organization's due work up to
-- p_now: renews its subscription (subscription_advance), settles its lots, then, in time order, every lot expiring at or
-- before p_now and every period boundary at or before p_now (a boundary
-- before lots expiring at the same moment), then evaluates its low-balance
-- alert, and adds its figures to run p_run_id. Safe to repeat: a second call
-- finds nothing due. Locks the organization row, the pool row, allocations,
-- lots. Raises CB002 (unknown organization), XX000 (lots cannot cover usage).
create or replace function billing_periods_process_org(p_run_id bigint, p_org_id text, p_now timestamptz)
returns table (periods_closed integer, lots_expired integer)
language plpgsql
as $$
declare
    v_period billing_periods;
    v_next record;
    v_expiry timestamptz;
begin
    -- marks this transaction as the period job's (ledger_settlement_bound ignores it)
    perform pg_advisory_xact_lock_shared(724031802);
    perform ledger_lock_org_periods(p_org_id);
    periods_closed := 0;
    lots_expired := 0;
    -- the subscription first (renew_subscription's work, under the org row lock taken above): its renewals
    -- up to p_now date the plan versions whose included credits are granted
    perform subscription_advance(p_org_id, p_now);
    perform ledger_settle_lots(p_org_id);
    loop
        v_period := ledger_current_period(p_org_id);
        select min(expires_at) into v_expiry from credit_lots
         where org_id = p_org_id and expired_at is null and expires_at <= p_now;
        if v_period.period_end <= p_now and (v_expiry is null or v_expiry >= v_period.period_end) then
            select * into v_next from billing_next_period(p_org_id, v_period.period_end);
            lots_expired := lots_expired
                + (select count(*) from credit_lots
                    where org_id = p_org_id and expired_at is null and expires_at <= v_next.period_start)::integer;
            perform ledger_open_period(p_run_id, p_org_id, v_next.period_start, v_next.period_end);
            periods_closed := periods_closed + 1;
        elsif v_expiry is not null then
            lots_expired := lots_expired + ledger_expire_due_lots(p_org_id, v_expiry);
        else
            exit;
        end if;
    end loop;
    perform ledger_evaluate_pool_alert(p_org_id);
    update billing_period_runs
       set orgs_processed = orgs_processed + 1,
           periods_closed = billing_period_runs.periods_closed + billing_periods_process_org.periods_closed,
           lots_expired = billing_period_runs.lots_expired + billing_periods_process_org.lots_expired
     where id = p_run_id;
    return next;
end;
$$;

comment on function billing_periods_process_org(bigint, text, timestamptz) is
    'billing_periods_process_org(p_run_id, p_org_id, p_now): returns (periods_closed, lots_expired). Does the '
    'organization''s due work up to p_now: renews its subscription (subscription_advance), settles its lots, '
    'then, in time order, every lot expiring at or before p_now and every period boundary at or before p_now (a '
    'boundary before lots expiring at the same moment), then evaluates its low-balance alert, and adds its '
    'figures to run p_run_id. Safe to repeat: a second call finds nothing due. Locks the organization row, the '
    'pool row, allocations, lots. Raises CB002 (unknown organization), XX000 (lots cannot cover usage).';


-- run_billing_periods(p_now, p_run_id): a procedure (CALL it outside a
-- transaction block); sets p_run_id to the run's id.
-- Releases the credit holds expired by p_now and refreshes plans' copy of the
-- versions in force, then does all due period work
-- for every organization that is not closed, up to p_now (default now), one
-- organization per transaction (committed one by
-- one, in id order), and records the run in billing_period_runs (started,
-- finished, organizations processed, periods closed, lots expired). An
-- organization whose work fails is rolled back alone and named in the run's
-- errors. Two overlapping runs queue on each organization's locks: the
-- second finds the work done. Raises CB009 (p_now in the future: next
-- period's boundary is not due today), nothing for one organization's failure.
create or replace procedure run_billing_periods(p_now timestamptz default null, inout p_run_id bigint default null)
language plpgsql
as $$
declare
    v_now timestamptz := coalesce(p_now, now());
    v_org_id text;
    v_error text;
begin
    perform ledger_check_not_future(p_now, 'Period job time');
    insert into billing_period_runs (run_as_of) values (v_now) returning id into p_run_id;
    commit;
    update billing_period_runs set holds_released = release_expired_holds(v_now) where id = p_run_id;
    perform plan_catalogue_refresh();  -- once per run: plans' copy of the versions in force
    commit;
    for v_org_id in select id from organizations where status <> 'closed' order by id collate "C" loop
        begin
            perform billing_periods_process_org(p_run_id, v_org_id, v_now);
        exception when others then
            get stacked diagnostics v_error = message_text;
            update billing_period_runs
               set orgs_failed = orgs_failed + 1,
                   errors = errors || jsonb_build_array(jsonb_build_object('org_id', v_org_id, 'error', v_error))
             where id = p_run_id;
        end;
        commit;
    end loop;
    update billing_period_runs set finished_at = clock_timestamp() where id = p_run_id;
    commit;
end;
$$;

comment on procedure run_billing_periods(timestamptz, bigint) is
    'run_billing_periods(p_now, p_run_id): a procedure (CALL it outside a transaction block); sets p_run_id to '
    'the run''s id. Releases the credit holds expired by p_now and refreshes plans'' copy of the versions in '
    'force, then does all due period work for every organization that is not closed, up to p_now (default now), '
    'one organization per transaction (committed one by one, in id order), and records the run in '
    'billing_period_runs (started, finished, organizations processed, periods closed, lots expired). An '
    'organization whose work fails is rolled back alone and named in the run''s errors. Two overlapping runs '
    'queue on each organization''s locks: the second finds the work done. Raises CB009 (p_now in the future: next '
    'period''s boundary is not due today), nothing for one organization''s failure.';


-- billing_past_periods(p_org_id, p_actor_id): the periods the job opened for
-- the organization before its current one (the newest row is the current
-- period: billing_current_period), newest first. p_actor_id: an admin of the
-- organization, a system admin or the operator. Locks nothing. Raises
-- CB002, CB008.
create or replace function billing_past_periods(p_org_id text, p_actor_id text)
returns table (
    period_start timestamptz, period_end timestamptz, is_baseline boolean, refresh_credits numeric,
    included_credits numeric, allocations_closed integer, allocations_opened integer, credits_requested numeric,
    credits_allocated numeric, recorded_at timestamptz
)
language sql
stable
as $$
    select ledger_require_org(p_org_id);
    select ledger_authorize(p_actor_id, p_org_id, 'admin');
    select b.period_start, b.period_end, b.is_baseline, b.refresh_credits, b.included_credits,
           b.allocations_closed, b.allocations_opened, b.credits_requested, b.credits_allocated, b.recorded_at
      from billing_periods b
     where b.org_id = p_org_id
       and b.period_start < (select max(c.period_start) from billing_periods c where c.org_id = p_org_id)
     order by b.period_start desc;
$$;

comment on function billing_past_periods(text, text) is
    'billing_past_periods(p_org_id, p_actor_id): the periods the job opened for the organization before its '
    'current one (the newest row is the current period: billing_current_period), newest first. p_actor_id: an '
    'admin of the organization, a system admin or the operator. Locks nothing. Raises CB002, CB008.';


-- billing_settings_of(p_org_id, p_actor_id): one row: the organization's
-- calendar (anchor day, time zone), allocation policy ('reset' without a
-- pool), rollover cap, low-balance threshold and monthly refresh amount (0
-- without a pool). p_actor_id: a member of the organization, a system admin
-- or the operator. Locks nothing. Raises CB002, CB008.
create or replace function billing_settings_of(p_org_id text, p_actor_id text)
returns table (
    anchor_day integer, timezone text, allocation_policy text, rollover_cap numeric, low_balance_threshold numeric,
    monthly_refresh_amount numeric
)
language sql
stable
as $$
    select ledger_require_org(p_org_id);
    select ledger_authorize(p_actor_id, p_org_id, 'member');
    select o.billing_anchor_day::integer, o.billing_timezone, coalesce(p.allocation_policy, 'reset'), p.rollover_cap,
           p.low_balance_threshold, coalesce(p.monthly_refresh_amount, 0)
      from organizations o
      left join credit_pools p on p.org_id = o.id
     where o.id = p_org_id;
$$;

comment on function billing_settings_of(text, text) is
    'billing_settings_of(p_org_id, p_actor_id): one row: the organization''s calendar (anchor day, time zone), '
    'allocation policy (''reset'' without a pool), rollover cap, low-balance threshold and monthly refresh amount '
    '(0 without a pool). p_actor_id: a member of the organization, a system admin or the operator. Locks nothing. '
    'Raises CB002, CB008.';


-- billing_period_last_run(p_actor_id, p_org_id): the latest run of the period
-- job (finished or not) and what it did; no row if it never ran. For every
-- organization (p_org_id null: system admins and the operator), or as one
-- organization's admins see it (p_org_id: its errors only, none of another
-- organization's). Authorized by ledger_authorize_scope. Locks nothing.
-- Raises CB002, CB008.
create or replace function billing_period_last_run(p_actor_id text, p_org_id text)
returns table (
    id bigint, run_as_of timestamptz, started_at timestamptz, finished_at timestamptz, orgs_processed integer,
    periods_closed integer, lots_expired integer, holds_released integer, orgs_failed integer, errors jsonb
)
language sql
stable
as $$
    select ledger_authorize_scope(p_actor_id, p_org_id);
    select r.id, r.run_as_of, r.started_at, r.finished_at, r.orgs_processed, r.periods_closed, r.lots_expired,
           r.holds_released, r.orgs_failed,
           case when p_org_id is null then r.errors
                else coalesce((select jsonb_agg(e) from jsonb_array_elements(r.errors) e
                                where e ->> 'org_id' = p_org_id), '[]') end
      from billing_period_runs r
     order by r.id desc
     limit 1;
$$;

comment on function billing_period_last_run(text, text) is
    'billing_period_last_run(p_actor_id, p_org_id): the latest run of the period job (finished or not) and what '
    'it did; no row if it never ran. For every organization (p_org_id null: system admins and the operator), or as '
    'one organization''s admins see it (p_org_id: its errors only, none of another organization''s). Authorized by '
    'ledger_authorize_scope. Locks nothing. Raises CB002, CB008.';
