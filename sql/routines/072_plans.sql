-- The plan catalogue: plans and their versions (migration 0007).
--
-- A version's terms (price, pricing mode, included credits, trial) never
-- change once written; a system admin's edit adds a version with an
-- effective date, now or later, and never before the latest version's.
-- Subscriptions pay the version they reference (068_subscription_terms.sql) and
-- move to a newer version of their plan at their first period start on or
-- after its effective date (renew_subscription), with a billing history row.
-- Catalogue changes lock the plan's row (FOR UPDATE) and write audit_log rows
-- (org_id null); they write no billing history: no organization pays yet.


-- plan_version_at(p_plan, p_at): the version of plan p_plan in force at p_at:
-- the latest effective at or before p_at; for a moment before its first
-- version (a subscription entered after the fact, dated before the catalogue
-- knew the plan), the first version. No row for an unknown plan. Raises
-- nothing, locks nothing.
create or replace function plan_version_at(p_plan text, p_at timestamptz default now())
returns setof plan_versions
language sql
stable
as $$
    select v.*
      from plan_versions v
     where v.plan = p_plan
     order by (v.effective_at <= p_at) desc,
              case when v.effective_at <= p_at then v.effective_at end desc,
              v.effective_at
     limit 1;
$$;

comment on function plan_version_at(text, timestamptz) is
    'plan_version_at(p_plan, p_at): the version of plan p_plan in force at p_at: the latest effective at or '
    'before p_at; for a moment before its first version (a subscription entered after the fact, dated before the '
    'catalogue knew the plan), the first version. No row for an unknown plan. Raises nothing, locks nothing.';


-- plan_catalogue_refresh(): copies the terms of each plan's version in force
-- now into plans' own columns (read by code older than the versions); returns
-- how many plans changed. Locks the plans rows it updates.
create or replace function plan_catalogue_refresh()
returns integer
language sql
as $$
    with changed as (
        update plans p
           set monthly_price = v.monthly_price,
               pricing_mode = v.pricing_mode,
               included_credits = v.included_credits,
               trial_days = v.trial_days
          from plan_versions v
         where v.plan = p.code
           and v.version = (select x.version from plan_version_at(p.code, now()) x)
           and (p.monthly_price, p.pricing_mode, p.included_credits, p.trial_days)
               is distinct from (v.monthly_price, v.pricing_mode, v.included_credits, v.trial_days)
        returning 1
    )
    select count(*)::integer from changed;
$$;

comment on function plan_catalogue_refresh() is
    'plan_catalogue_refresh(): copies the terms of each plan''s version in force now into plans'' own columns '
    '(read by code older than the versions); returns how many plans changed. Locks the plans rows it updates.';


-- plan_catalogue(p_at): one row per plan with the version in force at p_at,
-- the next version scheduled after p_at (null when none), and whether the
-- plan is retired (at p_at). Order of the catalogue. Raises nothing.
create or replace function plan_catalogue(p_at timestamptz default now())
returns table (
    code text,
    name text,
    description text,
    version integer,
    monthly_price numeric,
    pricing_mode text,
    included_credits numeric,
    trial_days integer,
    effective_at timestamptz,
    next_version integer,
    next_effective_at timestamptz,
    retired_at timestamptz
)
language sql
stable
as $$
    select p.code, p.name, p.description, v.version, v.monthly_price, v.pricing_mode, v.included_credits,
           v.trial_days, v.effective_at, n.version, n.effective_at,
           case when p.retired_at <= p_at then p.retired_at end
      from plans p
      cross join lateral plan_version_at(p.code, p_at) v
      left join lateral (
            select x.version, x.effective_at
              from plan_versions x
             where x.plan = p.code and x.effective_at > p_at
             order by x.effective_at
             limit 1
           ) n on true
     order by p.sort_order, p.code;
$$;

comment on function plan_catalogue(timestamptz) is
    'plan_catalogue(p_at): one row per plan with the version in force at p_at, the next version scheduled after '
    'p_at (null when none), and whether the plan is retired (at p_at). Order of the catalogue. Raises nothing.';


