-- 0005: the plans organizations subscribe to, what subscriptions still lack,
-- and the time a row was recorded next to the time its event happened.
--
-- Plans: the documented tiers, one row each (a fuller catalogue with
-- versions comes later). monthly_price is in dollars; a yearly subscription
-- costs twelve times that. pricing_mode says how metered usage is turned into
-- credits: 'markup' (managed provider keys, provider cost x markup),
-- 'passthrough' (the customer's own keys, no markup), 'mixed' (both).
create table plans (
    code text primary key,
    name text not null,
    monthly_price numeric(16, 4) not null,
    pricing_mode text not null,
    description text not null default '',
    sort_order integer not null default 0,
    created_at timestamptz not null default now(),
    constraint plans_code_format check (code ~ '^[a-z][a-z0-9_]{0,31}$'),
    constraint plans_name_format check (length(btrim(name)) between 1 and 100),
    constraint plans_price_valid check (monthly_price >= 0 and monthly_price <> 'NaN'),
    constraint plans_pricing_mode_known check (pricing_mode in ('markup', 'passthrough', 'mixed'))
);

insert into plans (code, name, monthly_price, pricing_mode, description, sort_order) values
    ('starter', 'Starter', 19, 'markup', 'Entry tier on managed provider keys', 10),
    ('byok', 'BYOK', 30, 'passthrough', 'Bring your own provider keys: usage passed through, no markup', 20),
    ('platform', 'Platform', 50, 'markup', 'Managed provider keys: provider cost x 1.5', 30),
    ('hybrid', 'Hybrid', 99, 'mixed', 'Managed and own provider keys mixed', 40),
    ('enterprise', 'Enterprise', 99, 'mixed', 'Managed and own provider keys, for large teams', 50);

-- A subscription names a plan of the catalogue.
--   created_at:        when the subscription started (it may be reported late:
--                      see create_subscription's p_started_at)
--   recorded_at:       when the row was written
--   status_changed_at: when its status last changed (its start, at first)
--   created_by:        the system admin who created it (null: a trusted job)
alter table organization_subscriptions
    add column created_by text references users (id),
    add column status_changed_at timestamptz,
    add column recorded_at timestamptz not null default now(),
    add constraint organization_subscriptions_plan_known foreign key (plan) references plans (code);

update organization_subscriptions
   set recorded_at = created_at, status_changed_at = coalesce(canceled_at, updated_at);

-- Usage and billing history may be reported after the fact: created_at is
-- when the call (or purchase) happened, recorded_at when the ledger wrote it.
alter table credit_usage_attribution add column recorded_at timestamptz not null default now();

update credit_usage_attribution set recorded_at = created_at where recorded_at <> created_at;

alter table org_billing_history add column recorded_at timestamptz not null default now();

update org_billing_history set recorded_at = created_at where recorded_at <> created_at;
