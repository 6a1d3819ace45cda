-- Low-balance alerts (table credit_alerts, migration 0008).
--
-- 'allocation_90': raised by deduct_credits in the charge that takes a
-- member's allocation from under 90% used to 90% or more, with the audit
-- event 'allocation.exhausted'; at most one unresolved per allocation (a
-- unique index). It resolves itself when a top-up (allocate_credits_to_user,
-- an approved credit request) brings the member back under 90% used, and the
-- period job resolves it when the allocation closes; crossing 90% again opens
-- a new one. Its message speaks to the organization's admins; the member's
-- screen words its own from the figures.
-- 'pool_low': the pool's unspent credits (total - used) below the
-- organization's low_balance_threshold. Deductions do not evaluate it (they
-- must not read pool-wide figures); it is evaluated where that is cheap: by
-- the period job for every organization at every run, by purchases
-- (add_credits_to_pool) and when the threshold changes. At most one is
-- unresolved per organization; it resolves itself once unspent credits are
-- back at or above the threshold.


-- ledger_raise_allocation_alert(p_org_id, p_allocation_id, p_user_id,
-- p_allocated, p_used): returns nothing. Opens the allocation's 90% alert
-- and writes the 'allocation.exhausted' audit row, unless the allocation
-- already had one. Locks nothing.
create or replace function ledger_raise_allocation_alert(
    p_org_id text,
    p_allocation_id text,
    p_user_id text,
    p_allocated numeric,
    p_used numeric
)
returns void
language plpgsql
as $$
begin
    -- the message (for the admins) names the member and rounds to whole credits; threshold and observed keep
    -- the exact figures
    insert into credit_alerts (org_id, kind, user_id, allocation_id, threshold, observed, message)
    select p_org_id, 'allocation_90', p_user_id, p_allocation_id, round(p_allocated * 0.9, 6), p_used,
           format('%s has used %s of %s allocated credits (%s%%): allocate more, or answer their credit request, '
                  'before they run out.',
                  coalesce(u.display_name, u.email, p_user_id),
                  to_char(round(p_used), 'FM999,999,999,999,990'), to_char(round(p_allocated), 'FM999,999,999,999,990'),
                  trim_scale(round(100 * p_used / p_allocated, 1)))
      from (select 1) one
      left join users u on u.id = p_user_id
    on conflict (org_id, allocation_id) where kind = 'allocation_90' and status <> 'resolved' do nothing;
    if found then
        perform ledger_audit(p_org_id, null, 'allocation.exhausted', 'user', p_user_id,
                             jsonb_build_object('allocation_id', p_allocation_id, 'allocated', p_allocated,
                                                'used', p_used));
    end if;
end;
$$;

comment on function ledger_raise_allocation_alert(text, text, text, numeric, numeric) is
    'ledger_raise_allocation_alert(p_org_id, p_allocation_id, p_user_id, p_allocated, p_used): returns nothing. '
    'Opens the allocation''s 90% alert and writes the ''allocation.exhausted'' audit row, unless the allocation '
    'has an unresolved one. Locks nothing.';


-- ledger_review_allocation_alert(p_org_id, p_allocation_id, p_actor_id):
-- returns nothing. After an allocation grew: resolves its unresolved 90%
-- alert when it is now under 90% used (resolved_by the actor whose top-up
-- did it, with an 'alert.resolved' audit row saying why). The caller holds
-- the pool lock and has updated the allocation; locks the alert.
create or replace function ledger_review_allocation_alert(p_org_id text, p_allocation_id text, p_actor_id text)
returns void
language plpgsql
as $$
declare
    v_alert_id bigint;
begin
    update credit_alerts c
       set status = 'resolved', resolved_at = now(), resolved_by = p_actor_id
      from user_credit_allocations a
     where c.org_id = p_org_id and c.allocation_id = p_allocation_id and c.kind = 'allocation_90'
       and c.status <> 'resolved'
       and a.org_id = c.org_id and a.id = c.allocation_id and a.used_credits < a.allocated_credits * 0.9
    returning c.id into v_alert_id;
    if v_alert_id is not null then
        perform ledger_audit(p_org_id, p_actor_id, 'alert.resolved', 'alert', v_alert_id::text,
                             jsonb_build_object('kind', 'allocation_90', 'reason', 'back under 90% used'));
    end if;
end;
$$;

comment on function ledger_review_allocation_alert(text, text, text) is
    'ledger_review_allocation_alert(p_org_id, p_allocation_id, p_actor_id): returns nothing. After an allocation '
    'grew: resolves its unresolved 90% alert when it is now under 90% used (resolved_by the actor whose top-up did '
    'it, with an ''alert.resolved'' audit row saying why). The caller holds the pool lock and has updated the '
    'allocation; locks the alert.';


