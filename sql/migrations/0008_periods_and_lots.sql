-- 0008: billing periods, credit lots with expiry, low-balance alerts.
--
-- Period settings of an organization (set by its admins through
-- sql/routines/090_periods.sql):
--   credit_pools.allocation_policy: what a member's unused credits do at a
--       period boundary: 'reset' (they return to the pool) or 'rollover'
--       (up to rollover_cap of them are carried into the next period)
--   credit_pools.rollover_cap: the most one member carries over (rollover only)
--   credit_pools.low_balance_threshold: an alert opens when the pool's unspent
--       credits (total - used) fall below it (null: no alert)
--   organization_members.standing_credits: what the member's allocation
--       reopens at each period (null: what they were allocated in the
--       closing period, see 090_periods.sql)
alter table credit_pools
    add column allocation_policy text not null default 'reset',
    add column rollover_cap numeric(20, 6),
    add column low_balance_threshold numeric(20, 6),
    -- usage rows (credit_usage_attribution.id, the order they were inserted
    -- in) up to this id are settled against the pool's lots
    add column lots_settled_id bigint not null default 0,
    -- the credits of that settled usage (= sum of credit_lots.consumed_credits)
    add column lots_settled_credits numeric(20, 6) not null default 0,
    add constraint credit_pools_allocation_policy_known check (allocation_policy in ('reset', 'rollover')),
    add constraint credit_pools_rollover_cap_valid check (
        (allocation_policy = 'reset' and rollover_cap is null)
        or (allocation_policy = 'rollover' and rollover_cap >= 0 and rollover_cap <> 'NaN')),
    add constraint credit_pools_low_balance_threshold_valid
        check (low_balance_threshold is null or (low_balance_threshold >= 0 and low_balance_threshold <> 'NaN')),
    add constraint credit_pools_lots_settled_valid
        check (lots_settled_credits >= 0 and lots_settled_credits <> 'NaN');

alter table organization_members
    add column standing_credits numeric(20, 6),
    add constraint organization_members_standing_credits_valid
        check (standing_credits is null or (standing_credits >= 0 and standing_credits <> 'NaN'));

-- A reopened allocation remembers the standing amount it was meant to get
-- (before any shortfall scaling), so that a short period does not shrink the
-- member's default standing for good.
alter table user_credit_allocations
    add column standing_credits numeric(20, 6),
    add constraint user_credit_allocations_standing_valid
        check (standing_credits is null or (standing_credits >= 0 and standing_credits <> 'NaN'));

-- New kinds of allocation events: 'reopen' (the standing amount at a period
-- start), 'rollover' (unused credits carried over), 'expiry' (unused credits
-- taken back because a lot of the pool expired).
alter table credit_allocation_events
    drop constraint credit_allocation_events_kind_known,
    add constraint credit_allocation_events_kind_known
        check (kind in ('allocate', 'reclaim', 'close', 'reopen', 'rollover', 'expiry'));

-- When credits entering a pool stop being usable (null: never). Set by
-- add_credits_to_pool's p_expires_at and by the period job's grants; the
-- credit lot of the row takes it.
alter table org_billing_history
    add column credits_expire_at timestamptz;