-- plan_check_terms(p_monthly_price, p_pricing_mode, p_included_credits,
-- p_trial_days): returns nothing. Raises CB001 for a price that is not a
-- dollar amount >= 0 with at most 4 decimals, or included credits that are
-- not >= 0 with at most 6 decimals; CB009 for an unknown pricing mode or a
-- trial outside 1-365 days (null: no trial).
create or replace function plan_check_terms(
    p_monthly_price numeric,
    p_pricing_mode text,
    p_included_credits numeric,
    p_trial_days integer
)
returns void
language plpgsql
immutable
as $$
begin
    perform ledger_check_money(p_monthly_price, 'Monthly price');
    if p_included_credits is distinct from 0 then
        perform ledger_check_credits(p_included_credits, 'Included credits');
    end if;
    if p_pricing_mode is null or p_pricing_mode not in ('markup', 'passthrough', 'mixed') then
        raise exception using errcode = 'CB009',
            message = format('Pricing mode must be ''markup'', ''passthrough'' or ''mixed'' (got %L).',
                             left(p_pricing_mode, 80));
    end if;
    if p_trial_days is not null and p_trial_days not between 1 and 365 then
        raise exception using errcode = 'CB009',
            message = format('A trial lasts 1 to 365 days, or give none (got %s days).', p_trial_days);
    end if;
end;
$$;

comment on function plan_check_terms(numeric, text, numeric, integer) is
    'plan_check_terms(p_monthly_price, p_pricing_mode, p_included_credits, p_trial_days): returns nothing. Raises '
    'CB001 for a price that is not a dollar amount >= 0 with at most 4 decimals, or included credits that are not '
    '>= 0 with at most 6 decimals; CB009 for an unknown pricing mode or a trial outside 1-365 days (null: no '
    'trial).';


-- plan_check_effective_at(p_effective_at): returns the moment a new version
-- takes effect: p_effective_at, or now when null. Raises CB009 when it is
-- more than a minute in the past (clock skew allowance) or infinite.
create or replace function plan_check_effective_at(p_effective_at timestamptz)
returns timestamptz
language plpgsql
stable
as $$
begin
    if p_effective_at is null then
        return now();
    end if;
    if not isfinite(p_effective_at) then
        raise exception using errcode = 'CB009',
            message = 'Effective date must be a real date: now or later.';
    end if;
    if p_effective_at < now() - interval '1 minute' then
        raise exception using errcode = 'CB009',
            message = format('Effective date (%s) is in the past: a plan''s terms change now or later, '
                             'never retroactively.', ledger_time_text(p_effective_at));
    end if;
    return greatest(p_effective_at, now());
end;
$$;

comment on function plan_check_effective_at(timestamptz) is
    'plan_check_effective_at(p_effective_at): returns the moment a new version takes effect: p_effective_at, or '
    'now when null. Raises CB009 when it is more than a minute in the past (clock skew allowance) or infinite.';


