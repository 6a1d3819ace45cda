-- 0001: the credit ledger's tables.
--
-- Forward-only: once applied, this file never changes; later changes come as
-- new numbered files. Conventions:
--   * ids of organizations, users, allocations and subscriptions are text;
--     append-only ledger rows (attribution, history, events, audit) carry a
--     bigint identity as their ordering key next to the org_id.
--   * every org-scoped table is keyed by org_id first, so the schema can be
--     distributed by organization later without a rewrite.
--   * credits are numeric(20,6), money numeric(16,4); NaN is refused by a
--     CHECK ('NaN'::numeric compares greater than every number, so "> 0"
--     alone would let it through); infinity cannot be stored in a numeric
--     with a precision.

create table organizations (
    id text primary key,
    name text not null,
    status text not null default 'active',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint organizations_id_format
        check (length(id) between 1 and 128 and id !~ '[[:space:][:cntrl:]]'),
    constraint organizations_name_format
        check (length(btrim(name)) between 1 and 200 and name !~ '[[:cntrl:]]'),
    constraint organizations_status_known
        check (status in ('active', 'suspended', 'closed'))
);

create table users (
    id text primary key,
    email text not null,
    display_name text,
    is_system_admin boolean not null default false,
    password_hash text,
    created_at timestamptz not null default now(),
    constraint users_id_format
        check (length(id) between 1 and 128 and id !~ '[[:space:][:cntrl:]]'),
    constraint users_email_format
        check (length(email) <= 254 and email ~ '^[^@[:space:][:cntrl:]]+@[^@[:space:][:cntrl:]]+$'),
    constraint users_display_name_format
        check (display_name is null
               or (length(btrim(display_name)) between 1 and 200 and display_name !~ '[[:cntrl:]]'))
);

-- one account per address, whatever its case
create unique index users_email_unique on users (lower(email));

create table organization_members (
    org_id text not null references organizations (id),
    user_id text not null references users (id),
    role text not null default 'member',
    is_default boolean not null default false,
    joined_at timestamptz not null default now(),
    primary key (org_id, user_id),
    constraint organization_members_role_known check (role in ('admin', 'member'))
);

create index organization_members_by_user on organization_members (user_id);

