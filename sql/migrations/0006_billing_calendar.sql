-- 0006: each organization's billing calendar, and what it may configure about
-- its period boundaries.
--   billing_anchor_day: the day of the month its billing periods start (1-31;
--                       in a shorter month, its last day). Defaults to the day
--                       the organization was opened.
--   billing_timezone:   the IANA zone in which that day starts (a period
--                       starts at local midnight).
alter table organizations
    add column billing_anchor_day smallint not null
        default extract(day from now() at time zone 'UTC')::smallint,
    add column billing_timezone text not null default 'UTC',
    add constraint organizations_anchor_day_valid check (billing_anchor_day between 1 and 31),
    add constraint organizations_timezone_format check (length(billing_timezone) between 1 and 64);

update organizations set billing_anchor_day = extract(day from created_at at time zone 'UTC')::smallint;

-- What a plan gives each billing period besides its price: credits granted to
-- the pool at every period start (0: none), and the free trial a new
-- subscription starts with (null: none).
alter table plans
    add column included_credits numeric(20, 6) not null default 0,
    add column trial_days integer,
    add constraint plans_included_credits_valid check (included_credits >= 0 and included_credits <> 'NaN'),
    add constraint plans_trial_days_valid check (trial_days is null or trial_days between 1 and 365);

update plans
   set included_credits = v.included, trial_days = v.trial
  from (values ('starter', 5000, 14), ('byok', 0, null), ('platform', 25000, 14),
               ('hybrid', 50000, null), ('enterprise', 100000, null)) as v (code, included, trial)
 where plans.code = v.code;