-- create_plan(p_code, p_name, p_monthly_price, p_pricing_mode,
--             p_included_credits, p_trial_days, p_actor_id, p_description):
-- returns 1, the new plan's first version, in force at once.
-- p_actor_id must be a system admin (null: a trusted job).
-- Raises CB001 (price, included credits), CB002 (unknown actor), CB008,
-- CB009 (code not lower-case letters, digits and _ starting with a letter,
-- up to 32; name missing or over 100 characters; description over 500;
-- pricing mode; trial), CB010 (code taken).
create or replace function create_plan(
    p_code text,
    p_name text,
    p_monthly_price numeric,
    p_pricing_mode text,
    p_included_credits numeric default 0,
    p_trial_days integer default null,
    p_actor_id text default null,
    p_description text default ''
)
returns integer
language plpgsql
as $$
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    if p_code is null or p_code !~ '^[a-z][a-z0-9_]{0,31}$' then
        raise exception using errcode = 'CB009',
            message = format('Plan code must be 1 to 32 lower-case letters, digits or _, starting with a letter '
                             '(got %L).', left(p_code, 40));
    end if;
    perform ledger_check_text(p_name, 'Plan name', 100);
    perform ledger_check_text(p_description, 'Plan description', 500, false);
    perform plan_check_terms(p_monthly_price, p_pricing_mode, p_included_credits, p_trial_days);
    if exists (select 1 from plans where code = p_code) then
        raise exception using errcode = 'CB010',
            message = format('Plan code %L is already taken: choose another.', p_code);
    end if;

    insert into plans (code, name, monthly_price, pricing_mode, included_credits, trial_days, description,
                       sort_order)
    values (p_code, btrim(p_name), p_monthly_price, p_pricing_mode, p_included_credits, p_trial_days,
            coalesce(p_description, ''), (select coalesce(max(sort_order), 0) + 10 from plans))
    on conflict (code) do nothing;
    if not found then
        raise exception using errcode = 'CB010',
            message = format('Plan code %L is already taken: choose another.', p_code);
    end if;
    insert into plan_versions (plan, version, monthly_price, pricing_mode, included_credits, trial_days,
                               effective_at, created_by)
    values (p_code, 1, p_monthly_price, p_pricing_mode, p_included_credits, p_trial_days, now(), p_actor_id);
    perform ledger_audit(null, p_actor_id, 'plan.created', 'plan', p_code,
                         jsonb_build_object('name', btrim(p_name), 'monthly_price', p_monthly_price,
                                            'pricing_mode', p_pricing_mode,
                                            'included_credits', p_included_credits, 'trial_days', p_trial_days));
    return 1;
end;
$$;

comment on function create_plan(text, text, numeric, text, numeric, integer, text, text) is
    'create_plan(p_code, p_name, p_monthly_price, p_pricing_mode, p_included_credits, p_trial_days, p_actor_id, '
    'p_description): returns 1, the new plan''s first version, in force at once. p_actor_id must be a system '
    'admin (null: a trusted job). Raises CB001 (price, included credits), CB002 (unknown actor), CB008, CB009 '
    '(code not lower-case letters, digits and _ starting with a letter, up to 32; name missing or over 100 '
    'characters; description over 500; pricing mode; trial), CB010 (code taken).';


-- ledger_lock_plan(p_plan): returns the plan's row, locked FOR UPDATE
-- (serializes catalogue changes of one plan). Raises CB009 for an unknown plan.
create or replace function ledger_lock_plan(p_plan text)
returns plans
language plpgsql
as $$
declare
    v_plan plans;
begin
    perform ledger_require_plan(p_plan);
    select * into v_plan from plans where code = p_plan for update;
    return v_plan;
end;
$$;

comment on function ledger_lock_plan(text) is
    'ledger_lock_plan(p_plan): returns the plan''s row, locked FOR UPDATE (serializes catalogue changes of one '
    'plan). Raises CB009 for an unknown plan.';


