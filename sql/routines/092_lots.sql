-- Credit lots: every credit entering a pool is a lot, which may expire.
--
-- A lot is created for each org_billing_history row with credits > 0 (a
-- trigger, so purchases, grants and whatever later writes such a row all get
-- one). Charges consume the earliest-expiring credits first, never-expiring
-- last. A deduction must not touch pool-wide rows, so consumption is settled
-- afterwards by the period job (ledger_settle_lots): usage rows, in the order
-- they were inserted, against the lots that were in the pool when the charge
-- happened (granted at or before the row's recorded_at), earliest expiry
-- first (then earliest granted, then lot id). A lot stays consumable until
-- the job expires it; its unconsumed remainder then leaves the pool
-- ('credit_expiry' history row), taken from the pool's unallocated credits
-- first and, for the rest, from members' unused allocations
-- (ledger_take_back_unused).
--
-- Lock order: the pool row (callers hold it), then allocation rows in user id
-- order, then lot rows.


-- ledger_history_lot(): trigger function, AFTER INSERT on org_billing_history
-- for rows with credits > 0: inserts the row's credit lot (granted when the
-- row was recorded, expiring at its credits_expire_at). Locks nothing else.
create or replace function ledger_history_lot()
returns trigger
language plpgsql
as $$
begin
    insert into credit_lots (org_id, history_id, source, credits, granted_at, expires_at)
    values (new.org_id, new.id, left(coalesce(new.metadata ->> 'source', new.event_type), 64), new.credits,
            new.recorded_at, new.credits_expire_at);
    return null;
end;
$$;

comment on function ledger_history_lot() is
    'ledger_history_lot(): trigger function, AFTER INSERT on org_billing_history for rows with credits > 0: '
    'inserts the row''s credit lot (granted when the row was recorded, expiring at its credits_expire_at). Locks '
    'nothing else.';


create or replace trigger org_billing_history_lot
    after insert on org_billing_history
    for each row
    when (new.credits > 0)
    execute function ledger_history_lot();


-- ledger_settlement_bound(): returns the highest credit_usage_attribution id
-- up to which every row is either committed (visible to the caller's next
-- statement) or will never exist; null when that cannot be told within about
-- a second (another writing transaction stays open: the next run settles).
-- It reads the id sequence, then waits until no other writing client
-- transaction that started before that read is still open (transactions of
-- the period job itself, which never insert usage, are ignored). Locks nothing.
create or replace function ledger_settlement_bound()
returns bigint
language plpgsql
volatile
as $$
declare
    v_last bigint;
    v_called boolean;
    v_read_at timestamptz;
begin
    for v_try in 1..20 loop
        select last_value, is_called into v_last, v_called from credit_usage_attribution_id_seq;
        v_read_at := clock_timestamp();
        perform pg_stat_clear_snapshot();
        if not exists (
            select 1
              from pg_stat_activity a
             where a.datname = current_database()
               and a.pid <> pg_backend_pid()
               and a.backend_type = 'client backend'
               and a.backend_xid is not null
               and a.xact_start <= v_read_at
               and not exists (select 1 from pg_locks l
                                where l.pid = a.pid and l.locktype = 'advisory'
                                  and l.classid = 0 and l.objid = 724031802 and l.granted)) then
            return case when v_called then v_last else 0 end;
        end if;
        perform pg_sleep(0.05);
    end loop;
    return null;
end;
$$;

comment on function ledger_settlement_bound() is
    'ledger_settlement_bound(): returns the highest credit_usage_attribution id up to which every row is either '
    'committed (visible to the caller''s next statement) or will never exist; null when that cannot be told '
    'within about a second (another writing transaction stays open: the next run settles). It reads the id '
    'sequence, then waits until no other writing client transaction that started before that read is still open '
    '(transactions of the period job itself, which never insert usage, are ignored). Locks nothing.';


-- ledger_consume_lots(p_org_id, p_live_from, p_credits): returns nothing.
-- Takes p_credits of usage out of the pool's lots with credits left: first
-- the lots granted at or before p_live_from (null: none), earliest expiry
-- first (never-expiring last), then earliest granted, then lot id; then, only
-- for a charge that raced with a grant, the later lots in the same order.
-- The caller holds the pool lock. Raises XX000 when the lots cannot cover the
-- usage (the ledger is broken: billing verify says where).
create or replace function ledger_consume_lots(p_org_id text, p_live_from timestamptz, p_credits numeric)
returns void
language plpgsql
as $$
declare
    v_lot credit_lots;
    v_left numeric := p_credits;
    v_take numeric;