-- One lot per billing history row that brought credits into a pool (a
-- trigger creates it: see 092_lots.sql).
--   granted_at:       when the credits entered the pool (the row's recorded_at)
--   expires_at:       when they expire (null: never)
--   consumed_credits: usage settled against this lot
--   expired_credits:  what left the pool when the lot expired
--   expired_at:       when the period job expired it (null: not yet)
create table credit_lots (
    org_id text not null references organizations (id),
    id bigint generated always as identity,
    history_id bigint,
    source text not null,
    credits numeric(20, 6) not null,
    granted_at timestamptz not null,
    expires_at timestamptz,
    consumed_credits numeric(20, 6) not null default 0,
    expired_credits numeric(20, 6) not null default 0,
    expired_at timestamptz,
    expiry_history_id bigint,
    primary key (org_id, id),
    foreign key (org_id, history_id) references org_billing_history (org_id, id),
    constraint credit_lots_credits_positive check (credits > 0 and credits <> 'NaN'),
    constraint credit_lots_within_amount check (
        consumed_credits >= 0 and expired_credits >= 0 and consumed_credits <> 'NaN'
        and expired_credits <> 'NaN' and consumed_credits + expired_credits <= credits),
    constraint credit_lots_expired_when_processed check ((expired_at is null) = (expiry_history_id is null))
);

create unique index credit_lots_history on credit_lots (org_id, history_id) where history_id is not null;

-- the lots the period job still has to expire
create index credit_lots_due on credit_lots (expires_at) where expires_at is not null and expired_at is null;

-- Existing pools: one never-expiring lot for everything that entered them
-- (total + what closed allocations used), with all usage recorded so far
-- already settled against it (migrations run with the application stopped).
update credit_pools p
   set lots_settled_id = coalesce((select max(c.id) from credit_usage_attribution c), 0),
       lots_settled_credits = coalesce((select sum(c.credits_used) from credit_usage_attribution c
                                         where c.org_id = p.org_id), 0);

insert into credit_lots (org_id, source, credits, granted_at, consumed_credits)
select p.org_id, 'opening_balance', p.total_credits + p.closed_used_credits, p.created_at, p.lots_settled_credits
  from credit_pools p
 where p.total_credits + p.closed_used_credits > 0;

-- The billing periods the period job opened, one row per (organization,
-- period start). The first row of an organization (is_baseline) is the
-- period it was in when the job first saw it: nothing is granted for it.
create table billing_periods (
    org_id text not null references organizations (id),
    period_start timestamptz not null,
    period_end timestamptz not null,
    is_baseline boolean not null default false,
    run_id bigint,
    refresh_credits numeric(20, 6) not null default 0,
    included_credits numeric(20, 6) not null default 0,
    allocations_closed integer not null default 0,
    allocations_opened integer not null default 0,
    credits_requested numeric(20, 6) not null default 0,
    credits_allocated numeric(20, 6) not null default 0,
    recorded_at timestamptz not null default now(),
    primary key (org_id, period_start),
    constraint billing_periods_ordered check (period_end > period_start)
);

-- One row per run of the period job (run_billing_periods).
create table billing_period_runs (
    id bigint generated always as identity primary key,
    run_as_of timestamptz not null,
    started_at timestamptz not null default clock_timestamp(),
    finished_at timestamptz,
    orgs_processed integer not null default 0,
    periods_closed integer not null default 0,
    lots_expired integer not null default 0,
    holds_released integer not null default 0,
    orgs_failed integer not null default 0,
    errors jsonb not null default '[]'
);

-- Low-balance alerts.
--   kind 'allocation_90': a member's allocation crossed 90% used (once per
--                          allocation; user_id and allocation_id name it)
--   kind 'pool_low':       the pool's unspent credits fell below the
--                          organization's threshold (at most one unresolved)
-- status: open -> acknowledged -> resolved (or open -> resolved).
create table credit_alerts (
    org_id text not null references organizations (id),
    id bigint generated always as identity,
    kind text not null,
    user_id text,
    allocation_id text,
    status text not null default 'open',
    threshold numeric(20, 6),
    observed numeric(20, 6),
    message text not null,
    created_at timestamptz not null default now(),
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at timestamptz,
    resolved_by text,
    primary key (org_id, id),
    constraint credit_alerts_kind_known check (kind in ('allocation_90', 'pool_low')),
    constraint credit_alerts_status_known check (status in ('open', 'acknowledged', 'resolved')),
    constraint credit_alerts_subject check ((kind = 'allocation_90') = (allocation_id is not null))
);

create unique index credit_alerts_once_per_allocation
    on credit_alerts (org_id, allocation_id) where kind = 'allocation_90';

create unique index credit_alerts_one_pool_alert
    on credit_alerts (org_id) where kind = 'pool_low' and status <> 'resolved';

create index credit_alerts_by_user on credit_alerts (user_id, org_id) where status <> 'resolved';
