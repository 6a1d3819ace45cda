-- 0009: the pricing engine's tables, credit holds (two-phase charging) and
-- personal organizations (individual balances).
--
-- Price tables are effective-dated: a change is a new row effective from a
-- moment, and the row in force at a moment is the latest one whose
-- effective_from is at or before it. Rows are never updated or deleted, so
-- any past charge can be re-priced exactly as it was.
-- Unit prices (rates) are USD with up to 8 decimals (a provider's price per
-- 1,000 tokens can be $0.000075); credits keep 6 decimals, money 4.


-- What a provider charges for one model: USD per 1,000 input tokens, per
-- 1,000 output tokens, per image, per request. is_available false withdraws
-- the model from effective_from on.
create table model_prices (
    id bigint generated always as identity primary key,
    provider text not null,
    model text not null,
    effective_from timestamptz not null,
    usd_per_1k_input numeric(16, 8) not null default 0,
    usd_per_1k_output numeric(16, 8) not null default 0,
    usd_per_image numeric(16, 8) not null default 0,
    usd_per_request numeric(16, 8) not null default 0,
    is_available boolean not null default true,
    note text not null default '',
    created_by text references users (id),
    created_at timestamptz not null default now(),
    constraint model_prices_one_per_moment unique (model, effective_from),
    constraint model_prices_provider_format check (provider ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    constraint model_prices_model_format
        check (length(model) between 1 and 200 and model !~ '[[:space:][:cntrl:]]'),
    constraint model_prices_rates_valid check (
        usd_per_1k_input >= 0 and usd_per_1k_output >= 0 and usd_per_image >= 0 and usd_per_request >= 0
        and usd_per_1k_input <> 'NaN' and usd_per_1k_output <> 'NaN'
        and usd_per_image <> 'NaN' and usd_per_request <> 'NaN')
);

-- Services sold at a fixed number of credits per call, whatever model runs
-- behind them. is_available false withdraws the service from effective_from on.
create table service_prices (
    id bigint generated always as identity primary key,
    service_type text not null,
    effective_from timestamptz not null,
    credits numeric(20, 6) not null,
    is_available boolean not null default true,
    note text not null default '',
    created_by text references users (id),
    created_at timestamptz not null default now(),
    constraint service_prices_one_per_moment unique (service_type, effective_from),
    constraint service_prices_type_format check (service_type ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    constraint service_prices_credits_valid check (credits >= 0 and credits <> 'NaN')
);

-- The platform's rules: markup on provider cost for calls on managed keys,
-- the platform fee per BYOK call (in credits), and how long a credit hold
-- lives when its caller names no time.
create table platform_pricing_rules (
    id bigint generated always as identity primary key,
    effective_from timestamptz not null unique,
    markup numeric(10, 4) not null,
    byok_fee_credits numeric(20, 6) not null,
    hold_ttl_seconds integer not null,
    note text not null default '',
    created_by text references users (id),
    created_at timestamptz not null default now(),
    constraint platform_pricing_rules_markup_valid check (markup > 0 and markup <= 100 and markup <> 'NaN'),
    constraint platform_pricing_rules_fee_valid check (byok_fee_credits >= 0 and byok_fee_credits <> 'NaN'),
    constraint platform_pricing_rules_ttl_valid check (hold_ttl_seconds between 1 and 604800)
);

-- One organization's exceptions to the platform rules; a null field follows
-- the platform rule in force.
create table org_pricing_overrides (
    org_id text not null references organizations (id),
    id bigint generated always as identity,
    effective_from timestamptz not null,
    markup numeric(10, 4),
    byok_fee_credits numeric(20, 6),
    note text not null default '',
    created_by text references users (id),
    created_at timestamptz not null default now(),
    primary key (org_id, id),
    constraint org_pricing_overrides_one_per_moment unique (org_id, effective_from),
    constraint org_pricing_overrides_markup_valid
        check (markup is null or (markup > 0 and markup <= 100 and markup <> 'NaN')),
    constraint org_pricing_overrides_fee_valid
        check (byok_fee_credits is null or (byok_fee_credits >= 0 and byok_fee_credits <> 'NaN'))
);

-- Credit packages on sale: `credits` plus `bonus_credits` for `price` dollars.
-- Edited in place (each edit leaves an audit row with the figures before and
-- after); a purchase's billing history row keeps what was bought and paid.
create table credit_packages (
    code text primary key,
    name text not null,
    credits numeric(20, 6) not null,
    bonus_credits numeric(20, 6) not null default 0,
    price numeric(16, 4) not null,
    is_active boolean not null default true,
    sort_order integer not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint credit_packages_code_format check (code ~ '^[a-z][a-z0-9_]{0,31}$'),
    constraint credit_packages_name_format check (length(btrim(name)) between 1 and 100 and name !~ '[[:cntrl:]]'),
    constraint credit_packages_credits_valid check (credits > 0 and credits <> 'NaN'),
    constraint credit_packages_bonus_valid check (bonus_credits >= 0 and bonus_credits <> 'NaN'),
    constraint credit_packages_price_valid check (price >= 0 and price <> 'NaN')
);

-- A member's credits held for a call in progress (reserve), then charged
-- (settle: one attribution row with the same request id) or freed (release,
-- expiry, or the allocation closing). The allocation's held_credits is the
-- sum of its open holds.
--   status: open | settled | released | expired
--   settled_credits: what settle charged (0 allowed: nothing was used)
--   remaining_at_reserve, remaining_at_close: the member's spendable credits
--                    after the hold was placed, and after it closed: what a
--                    retry of reserve, settle or release answers
create table credit_holds (
    org_id text not null references organizations (id),
    id bigint generated always as identity,
    request_id text not null,
    user_id text not null,
    allocation_id text not null,
    credits numeric(20, 6) not null,
    service_type text not null,
    service_name text not null,
    status text not null default 'open',
    settled_credits numeric(20, 6),
    remaining_at_reserve numeric(20, 6) not null,
    remaining_at_close numeric(20, 6),
    expires_at timestamptz not null,
    created_at timestamptz not null default now(),
    closed_at timestamptz,
    close_reason text,
    primary key (org_id, id),
    foreign key (org_id, allocation_id) references user_credit_allocations (org_id, id),
    constraint credit_holds_request_once unique (org_id, request_id),
    constraint credit_holds_credits_positive check (credits > 0 and credits <> 'NaN'),
    constraint credit_holds_status_known check (status in ('open', 'settled', 'released', 'expired')),
    constraint credit_holds_closed_when_not_open check ((status = 'open') = (closed_at is null)),
    constraint credit_holds_settled_figure
        check ((status = 'settled') = (settled_credits is not null)
               and (settled_credits is null or settled_credits >= 0))
);

create index credit_holds_open_by_expiry on credit_holds (expires_at) where status = 'open';

create index credit_holds_open_by_allocation on credit_holds (org_id, allocation_id) where status = 'open';

-- Held credits sit on the member's allocation, so a charge still locks one
-- row: spendable = allocated - used - held.
alter table user_credit_allocations
    add column held_credits numeric(20, 6) not null default 0,
    add constraint user_credit_allocations_held_within_allocated
        check (held_credits >= 0 and held_credits <> 'NaN' and used_credits + held_credits <= allocated_credits);

-- A personal organization holds one user's individual balance: the user is
-- its only member and admin; it is created on the first top-up.
alter table organizations
    add column kind text not null default 'organization',
    add column personal_user_id text references users (id),
    add constraint organizations_kind_known check (kind in ('organization', 'personal')),
    add constraint organizations_personal_has_owner check ((kind = 'personal') = (personal_user_id is not null));

create unique index organizations_one_personal_per_user
    on organizations (personal_user_id) where personal_user_id is not null;


-- Seed data: list prices published by the providers (USD per 1,000 tokens,
-- standard tier, mid-2025), effective from 2024-01-01 so that late-reported
-- usage can be priced. System admins change them with set_model_price.
insert into model_prices (provider, model, effective_from, usd_per_1k_input, usd_per_1k_output, usd_per_image,
                          note) values
    ('openai', 'gpt-4o', '2024-01-01 00:00:00+00', 0.0025, 0.01, 0, 'seed data'),
    ('openai', 'gpt-4o-mini', '2024-01-01 00:00:00+00', 0.00015, 0.0006, 0, 'seed data'),
    ('openai', 'gpt-4.1', '2024-01-01 00:00:00+00', 0.002, 0.008, 0, 'seed data'),
    ('openai', 'gpt-4.1-mini', '2024-01-01 00:00:00+00', 0.0004, 0.0016, 0, 'seed data'),
    ('openai', 'dall-e-3', '2024-01-01 00:00:00+00', 0, 0, 0.04, 'seed data: 1024x1024 standard'),
    ('anthropic', 'claude-opus-4', '2024-01-01 00:00:00+00', 0.015, 0.075, 0, 'seed data'),
    ('anthropic', 'claude-sonnet-4', '2024-01-01 00:00:00+00', 0.003, 0.015, 0, 'seed data'),
    ('anthropic', 'claude-3-5-haiku', '2024-01-01 00:00:00+00', 0.0008, 0.004, 0, 'seed data'),
    ('google', 'gemini-2.5-pro', '2024-01-01 00:00:00+00', 0.00125, 0.01, 0, 'seed data: prompts up to 200k tokens'),
    ('google', 'gemini-2.5-flash', '2024-01-01 00:00:00+00', 0.0003, 0.0025, 0, 'seed data'),
    ('google', 'gemini-2.0-flash', '2024-01-01 00:00:00+00', 0.0001, 0.0004, 0, 'seed data');

-- Seed data: the documented fixed-price services.
insert into service_prices (service_type, effective_from, credits, note) values
    ('company_enrichment', '2024-01-01 00:00:00+00', 50, 'seed data'),
    ('contact_lookup', '2024-01-01 00:00:00+00', 10, 'seed data'),
    ('intelligence_cache_lookup', '2024-01-01 00:00:00+00', 2, 'seed data');

-- Seed data: markup 1.5 on managed keys, 1 credit ($0.001) per BYOK call,
-- holds live 15 minutes.
insert into platform_pricing_rules (effective_from, markup, byok_fee_credits, hold_ttl_seconds, note) values
    ('2024-01-01 00:00:00+00', 1.5, 1, 900, 'seed data');

-- Seed data: credit packages (1 credit = $0.001).
insert into credit_packages (code, name, credits, bonus_credits, price, sort_order) values
    ('starter_10k', 'Starter 10K', 10000, 0, 10, 10),
    ('growth_50k', 'Growth 50K', 50000, 2500, 50, 20),
    ('scale_200k', 'Scale 200K', 200000, 20000, 200, 30),
    ('enterprise_1m', 'Enterprise 1M', 1000000, 150000, 1000, 40);