-- plan_next_version(p_code, p_actor_id, p_monthly_price, p_pricing_mode,
--                   p_included_credits, p_trial_days, p_effective_at):
-- returns the plan_versions row edit_plan would add (not inserted): the
-- given terms, a null term keeping the latest version's (p_trial_days 0
-- removes the trial), effective at p_effective_at (null: now), numbered after
-- the latest version. The one check of an edit, shared by edit_plan and
-- preview_plan_edit. p_actor_id must be a system admin (null: a trusted job).
-- Writes and locks nothing (edit_plan locks the plan first). Raises CB001,
-- CB002 (unknown actor), CB008, CB009 (unknown plan, terms, effective date
-- in the past or not after the latest version's), CB012 (retired plan;
-- terms equal to the latest version's).
create or replace function plan_next_version(
    p_code text,
    p_actor_id text,
    p_monthly_price numeric,
    p_pricing_mode text,
    p_included_credits numeric,
    p_trial_days integer,
    p_effective_at timestamptz
)
returns plan_versions
language plpgsql
stable
as $$
declare
    v_plan plans;
    v_latest plan_versions;
    v_at timestamptz;
    v_new plan_versions;
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    v_at := plan_check_effective_at(p_effective_at);
    v_plan := ledger_require_plan(p_code);
    if v_plan.retired_at is not null then
        raise exception using errcode = 'CB012',
            message = format('Plan %L is retired: its terms can no longer change.', p_code);
    end if;
    select * into v_latest from plan_versions where plan = p_code order by version desc limit 1;
    -- checked before they go into the row: its typed columns would round or overflow silently
    perform plan_check_terms(coalesce(p_monthly_price, v_latest.monthly_price),
                             coalesce(p_pricing_mode, v_latest.pricing_mode),
                             coalesce(p_included_credits, v_latest.included_credits),
                             case when p_trial_days is null then v_latest.trial_days
                                  when p_trial_days = 0 then null else p_trial_days end);
    v_new := v_latest;
    v_new.version := v_latest.version + 1;
    v_new.monthly_price := coalesce(p_monthly_price, v_latest.monthly_price);
    v_new.pricing_mode := coalesce(p_pricing_mode, v_latest.pricing_mode);
    v_new.included_credits := coalesce(p_included_credits, v_latest.included_credits);
    v_new.trial_days := case when p_trial_days is null then v_latest.trial_days
                             when p_trial_days = 0 then null
                             else p_trial_days end;
    v_new.effective_at := v_at;
    v_new.created_by := p_actor_id;
    v_new.created_at := now();
    if v_at <= v_latest.effective_at then
        raise exception using errcode = 'CB009',
            message = format('Effective date (%s) must be after version %s''s (%s): versions follow one another.',
                             ledger_time_text(v_at), v_latest.version, ledger_time_text(v_latest.effective_at));
    end if;
    if (v_new.monthly_price, v_new.pricing_mode, v_new.included_credits, v_new.trial_days)
       is not distinct from (v_latest.monthly_price, v_latest.pricing_mode, v_latest.included_credits,
                             v_latest.trial_days) then
        raise exception using errcode = 'CB012',
            message = format('These terms are those of plan %L''s version %s already: nothing to change.',
                             p_code, v_latest.version);
    end if;
    return v_new;
end;
$$;

comment on function plan_next_version(text, text, numeric, text, numeric, integer, timestamptz) is
    'plan_next_version(p_code, p_actor_id, p_monthly_price, p_pricing_mode, p_included_credits, p_trial_days, '
    'p_effective_at): returns the plan_versions row edit_plan would add (not inserted): the given terms, a null '
    'term keeping the latest version''s (p_trial_days 0 removes the trial), effective at p_effective_at (null: '
    'now), numbered after the latest version. The one check of an edit, shared by edit_plan and '
    'preview_plan_edit. p_actor_id must be a system admin (null: a trusted job). Writes and locks nothing '
    '(edit_plan locks the plan first). Raises CB001, CB002 (unknown actor), CB008, CB009 (unknown plan, terms, '
    'effective date in the past or not after the latest version''s), CB012 (retired plan; terms equal to the '
    'latest version''s).';


-- preview_plan_edit(p_code, p_actor_id, p_monthly_price, p_pricing_mode,
--                   p_included_credits, p_trial_days, p_effective_at):
-- one row: the version edit_plan would add with these arguments (number,
-- terms, effective_at, the latest version's price) and whom it reaches:
-- subscriptions (one per organization) live on the plan now, those of them
-- set to leave it at their period end (cancellation or a scheduled change),
-- and live subscriptions scheduled to move to it. What edit_plan refuses,
-- this refuses with the same error (plan_next_version), so a screen can ask
-- "Confirm?" only for an edit that would be saved.
-- p_actor_id must be a system admin (null: a trusted job). Writes and locks
-- nothing. Raises what plan_next_version raises.
create or replace function preview_plan_edit(
    p_code text,
    p_actor_id text default null,
    p_monthly_price numeric default null,
    p_pricing_mode text default null,
    p_included_credits numeric default null,
    p_trial_days integer default null,
    p_effective_at timestamptz default null
)
returns table (
    version integer, monthly_price numeric, pricing_mode text, included_credits numeric, trial_days integer,
    effective_at timestamptz, previous_monthly_price numeric, subscriptions bigint, leaving bigint,
    arriving bigint
)
language plpgsql
stable
as $$
declare
    v_new plan_versions := plan_next_version(p_code, p_actor_id, p_monthly_price, p_pricing_mode,
                                             p_included_credits, p_trial_days, p_effective_at);
begin
    return query
    select v_new.version, v_new.monthly_price, v_new.pricing_mode, v_new.included_credits, v_new.trial_days,
           v_new.effective_at,
           (select v.monthly_price from plan_versions v where v.plan = p_code and v.version = v_new.version - 1),
           count(*) filter (where s.plan = p_code),
           count(*) filter (where s.plan = p_code
                              and (s.cancel_at_period_end or s.scheduled_plan is distinct from p_code
                                   and s.scheduled_plan is not null)),
           count(*) filter (where s.plan is distinct from p_code and s.scheduled_plan = p_code)
      from organization_subscriptions s
     where s.status in ('trialing', 'active', 'past_due') and (s.plan = p_code or s.scheduled_plan = p_code);
end;
$$;

comment on function preview_plan_edit(text, text, numeric, text, numeric, integer, timestamptz) is
    'preview_plan_edit(p_code, p_actor_id, p_monthly_price, p_pricing_mode, p_included_credits, p_trial_days, '
    'p_effective_at): one row: the version edit_plan would add with these arguments (number, terms, '
    'effective_at, the latest version''s price) and whom it reaches: subscriptions (one per organization) live '
    'on the plan now, those of them set to leave it at their period end (cancellation or a scheduled change), and '
    'live subscriptions scheduled to move to it. What edit_plan refuses, this refuses with the same error '
    '(plan_next_version), so a screen can ask "Confirm?" only for an edit that would be saved. p_actor_id must be '
    'a system admin (null: a trusted job). Writes and locks nothing. Raises what plan_next_version raises.';


-- edit_plan(p_code, p_actor_id, p_monthly_price, p_pricing_mode,
--           p_included_credits, p_trial_days, p_effective_at): returns the
-- new version's number.
-- Adds a version of the plan with the given terms; a null term keeps the
-- latest version's (p_trial_days 0 removes the trial). It takes effect at
-- p_effective_at (null: now), which must be now or later and after the latest
-- version's effective date (plan_next_version checks). Subscriptions meet it
-- at their first period start on or after that date; what they paid before
-- never changes. p_actor_id must be a system admin (null: a trusted job).
-- Locks the plan's row. Raises CB001, CB002 (unknown actor), CB008, CB009
-- (unknown plan, terms, effective date), CB012 (retired plan; terms equal to
-- the latest version's).
create or replace function edit_plan(
    p_code text,
    p_actor_id text default null,
    p_monthly_price numeric default null,
    p_pricing_mode text default null,
    p_included_credits numeric default null,
    p_trial_days integer default null,
    p_effective_at timestamptz default null
)
returns integer
language plpgsql
as $$
declare
    v_new plan_versions;
    v_previous numeric;
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    perform ledger_lock_plan(p_code);
    v_new := plan_next_version(p_code, p_actor_id, p_monthly_price, p_pricing_mode, p_included_credits,
                               p_trial_days, p_effective_at);
    select monthly_price into v_previous from plan_versions where plan = p_code and version = v_new.version - 1;

    insert into plan_versions values (v_new.*);
    perform plan_catalogue_refresh();
    perform ledger_audit(null, p_actor_id, 'plan.version_created', 'plan', p_code,
                         jsonb_build_object('version', v_new.version, 'effective_at', v_new.effective_at,
                                            'monthly_price', v_new.monthly_price,
                                            'previous_monthly_price', v_previous,
                                            'pricing_mode', v_new.pricing_mode,
                                            'included_credits', v_new.included_credits,
                                            'trial_days', v_new.trial_days));
    return v_new.version;
end;
$$;

comment on function edit_plan(text, text, numeric, text, numeric, integer, timestamptz) is
    'edit_plan(p_code, p_actor_id, p_monthly_price, p_pricing_mode, p_included_credits, p_trial_days, '
    'p_effective_at): returns the new version''s number. Adds a version of the plan with the given terms; a null '
    'term keeps the latest version''s (p_trial_days 0 removes the trial). It takes effect at p_effective_at '
    '(null: now), which must be now or later and after the latest version''s effective date (plan_next_version '
    'checks). Subscriptions meet it at their first period start on or after that date; what they paid before '
    'never changes. p_actor_id must be a system admin (null: a trusted job). Locks the plan''s row. Raises CB001, '
    'CB002 (unknown actor), CB008, CB009 (unknown plan, terms, effective date), CB012 (retired plan; terms equal '
    'to the latest version''s).';


-- rename_plan(p_code, p_name, p_actor_id, p_description): returns nothing.
-- Changes the plan's name (and description, when given): they describe the
-- plan, not what anyone pays, so they are not versioned.
-- p_actor_id must be a system admin (null: a trusted job).
-- Locks the plan's row. Raises CB002, CB008, CB009 (unknown plan, bad name).
create or replace function rename_plan(
    p_code text,
    p_name text,
    p_actor_id text default null,
    p_description text default null
)
returns void
language plpgsql
as $$
declare
    v_plan plans;
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    perform ledger_check_text(p_name, 'Plan name', 100);
    perform ledger_check_text(p_description, 'Plan description', 500, false);
    v_plan := ledger_lock_plan(p_code);
    update plans
       set name = btrim(p_name), description = coalesce(p_description, description)
     where code = p_code;
    perform ledger_audit(null, p_actor_id, 'plan.renamed', 'plan', p_code,
                         jsonb_build_object('from', v_plan.name, 'to', btrim(p_name)));
end;
$$;

comment on function rename_plan(text, text, text, text) is
    'rename_plan(p_code, p_name, p_actor_id, p_description): returns nothing. Changes the plan''s name (and '
    'description, when given): they describe the plan, not what anyone pays, so they are not versioned. '
    'p_actor_id must be a system admin (null: a trusted job). Locks the plan''s row. Raises CB002, CB008, CB009 '
    '(unknown plan, bad name).';


-- retire_plan(p_code, p_actor_id): returns nothing.
-- Retires the plan: nobody may subscribe or change to it any more;
-- subscriptions on it keep it (and keep meeting its versions).
-- p_actor_id must be a system admin (null: a trusted job).
-- Locks the plan's row. Raises CB002, CB008, CB009 (unknown plan), CB012
-- (already retired).
create or replace function retire_plan(p_code text, p_actor_id text default null)
returns void
language plpgsql
as $$
declare
    v_plan plans;
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    v_plan := ledger_lock_plan(p_code);
    if v_plan.retired_at is not null then
        raise exception using errcode = 'CB012',
            message = format('Plan %L was retired already (%s).', p_code, ledger_time_text(v_plan.retired_at));
    end if;
    update plans set retired_at = now(), retired_by = p_actor_id where code = p_code;
    perform ledger_audit(null, p_actor_id, 'plan.retired', 'plan', p_code,
                         jsonb_build_object('subscriptions_on_it',
                                            (select count(*) from organization_subscriptions
                                              where plan = p_code and status <> 'canceled')));
end;
$$;

comment on function retire_plan(text, text) is
    'retire_plan(p_code, p_actor_id): returns nothing. Retires the plan: nobody may subscribe or change to it any '
    'more; subscriptions on it keep it (and keep meeting its versions). p_actor_id must be a system admin (null: '
    'a trusted job). Locks the plan''s row. Raises CB002, CB008, CB009 (unknown plan), CB012 (already retired).';


-- plan_version_list(p_code): every version of plan p_code, oldest first
-- (none for an unknown plan). The catalogue is public, like
-- plan_catalogue. Locks nothing. Raises nothing.
create or replace function plan_version_list(p_code text)
returns table (plan text, version integer, monthly_price numeric, pricing_mode text, included_credits numeric,
               trial_days integer, effective_at timestamptz, created_by text)
language sql
stable
as $$
    select v.plan, v.version, v.monthly_price, v.pricing_mode, v.included_credits, v.trial_days, v.effective_at,
           v.created_by
      from plan_versions v
     where v.plan = p_code
     order by v.version;
$$;

comment on function plan_version_list(text) is
    'plan_version_list(p_code): every version of plan p_code, oldest first (none for an unknown plan). The '
    'catalogue is public, like plan_catalogue. Locks nothing. Raises nothing.';