begin
    for v_lot in
        select *
          from credit_lots
         where org_id = p_org_id and consumed_credits + expired_credits < credits
         order by coalesce(granted_at <= p_live_from, false) desc, expires_at nulls last, granted_at, id
           for update
    loop
        v_take := least(v_left, v_lot.credits - v_lot.consumed_credits - v_lot.expired_credits);
        update credit_lots
           set consumed_credits = consumed_credits + v_take
         where org_id = p_org_id and id = v_lot.id;
        v_left := v_left - v_take;
        exit when v_left = 0;
    end loop;
    if v_left > 0 then
        raise exception using errcode = 'XX000',
            message = format('Organization %L: its credit lots cannot cover %s credits of usage; '
                             'run billing verify.', p_org_id, ledger_amount_text(v_left));
    end if;
end;
$$;

comment on function ledger_consume_lots(text, timestamptz, numeric) is
    'ledger_consume_lots(p_org_id, p_live_from, p_credits): returns nothing. Takes p_credits of usage out of the '
    'pool''s lots with credits left: first the lots granted at or before p_live_from (null: none), earliest '
    'expiry first (never-expiring last), then earliest granted, then lot id; then, only for a charge that raced '
    'with a grant, the later lots in the same order. The caller holds the pool lock. Raises XX000 when the lots '
    'cannot cover the usage (the ledger is broken: billing verify says where).';


-- ledger_settle_lots(p_org_id): returns the credits of usage settled.
-- Settles the usage rows inserted since the pool's watermark
-- (lots_settled_id) up to ledger_settlement_bound() against the lots, grouped
-- by the latest lot grant at or before each row's recorded_at, and moves the
-- watermark. The caller holds the pool lock. Raises XX000 (see
-- ledger_consume_lots).
create or replace function ledger_settle_lots(p_org_id text)
returns numeric
language plpgsql
as $$
declare
    v_from bigint;
    v_to bigint;
    v_total numeric := 0;
    v_segment record;
begin
    select lots_settled_id into v_from from credit_pools where org_id = p_org_id;
    v_to := ledger_settlement_bound();
    if v_to is null or v_to <= v_from then
        return 0;
    end if;
    for v_segment in
        with marks as (
            select distinct l.granted_at
              from credit_lots l
             where l.org_id = p_org_id and l.consumed_credits + l.expired_credits < l.credits
        )
        select (select max(m.granted_at) from marks m where m.granted_at <= c.recorded_at) as live_from,
               sum(c.credits_used) as credits
          from credit_usage_attribution c
         where c.org_id = p_org_id and c.id > v_from and c.id <= v_to
         group by 1
         order by 1 nulls first
    loop
        perform ledger_consume_lots(p_org_id, v_segment.live_from, v_segment.credits);
        v_total := v_total + v_segment.credits;
    end loop;
    update credit_pools
       set lots_settled_id = v_to, lots_settled_credits = lots_settled_credits + v_total
     where org_id = p_org_id;
    return v_total;
end;
$$;

comment on function ledger_settle_lots(text) is
    'ledger_settle_lots(p_org_id): returns the credits of usage settled. Settles the usage rows inserted since '
    'the pool''s watermark (lots_settled_id) up to ledger_settlement_bound() against the lots, grouped by the '
    'latest lot grant at or before each row''s recorded_at, and moves the watermark. The caller holds the pool '
    'lock. Raises XX000 (see ledger_consume_lots).';


-- ledger_take_back_unused(p_org_id, p_credits, p_lot_id): returns the credits
-- taken back (p_credits, or every unused credit when members hold fewer).
-- Takes unused credits back from the members' active allocations because lot
-- p_lot_id expired or its included credits were not earned (a plan change or
-- cancel, 071_subscription_commands.sql): each gives in proportion to their unused
-- credits (allocated - used - held by calls in flight; rounded
-- down to 6 decimals); what rounding leaves is taken from the largest unused
-- first (ties: user id). Writes one 'expiry' allocation event per member.
-- The caller holds the pool lock; locks the active allocations in user id
-- order. Raises nothing.
create or replace function ledger_take_back_unused(p_org_id text, p_credits numeric, p_lot_id bigint)
returns numeric
language plpgsql
as $$
declare
    v_unused numeric;
    v_wanted numeric;
    v_share record;
    v_taken numeric := 0;