-- ledger_evaluate_pool_alert(p_org_id): returns nothing. Opens a 'pool_low'
-- alert when the pool's unspent credits are below its threshold and none is
-- unresolved; resolves the unresolved one when they are not (or the
-- threshold was cleared). Reads the pool and its active allocations; the
-- caller holds the pool lock.
create or replace function ledger_evaluate_pool_alert(p_org_id text)
returns void
language plpgsql
as $$
declare
    v_threshold numeric;
    v_unspent numeric;
begin
    select p.low_balance_threshold, p.total_credits - coalesce(sum(a.used_credits), 0)
      into v_threshold, v_unspent
      from credit_pools p
      left join user_credit_allocations a on a.org_id = p.org_id and a.is_active
     where p.org_id = p_org_id
     group by p.org_id;
    if v_threshold is not null and v_unspent < v_threshold then
        insert into credit_alerts (org_id, kind, threshold, observed, message)
        values (p_org_id, 'pool_low', v_threshold, v_unspent,
                format('The pool of %s has %s unspent credits, below its low-balance threshold of %s: add credits.',
                       p_org_id, ledger_amount_text(v_unspent), ledger_amount_text(v_threshold)))
        on conflict (org_id) where kind = 'pool_low' and status <> 'resolved' do nothing;
    else
        update credit_alerts
           set status = 'resolved', resolved_at = now(), observed = v_unspent
         where org_id = p_org_id and kind = 'pool_low' and status <> 'resolved';
    end if;
end;
$$;

comment on function ledger_evaluate_pool_alert(text) is
    'ledger_evaluate_pool_alert(p_org_id): returns nothing. Opens a ''pool_low'' alert when the pool''s unspent '
    'credits are below its threshold and none is unresolved; resolves the unresolved one when they are not (or '
    'the threshold was cleared). Reads the pool and its active allocations; the caller holds the pool lock.';


-- ledger_alert_for_update(p_org_id, p_alert_id, p_actor_id): returns the
-- alert, locked. p_actor_id must be an admin of the organization, or the
-- member the alert is about (null: trusted). Raises CB002 (unknown
-- organization or alert), CB008.
create or replace function ledger_alert_for_update(p_org_id text, p_alert_id bigint, p_actor_id text)
returns credit_alerts
language plpgsql
as $$
declare
    v_alert credit_alerts;
begin
    perform ledger_require_org(p_org_id);
    select * into v_alert from credit_alerts where org_id = p_org_id and id = p_alert_id for update;
    if not found then
        raise exception using errcode = 'CB002',
            message = format('Organization %L has no alert %s.', p_org_id, coalesce(p_alert_id::text, '(none given)'));
    end if;
    if p_actor_id is distinct from v_alert.user_id then
        perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    end if;
    return v_alert;
end;
$$;

comment on function ledger_alert_for_update(text, bigint, text) is
    'ledger_alert_for_update(p_org_id, p_alert_id, p_actor_id): returns the alert, locked. p_actor_id must be an '
    'admin of the organization, or the member the alert is about (null: trusted). Raises CB002 (unknown '
    'organization or alert), CB008.';


-- ledger_change_alert_status(p_org_id, p_alert_id, p_actor_id, p_status):
-- returns nothing. Moves an alert to 'acknowledged' (only from 'open') or
-- 'resolved' (from either), noting who and when, with an audit row; an alert
-- already there or past it is left as it is. p_actor_id: an admin of the
-- organization or the member the alert is about (null: trusted). Locks the
-- alert. Raises CB002, CB008.
create or replace function ledger_change_alert_status(
    p_org_id text,
    p_alert_id bigint,
    p_actor_id text,
    p_status text
)
returns void
language plpgsql
as $$
declare
    v_alert credit_alerts;
begin
    v_alert := ledger_alert_for_update(p_org_id, p_alert_id, p_actor_id);
    if v_alert.status = 'resolved' or v_alert.status = p_status then
        return;
    end if;
    update credit_alerts
       set status = p_status,
           acknowledged_at = case when p_status = 'acknowledged' then now() else acknowledged_at end,
           acknowledged_by = case when p_status = 'acknowledged' then p_actor_id else acknowledged_by end,
           resolved_at = case when p_status = 'resolved' then now() else resolved_at end,
           resolved_by = case when p_status = 'resolved' then p_actor_id else resolved_by end
     where org_id = p_org_id and id = p_alert_id;
    perform ledger_audit(p_org_id, p_actor_id, 'alert.' || p_status, 'alert', p_alert_id::text,
                         jsonb_build_object('kind', v_alert.kind, 'from', v_alert.status));
end;
$$;