-- The stored half of an organization's pool. The view organization_credit_pools
-- adds used_credits (summed from allocations, so no deduction ever waits on
-- this row) and available_credits.
--   total_credits: credits the pool holds = sum of org_billing_history.credits
--                  (purchases and grants in, consumption of closed allocations
--                  and expiries out)
--   allocated_credits: sum of the active allocations' allocated_credits
--   closed_used_credits: what closed allocations consumed (kept so that the
--                  pool's used figure stays exact without scanning old periods)
create table credit_pools (
    org_id text primary key references organizations (id),
    total_credits numeric(20, 6) not null default 0,
    allocated_credits numeric(20, 6) not null default 0,
    closed_used_credits numeric(20, 6) not null default 0,
    monthly_refresh_amount numeric(20, 6) not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint credit_pools_not_nan check (
        total_credits <> 'NaN' and allocated_credits <> 'NaN'
        and closed_used_credits <> 'NaN' and monthly_refresh_amount <> 'NaN'),
    constraint credit_pools_total_not_negative check (total_credits >= 0),
    constraint credit_pools_allocated_within_total
        check (allocated_credits >= 0 and allocated_credits <= total_credits),
    constraint credit_pools_closed_used_not_negative check (closed_used_credits >= 0),
    constraint credit_pools_refresh_not_negative check (monthly_refresh_amount >= 0)
);

-- A member's share of the pool for one period. At most one active allocation
-- per member; closing one returns its unused credits to the pool and keeps
-- the row (and what it used) for history.
create table user_credit_allocations (
    org_id text not null references organizations (id),
    id text not null default gen_random_uuid()::text,
    user_id text not null references users (id),
    allocated_credits numeric(20, 6) not null default 0,
    used_credits numeric(20, 6) not null default 0,
    remaining_credits numeric(20, 6) generated always as (allocated_credits - used_credits) stored,
    is_active boolean not null default true,
    period_start timestamptz not null default now(),
    period_end timestamptz,
    allocated_by text references users (id),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    closed_at timestamptz,
    primary key (org_id, id),
    constraint user_credit_allocations_not_nan
        check (allocated_credits <> 'NaN' and used_credits <> 'NaN'),
    constraint user_credit_allocations_used_within_allocated
        check (used_credits >= 0 and used_credits <= allocated_credits),
    constraint user_credit_allocations_closed_when_inactive
        check (is_active = (closed_at is null))
) with (fillfactor = 80);  -- room for HOT updates: every deduction rewrites a row

create unique index user_credit_allocations_one_active
    on user_credit_allocations (org_id, user_id) where is_active;

create index user_credit_allocations_by_user on user_credit_allocations (user_id) where is_active;

-- Every change of an allocation's allocated_credits, so that
-- allocated_credits = sum(credits) per allocation can be checked.
create table credit_allocation_events (
    org_id text not null references organizations (id),
    id bigint generated always as identity,
    allocation_id text not null,
    user_id text not null,
    kind text not null,
    credits numeric(20, 6) not null,
    actor_id text references users (id),
    created_at timestamptz not null default now(),
    primary key (org_id, id),
    foreign key (org_id, allocation_id) references user_credit_allocations (org_id, id),
    constraint credit_allocation_events_kind_known check (kind in ('allocate', 'reclaim', 'close')),
    constraint credit_allocation_events_not_nan check (credits <> 'NaN')
);

create index credit_allocation_events_by_allocation
    on credit_allocation_events (org_id, allocation_id);

-- One row per successful deduction: who, where, which service, how much, when.
-- Its only foreign key is the allocation (which names the org and the user):
-- a key to organizations would share-lock the one organization row on every
-- deduction and make it the hot spot that the pool row no longer is.
create table credit_usage_attribution (
    org_id text not null,
    id bigint generated always as identity,
    user_id text not null,
    allocation_id text not null,
    credits_used numeric(20, 6) not null,
    service_type text not null,
    service_name text not null,
    request_id text,
    metadata jsonb not null default '{}',
    remaining_after numeric(20, 6) not null,
    created_at timestamptz not null default now(),
    primary key (org_id, id),
    foreign key (org_id, allocation_id) references user_credit_allocations (org_id, id),
    constraint credit_usage_attribution_credits_positive
        check (credits_used > 0 and credits_used <> 'NaN'),
    constraint credit_usage_attribution_metadata_object check (jsonb_typeof(metadata) = 'object')
);

-- the idempotency key: a retried request id finds its first answer here
create unique index credit_usage_attribution_request
    on credit_usage_attribution (org_id, request_id) where request_id is not null;

create index credit_usage_attribution_by_time
    on credit_usage_attribution (org_id, created_at) include (user_id, credits_used);

create index credit_usage_attribution_by_allocation
    on credit_usage_attribution (org_id, allocation_id);

create index credit_usage_attribution_by_user
    on credit_usage_attribution (user_id, created_at);

-- Money and pool-total events: purchases, grants, settlements of closed
-- allocations, plan changes, invoices. credits is the signed effect on the
-- pool's total_credits (0 for events that move no credits).
create table org_billing_history (
    org_id text not null references organizations (id),
    id bigint generated always as identity,
    event_type text not null,
    credits numeric(20, 6) not null default 0,
    amount numeric(16, 4) not null default 0,
    currency text not null default 'USD',
    description text not null default '',
    metadata jsonb not null default '{}',
    total_credits_after numeric(20, 6),
    external_ref text,
    created_by text references users (id),
    created_at timestamptz not null default now(),
    primary key (org_id, id),
    constraint org_billing_history_event_type_format check (event_type ~ '^[a-z][a-z0-9_]{0,63}$'),
    constraint org_billing_history_not_nan check (credits <> 'NaN' and amount <> 'NaN'),
    constraint org_billing_history_metadata_object check (jsonb_typeof(metadata) = 'object')
);

-- a payment reference (a webhook's invoice id, say) is recorded once per org
create unique index org_billing_history_external_ref
    on org_billing_history (org_id, external_ref) where external_ref is not null;

create index org_billing_history_by_time on org_billing_history (org_id, created_at);

create table organization_subscriptions (
    org_id text not null references organizations (id),
    id text not null default gen_random_uuid()::text,
    plan text not null,
    status text not null default 'active',
    price_amount numeric(16, 4) not null default 0,
    currency text not null default 'USD',
    billing_cycle text not null default 'monthly',
    current_period_start timestamptz not null default now(),
    current_period_end timestamptz,
    trial_ends_at timestamptz,
    cancel_at_period_end boolean not null default false,
    canceled_at timestamptz,
    external_customer_id text,
    external_subscription_id text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (org_id, id),
    constraint organization_subscriptions_status_known
        check (status in ('trialing', 'active', 'past_due', 'canceled')),
    constraint organization_subscriptions_cycle_known check (billing_cycle in ('monthly', 'yearly')),
    constraint organization_subscriptions_price_valid
        check (price_amount >= 0 and price_amount <> 'NaN')
);

-- at most one live subscription per organization
create unique index organization_subscriptions_one_live
    on organization_subscriptions (org_id) where status in ('trialing', 'active', 'past_due');

-- Who did what, when: every admin action. org_id is null for actions outside
-- any organization (creating a user, say).
create table audit_log (
    id bigint generated always as identity primary key,
    org_id text,
    actor_id text,
    action text not null,
    target_type text not null default '',
    target_id text,
    details jsonb not null default '{}',
    created_at timestamptz not null default now(),
    constraint audit_log_action_format check (action ~ '^[a-z][a-z0-9_.]{0,63}$')
);

create index audit_log_by_org on audit_log (org_id, created_at);

create index audit_log_by_time on audit_log (created_at);