begin
    perform 1
       from user_credit_allocations
      where org_id = p_org_id and is_active
      order by user_id collate "C"
        for update;
    -- credits held by calls in flight are not unused: they stay with the member
    select coalesce(sum(remaining_credits - held_credits), 0) into v_unused
      from user_credit_allocations
     where org_id = p_org_id and is_active and remaining_credits - held_credits > 0;
    if v_unused = 0 then
        return 0;
    end if;
    v_wanted := least(p_credits, v_unused);
    for v_share in
        with shares as (
            select a.id, a.user_id, a.remaining_credits - a.held_credits as unused,
                   trunc(v_wanted * (a.remaining_credits - a.held_credits) / v_unused, 6) as share
              from user_credit_allocations a
             where a.org_id = p_org_id and a.is_active and a.remaining_credits - a.held_credits > 0
        ), rest as (
            select v_wanted - sum(share) as credits from shares
        ), ordered as (
            select s.*, coalesce(sum(s.unused - s.share) over (
                       order by s.unused desc, s.user_id collate "C"
                       rows between unbounded preceding and 1 preceding), 0) as slack_before
              from shares s
        )
        select o.id, o.user_id,
               o.share + least(greatest(r.credits - o.slack_before, 0), o.unused - o.share) as credits
          from ordered o cross join rest r
         order by o.user_id collate "C"
    loop
        continue when v_share.credits <= 0;
        update user_credit_allocations
           set allocated_credits = allocated_credits - v_share.credits, updated_at = now()
         where org_id = p_org_id and id = v_share.id;
        insert into credit_allocation_events (org_id, allocation_id, user_id, kind, credits)
        values (p_org_id, v_share.id, v_share.user_id, 'expiry', -v_share.credits);
        perform ledger_audit(p_org_id, null, 'credits.expired_from_allocation', 'user', v_share.user_id,
                             jsonb_build_object('credits', v_share.credits, 'allocation_id', v_share.id,
                                                'lot_id', p_lot_id));
        v_taken := v_taken + v_share.credits;
    end loop;
    update credit_pools
       set allocated_credits = allocated_credits - v_taken, updated_at = now()
     where org_id = p_org_id;
    return v_taken;
end;
$$;

comment on function ledger_take_back_unused(text, numeric, bigint) is
    'ledger_take_back_unused(p_org_id, p_credits, p_lot_id): returns the credits taken back (p_credits, or every '
    'unused credit when members hold fewer). Takes unused credits back from the members'' active allocations '
    'because lot p_lot_id expired or its included credits were not earned (a plan change or cancel, '
    '071_subscription_commands.sql): each gives in proportion to their unused credits (allocated - used - held by '
    'calls in flight; rounded down to 6 decimals); what rounding leaves is taken from the largest unused first '
    '(ties: user id). Writes one ''expiry'' allocation event per member. The caller holds the pool lock; locks '
    'the active allocations in user id order. Raises nothing.';


-- ledger_expire_lot(p_org_id, p_lot_id): returns the credits that left the pool.
-- Expires one lot: its unconsumed remainder leaves the pool's total with a
-- 'credit_expiry' billing history row (negative credits, dated at the lot's
-- expires_at, metadata: lot_id, source, taken_from_members). Unallocated
-- credits cover it first, members' unused allocations the rest. Should
-- members have spent more than that since the last settlement, what cannot be
-- taken stays in the lot and is consumed by that usage at the next
-- settlement. The caller holds the pool lock and has settled the lots.
-- Locks allocations (only when members must give back), then the lot.
-- Raises nothing.
create or replace function ledger_expire_lot(p_org_id text, p_lot_id bigint)
returns numeric
language plpgsql
as $$
declare
    v_lot credit_lots;
    v_pool credit_pools;
    v_remainder numeric;
    v_from_members numeric := 0;
    v_total numeric;
    v_history_id bigint;