comment on function ledger_change_alert_status(text, bigint, text, text) is
    'ledger_change_alert_status(p_org_id, p_alert_id, p_actor_id, p_status): returns nothing. Moves an alert to '
    '''acknowledged'' (only from ''open'') or ''resolved'' (from either), noting who and when, with an audit row; '
    'an alert already there or past it is left as it is. p_actor_id: an admin of the organization or the member '
    'the alert is about (null: trusted). Locks the alert. Raises CB002, CB008.';


-- acknowledge_credit_alert(p_org_id, p_alert_id, p_actor_id): returns
-- nothing. Marks an open alert as seen (it stays listed until resolved).
-- See ledger_change_alert_status for who may and what it locks. Raises CB002,
-- CB008.
create or replace function acknowledge_credit_alert(p_org_id text, p_alert_id bigint, p_actor_id text default null)
returns void
language sql
as $$
    select ledger_change_alert_status(p_org_id, p_alert_id, p_actor_id, 'acknowledged');
$$;

comment on function acknowledge_credit_alert(text, bigint, text) is
    'acknowledge_credit_alert(p_org_id, p_alert_id, p_actor_id): returns nothing. Marks an open alert as seen (it '
    'stays listed until resolved). See ledger_change_alert_status for who may and what it locks. Raises CB002, '
    'CB008.';


-- resolve_credit_alert(p_org_id, p_alert_id, p_actor_id): returns nothing.
-- Closes an alert. A pool alert resolved while the pool is still low opens
-- again at the next evaluation. See ledger_change_alert_status for who may
-- and what it locks. Raises CB002, CB008.
create or replace function resolve_credit_alert(p_org_id text, p_alert_id bigint, p_actor_id text default null)
returns void
language sql
as $$
    select ledger_change_alert_status(p_org_id, p_alert_id, p_actor_id, 'resolved');
$$;

comment on function resolve_credit_alert(text, bigint, text) is
    'resolve_credit_alert(p_org_id, p_alert_id, p_actor_id): returns nothing. Closes an alert. A pool alert '
    'resolved while the pool is still low opens again at the next evaluation. See ledger_change_alert_status for '
    'who may and what it locks. Raises CB002, CB008.';


-- credit_alerts_of(p_org_id, p_actor_id, p_include_resolved): the
-- organization's alerts, newest first; unresolved ones only unless
-- p_include_resolved. p_actor_id: an admin of the organization, a system
-- admin or the operator. Locks nothing. Raises CB002, CB008.
create or replace function credit_alerts_of(p_org_id text, p_actor_id text, p_include_resolved boolean default false)
returns table (
    id bigint, kind text, status text, user_id text, allocation_id text, threshold numeric, observed numeric,
    message text, created_at timestamptz, acknowledged_at timestamptz, acknowledged_by text,
    resolved_at timestamptz, resolved_by text
)
language sql
stable
as $$
    select ledger_require_org(p_org_id);
    select ledger_authorize(p_actor_id, p_org_id, 'admin');
    select a.id, a.kind, a.status, a.user_id, a.allocation_id, a.threshold, a.observed, a.message, a.created_at,
           a.acknowledged_at, a.acknowledged_by, a.resolved_at, a.resolved_by
      from credit_alerts a
     where a.org_id = p_org_id and (p_include_resolved or a.status <> 'resolved')
     order by a.created_at desc, a.id desc;
$$;

comment on function credit_alerts_of(text, text, boolean) is
    'credit_alerts_of(p_org_id, p_actor_id, p_include_resolved): the organization''s alerts, newest first; '
    'unresolved ones only unless p_include_resolved. p_actor_id: an admin of the organization, a system admin or '
    'the operator. Locks nothing. Raises CB002, CB008.';


-- my_credit_alerts(p_org_id, p_actor_id): the acting user's own unresolved
-- alerts in the organization, newest first. p_actor_id: a member of the
-- organization (or a system admin: their own alerts there, usually none).
-- Locks nothing. Raises CB002, CB008.
create or replace function my_credit_alerts(p_org_id text, p_actor_id text)
returns table (
    id bigint, kind text, status text, user_id text, allocation_id text, threshold numeric, observed numeric,
    message text, created_at timestamptz, acknowledged_at timestamptz, acknowledged_by text,
    resolved_at timestamptz, resolved_by text
)
language sql
stable
as $$
    select ledger_require_org(p_org_id);
    select ledger_authorize(p_actor_id, p_org_id, 'member');
    select a.id, a.kind, a.status, a.user_id, a.allocation_id, a.threshold, a.observed, a.message, a.created_at,
           a.acknowledged_at, a.acknowledged_by, a.resolved_at, a.resolved_by
      from credit_alerts a
     where a.org_id = p_org_id and a.user_id = p_actor_id and a.status <> 'resolved'
     order by a.created_at desc, a.id desc;
$$;

comment on function my_credit_alerts(text, text) is
    'my_credit_alerts(p_org_id, p_actor_id): the acting user''s own unresolved alerts in the organization, newest '
    'first. p_actor_id: a member of the organization (or a system admin: their own alerts there, usually none). '
    'Locks nothing. Raises CB002, CB008.';
