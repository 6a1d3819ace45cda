-- 0007: the plan catalogue with versions, and what the subscription
-- lifecycle needs (plan versions paid, scheduled changes, calendar periods).
--
-- A plan (table plans) is its identity: code, name, description, order, and
-- whether it is retired (no new subscriptions, no changes to it). Its terms
-- (price, pricing mode, included credits, trial) live in plan_versions: a
-- system admin's change makes a new version with an effective date, never
-- editing an old one. plans keeps monthly_price, pricing_mode,
-- included_credits and trial_days as a copy of the version in force
-- (refreshed by every catalogue change and subscription renewal) so that
-- existing readers keep working; plan_versions is the truth.
create table plan_versions (
    plan text not null references plans (code),
    version integer not null,
    monthly_price numeric(16, 4) not null,
    pricing_mode text not null,
    included_credits numeric(20, 6) not null default 0,
    trial_days integer,
    effective_at timestamptz not null,
    created_by text references users (id),
    created_at timestamptz not null default now(),
    primary key (plan, version),
    constraint plan_versions_version_positive check (version >= 1),
    constraint plan_versions_price_valid check (monthly_price >= 0 and monthly_price <> 'NaN'),
    constraint plan_versions_pricing_mode_known check (pricing_mode in ('markup', 'passthrough', 'mixed')),
    constraint plan_versions_included_credits_valid check (included_credits >= 0 and included_credits <> 'NaN'),
    constraint plan_versions_trial_days_valid check (trial_days is null or trial_days between 1 and 365),
    constraint plan_versions_one_per_moment unique (plan, effective_at)
);

-- the five documented plans become version 1, in force from this migration
insert into plan_versions (plan, version, monthly_price, pricing_mode, included_credits, trial_days, effective_at)
select code, 1, monthly_price, pricing_mode, included_credits, trial_days, now()
  from plans;

alter table plans
    add column retired_at timestamptz,
    add column retired_by text references users (id);

-- A subscription pays one plan version.
--   plan_version:              the version of `plan` it pays (price_amount is
--                              that version's price, x12 when yearly)
--   number:                    the organization's n-th subscription (1, 2...):
--                              names its invoices' external_ref
--   current_period_full_start: the calendar boundary the current period
--                              would have started at had the subscription run
--                              all of it; proration divides by
--                              [full_start, current_period_end)
--   scheduled_plan:            a plan change applied at current_period_end
--                              (null: none), asked by scheduled_by at
--                              scheduled_at
alter table organization_subscriptions
    add column plan_version integer,
    add column number integer,
    add column current_period_full_start timestamptz,
    add column scheduled_plan text references plans (code),
    add column scheduled_by text references users (id),
    add column scheduled_at timestamptz;

update organization_subscriptions s
   set plan_version = 1,
       number = n.number,
       current_period_full_start = s.current_period_start
  from (select org_id, id, row_number() over (partition by org_id order by created_at, recorded_at, id) as number
          from organization_subscriptions) n
 where n.org_id = s.org_id and n.id = s.id;

alter table organization_subscriptions
    alter column plan_version set not null,
    alter column number set not null,
    alter column current_period_full_start set not null,
    add constraint organization_subscriptions_version_known
        foreign key (plan, plan_version) references plan_versions (plan, version),
    add constraint organization_subscriptions_number_unique unique (org_id, number);

-- the rate limit on org admins' subscription changes counts their audit rows
create index audit_log_by_actor on audit_log (actor_id, created_at);