begin
    select * into v_pool from credit_pools where org_id = p_org_id;
    select * into v_lot from credit_lots where org_id = p_org_id and id = p_lot_id;
    v_remainder := v_lot.credits - v_lot.consumed_credits - v_lot.expired_credits;
    if v_remainder > v_pool.total_credits - v_pool.allocated_credits then
        v_from_members := ledger_take_back_unused(
            p_org_id, v_remainder - (v_pool.total_credits - v_pool.allocated_credits), p_lot_id);
        v_remainder := v_pool.total_credits - v_pool.allocated_credits + v_from_members;
    end if;
    perform 1 from credit_lots where org_id = p_org_id and id = p_lot_id for update;
    update credit_pools
       set total_credits = total_credits - v_remainder, updated_at = now()
     where org_id = p_org_id
    returning total_credits into v_total;
    insert into org_billing_history
        (org_id, event_type, credits, description, metadata, total_credits_after, created_at)
    values (p_org_id, 'credit_expiry', -v_remainder,
            format('%s unused credits of a %s lot of %s expired', ledger_amount_text(v_remainder),
                   replace(v_lot.source, '_', ' '), ledger_amount_text(v_lot.credits)),
            jsonb_build_object('lot_id', v_lot.id, 'source', v_lot.source,
                               'expires_at', v_lot.expires_at, 'taken_from_members', v_from_members),
            v_total, v_lot.expires_at)
    returning id into v_history_id;
    update credit_lots
       set expired_credits = expired_credits + v_remainder, expired_at = now(), expiry_history_id = v_history_id
     where org_id = p_org_id and id = p_lot_id;
    perform ledger_audit(p_org_id, null, 'credits.expired', 'organization', p_org_id,
                         jsonb_build_object('lot_id', v_lot.id, 'credits', v_remainder,
                                            'taken_from_members', v_from_members));
    return v_remainder;
end;
$$;

comment on function ledger_expire_lot(text, bigint) is
    'ledger_expire_lot(p_org_id, p_lot_id): returns the credits that left the pool. Expires one lot: its '
    'unconsumed remainder leaves the pool''s total with a ''credit_expiry'' billing history row (negative '
    'credits, dated at the lot''s expires_at, metadata: lot_id, source, taken_from_members). Unallocated credits '
    'cover it first, members'' unused allocations the rest. Should members have spent more than that since the '
    'last settlement, what cannot be taken stays in the lot and is consumed by that usage at the next settlement. '
    'The caller holds the pool lock and has settled the lots. Locks allocations (only when members must give '
    'back), then the lot. Raises nothing.';


-- ledger_expire_due_lots(p_org_id, p_at): returns how many lots expired.
-- Expires, earliest first, every lot of the pool that expires at or before
-- p_at and is not expired yet. The caller holds the pool lock and has settled
-- the lots. Raises nothing.
create or replace function ledger_expire_due_lots(p_org_id text, p_at timestamptz)
returns integer
language plpgsql
as $$
declare
    v_lot_id bigint;
    v_count integer := 0;
begin
    for v_lot_id in
        select id from credit_lots
         where org_id = p_org_id and expired_at is null and expires_at <= p_at
         order by expires_at, granted_at, id
    loop
        perform ledger_expire_lot(p_org_id, v_lot_id);
        v_count := v_count + 1;
    end loop;
    return v_count;
end;
$$;

comment on function ledger_expire_due_lots(text, timestamptz) is
    'ledger_expire_due_lots(p_org_id, p_at): returns how many lots expired. Expires, earliest first, every lot of '
    'the pool that expires at or before p_at and is not expired yet. The caller holds the pool lock and has '
    'settled the lots. Raises nothing.';


-- credit_lots_of(p_org_id, p_actor_id): the organization's credit lots,
-- earliest expiring first; granted_at is the purchase's or grant's own date
-- (its billing history row's), recorded_at when its credits entered the pool
-- (what settlement goes by); remaining_credits is neither consumed nor
-- expired. p_actor_id: an admin of the organization, a system admin or the
-- operator. Locks nothing. Raises CB002, CB008.
create or replace function credit_lots_of(p_org_id text, p_actor_id text)
returns table (id bigint, source text, credits numeric, granted_at timestamptz, recorded_at timestamptz,
               expires_at timestamptz, consumed_credits numeric, expired_credits numeric,
               remaining_credits numeric, expired_at timestamptz)
language plpgsql
stable
as $$
#variable_conflict use_column
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    return query
        select l.id, l.source, l.credits, coalesce(h.created_at, l.granted_at), l.granted_at, l.expires_at,
               l.consumed_credits, l.expired_credits, l.credits - l.consumed_credits - l.expired_credits,
               l.expired_at
          from credit_lots l
          left join org_billing_history h on h.org_id = l.org_id and h.id = l.history_id
         where l.org_id = p_org_id
         order by l.expires_at nulls last, l.granted_at, l.id;
end;
$$;

comment on function credit_lots_of(text, text) is
    'credit_lots_of(p_org_id, p_actor_id): the organization''s credit lots, earliest expiring first; granted_at is '
    'the purchase''s or grant''s own date (its billing history row''s), recorded_at when its credits entered the '
    'pool (what settlement goes by); remaining_credits is neither consumed nor expired. p_actor_id: an admin of '
    'the organization, a system admin or the operator. Locks nothing. Raises CB002, CB008.';
