-- Usage views over a chosen date range, in the organization's time zone.
--
-- A range is two calendar days, from and to (both included), in the
-- organization's time zone (organizations.billing_timezone, the zone its
-- billing periods start in): that zone decides what "today" is and where a
-- day starts. Every read here takes the acting user and authorizes it itself
-- (usage_authorize): a member reads their own usage in an organization, an
-- org admin the organization's (or one member's), a system admin any. None
-- locks or writes.


-- usage_authorize(p_actor_id, p_org_id, p_user_id): returns nothing.
-- p_user_id null: the whole organization's usage, for its admins; p_user_id
-- the actor: their own usage, for a member of the organization; another
-- user: that member's usage, for the organization's admins. System admins
-- pass; a null actor only on the operator's connection (ledger_authorize).
-- Raises CB002 (unknown organization or actor), CB008. Takes no lock.
create or replace function usage_authorize(p_actor_id text, p_org_id text, p_user_id text)
returns void
language plpgsql
stable
as $$
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id,
                             case when p_user_id is not null and p_user_id = p_actor_id then 'member' else 'admin' end);
end;
$$;

comment on function usage_authorize(text, text, text) is
    'usage_authorize(p_actor_id, p_org_id, p_user_id): returns nothing. p_user_id null: the whole organization''s '
    'usage, for its admins; p_user_id the actor: their own usage, for a member of the organization; another user: '
    'that member''s usage, for the organization''s admins. System admins pass; a null actor only on the operator''s '
    'connection (ledger_authorize). Raises CB002 (unknown organization or actor), CB008. Takes no lock.';


-- usage_window(p_org_id, p_from, p_to): returns (time_zone, today,
-- starts_at, ends_at): the organization's time zone, today's date there,
-- and the instants [starts_at, ends_at) that the days p_from to p_to (both
-- included) cover in it. Raises CB009, saying what is wrong, unless both
-- dates are given, p_from <= p_to <= today and the range is at most 400
-- days. The organization must exist (usage_authorize checked it).
create or replace function usage_window(
    p_org_id text,
    p_from date,
    p_to date,
    out time_zone text,
    out today date,
    out starts_at timestamptz,
    out ends_at timestamptz
)
language plpgsql
stable
as $$
begin
    select o.billing_timezone into time_zone from organizations o where o.id = p_org_id;
    today := (now() at time zone time_zone)::date;
    if p_from is null or p_to is null then
        raise exception using errcode = 'CB009',
            message = 'Choose both a start date and an end date.';
    end if;
    if p_from > p_to then
        raise exception using errcode = 'CB009',
            message = format('The start date %s is after the end date %s: choose a start on or before the end.',
                             to_char(p_from, 'YYYY-MM-DD'), to_char(p_to, 'YYYY-MM-DD'));
    end if;
    if p_to > today then
        raise exception using errcode = 'CB009',
            message = format('The end date %s is in the future: today is %s in %s; choose today or earlier.',
                             to_char(p_to, 'YYYY-MM-DD'), to_char(today, 'YYYY-MM-DD'), time_zone);
    end if;
    if p_to - p_from + 1 > 400 then
        raise exception using errcode = 'CB009',
            message = format('A date range covers at most 400 days; %s to %s covers %s: choose a shorter range.',
                             to_char(p_from, 'YYYY-MM-DD'), to_char(p_to, 'YYYY-MM-DD'), p_to - p_from + 1);
    end if;
    starts_at := p_from::timestamp at time zone time_zone;
    ends_at := (p_to + 1)::timestamp at time zone time_zone;
end;
$$;

comment on function usage_window(text, date, date) is
    'usage_window(p_org_id, p_from, p_to): returns (time_zone, today, starts_at, ends_at): the organization''s '
    'time zone, today''s date there, and the instants [starts_at, ends_at) that the days p_from to p_to (both '
    'included) cover in it. Raises CB009, saying what is wrong, unless both dates are given, p_from <= p_to <= '
    'today and the range is at most 400 days. The organization must exist (usage_authorize checked it).';


-- usage_range(p_actor_id, p_org_id, p_preset, p_from, p_to): the date range
-- a preset means for the organization today, checked as usage_window checks
-- it: 'today', 'last_7_days' and 'last_30_days' (up to today, included),
-- 'this_month' (up to today), 'last_month', 'this_period' (the current
-- billing period up to today) or 'custom' (p_from to p_to; the other presets
-- ignore them). p_actor_id must be a member of the organization. Raises
-- CB002, CB008, CB009 (an unknown preset, or a custom range usage_window
-- refuses).
create or replace function usage_range(p_actor_id text, p_org_id text, p_preset text, p_from date, p_to date)
returns table (
    preset text, date_from date, date_to date, days integer, time_zone text, today date,
    starts_at timestamptz, ends_at timestamptz
)
language plpgsql
stable
as $$
declare
    v_zone text;
    v_today date;
    v_from date;
    v_to date;
    v_period record;
    v_window record;
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'member');
    select o.billing_timezone into v_zone from organizations o where o.id = p_org_id;
    v_today := (now() at time zone v_zone)::date;
    case p_preset
        when 'today' then
            v_from := v_today;
            v_to := v_today;
        when 'last_7_days' then
            v_from := v_today - 6;
            v_to := v_today;
        when 'last_30_days' then
            v_from := v_today - 29;
            v_to := v_today;
        when 'this_month' then
            v_from := date_trunc('month', v_today)::date;
            v_to := v_today;
        when 'last_month' then
            v_from := (date_trunc('month', v_today) - interval '1 month')::date;
            v_to := date_trunc('month', v_today)::date - 1;
        when 'this_period' then
            select b.period_start, b.period_end into v_period from billing_current_period(p_org_id, p_actor_id) b;
            v_from := least((v_period.period_start at time zone v_zone)::date, v_today);
            -- the period's end is the first instant of the next one: its last day is the day before
            v_to := least(((v_period.period_end at time zone v_zone) - interval '1 microsecond')::date, v_today);
        when 'custom' then
            v_from := p_from;
            v_to := p_to;
        else
            raise exception using errcode = 'CB009',
                message = format('Unknown date range %s: choose today, last_7_days, last_30_days, this_month, '
                                 'last_month, this_period or custom.', coalesce(quote_literal(p_preset), 'with no name'));
    end case;
    select * into v_window from usage_window(p_org_id, v_from, v_to) w;
    return query select p_preset, v_from, v_to, v_to - v_from + 1, v_window.time_zone, v_window.today,
                        v_window.starts_at, v_window.ends_at;
end;
$$;

comment on function usage_range(text, text, text, date, date) is
    'usage_range(p_actor_id, p_org_id, p_preset, p_from, p_to): the date range a preset means for the '
    'organization today, checked as usage_window checks it: ''today'', ''last_7_days'' and ''last_30_days'' (up '
    'to today, included), ''this_month'' (up to today), ''last_month'', ''this_period'' (the current billing '
    'period up to today) or ''custom'' (p_from to p_to; the other presets ignore them). p_actor_id must be a '
    'member of the organization. Raises CB002, CB008, CB009 (an unknown preset, or a custom range usage_window '
    'refuses).';


-- usage_totals(p_actor_id, p_org_id, p_user_id, p_from, p_to,
-- p_service_type): credits used, their list price in dollars ($0.001 a
-- credit), requests (charges), distinct services and distinct users over
-- the days p_from to p_to, for one user (p_user_id) or the whole
-- organization (null), one service type (p_service_type) or all (null).
-- Authorized by usage_authorize; raises as it and usage_window do.
create or replace function usage_totals(
    p_actor_id text, p_org_id text, p_user_id text, p_from date, p_to date, p_service_type text
)
returns table (credits_used numeric, dollars numeric, requests bigint, services bigint, members bigint)
language plpgsql
stable
as $$
declare
    w record;
begin
    perform usage_authorize(p_actor_id, p_org_id, p_user_id);
    select * into w from usage_window(p_org_id, p_from, p_to);
    return query
        select coalesce(sum(c.credits_used), 0), coalesce(sum(c.credits_used), 0) * 0.001, count(*),
               count(distinct c.service_type), count(distinct c.user_id)
          from credit_usage_attribution c
         where c.org_id = p_org_id and c.created_at >= w.starts_at and c.created_at < w.ends_at
           and (p_user_id is null or c.user_id = p_user_id)
           and (p_service_type is null or c.service_type = p_service_type);
end;
$$;

comment on function usage_totals(text, text, text, date, date, text) is
    'usage_totals(p_actor_id, p_org_id, p_user_id, p_from, p_to, p_service_type): credits used, their list price '
    'in dollars ($0.001 a credit), requests (charges), distinct services and distinct users over the days p_from '
    'to p_to, for one user (p_user_id) or the whole organization (null), one service type (p_service_type) or all '
    '(null). Authorized by usage_authorize; raises as it and usage_window do.';


-- usage_days(p_actor_id, p_org_id, p_user_id, p_from, p_to): credits and
-- requests per day and service type, days in the organization's time zone
-- (a charge at 23:30 UTC is on the next day in Europe/Berlin), days with
-- usage only, in day then service order. One user or the whole
-- organization (null). Authorized by usage_authorize.
create or replace function usage_days(p_actor_id text, p_org_id text, p_user_id text, p_from date, p_to date)
returns table (day date, service_type text, credits_used numeric, requests bigint)
language plpgsql
stable
as $$
declare
    w record;
begin
    perform usage_authorize(p_actor_id, p_org_id, p_user_id);
    select * into w from usage_window(p_org_id, p_from, p_to);
    return query
        select (c.created_at at time zone w.time_zone)::date, c.service_type, sum(c.credits_used), count(*)
          from credit_usage_attribution c
         where c.org_id = p_org_id and c.created_at >= w.starts_at and c.created_at < w.ends_at
           and (p_user_id is null or c.user_id = p_user_id)
         group by 1, 2
         order by 1, 2;
end;
$$;

comment on function usage_days(text, text, text, date, date) is
    'usage_days(p_actor_id, p_org_id, p_user_id, p_from, p_to): credits and requests per day and service type, '
    'days in the organization''s time zone (a charge at 23:30 UTC is on the next day in Europe/Berlin), days with '
    'usage only, in day then service order. One user or the whole organization (null). Authorized by '
    'usage_authorize.';


-- usage_hours(p_actor_id, p_org_id, p_user_id, p_from, p_to): credits and
-- requests per hour and service type, hours on the organization's clock
-- (hour: the local time the hour starts), hours with usage only, in hour
-- then service order: the chart of a day or two. One user or the whole
-- organization (null). Authorized by usage_authorize; raises CB009 for a
-- range longer than 7 days, and as usage_window does.
create or replace function usage_hours(p_actor_id text, p_org_id text, p_user_id text, p_from date, p_to date)
returns table (hour timestamp, service_type text, credits_used numeric, requests bigint)
language plpgsql
stable
as $$
declare
    w record;
begin
    perform usage_authorize(p_actor_id, p_org_id, p_user_id);
    select * into w from usage_window(p_org_id, p_from, p_to);
    if p_to - p_from + 1 > 7 then
        raise exception using errcode = 'CB009',
            message = format('Usage per hour covers at most 7 days (%s to %s covers %s): use usage per day.',
                             to_char(p_from, 'YYYY-MM-DD'), to_char(p_to, 'YYYY-MM-DD'), p_to - p_from + 1);
    end if;
    return query
        select date_trunc('hour', c.created_at at time zone w.time_zone), c.service_type, sum(c.credits_used),
               count(*)
          from credit_usage_attribution c
         where c.org_id = p_org_id and c.created_at >= w.starts_at and c.created_at < w.ends_at
           and (p_user_id is null or c.user_id = p_user_id)
         group by 1, 2
         order by 1, 2;
end;
$$;

comment on function usage_hours(text, text, text, date, date) is
    'usage_hours(p_actor_id, p_org_id, p_user_id, p_from, p_to): credits and requests per hour and service type, '
    'hours on the organization''s clock (hour: the local time the hour starts), hours with usage only, in hour then '
    'service order: the chart of a day or two. One user or the whole organization (null). Authorized by '
    'usage_authorize; raises CB009 for a range longer than 7 days, and as usage_window does.';


-- usage_services(p_actor_id, p_org_id, p_user_id, p_from, p_to): credits
-- and requests per service type over the range, largest first. One user or
-- the whole organization (null). Authorized by usage_authorize.
create or replace function usage_services(p_actor_id text, p_org_id text, p_user_id text, p_from date, p_to date)
returns table (service_type text, credits_used numeric, requests bigint)
language plpgsql
stable
as $$
declare
    w record;
begin
    perform usage_authorize(p_actor_id, p_org_id, p_user_id);
    select * into w from usage_window(p_org_id, p_from, p_to);
    return query
        select c.service_type, sum(c.credits_used), count(*)
          from credit_usage_attribution c
         where c.org_id = p_org_id and c.created_at >= w.starts_at and c.created_at < w.ends_at
           and (p_user_id is null or c.user_id = p_user_id)
         group by c.service_type
         order by 2 desc, 1;
end;
$$;

comment on function usage_services(text, text, text, date, date) is
    'usage_services(p_actor_id, p_org_id, p_user_id, p_from, p_to): credits and requests per service type over '
    'the range, largest first. One user or the whole organization (null). Authorized by usage_authorize.';


-- usage_members(p_actor_id, p_org_id, p_from, p_to): credits and requests
-- per user over the range, largest first, former members too (is_member
-- false). The organization's admins (usage_authorize with no user).
create or replace function usage_members(p_actor_id text, p_org_id text, p_from date, p_to date)
returns table (
    user_id text, display_name text, email text, is_member boolean, credits_used numeric, requests bigint
)
language plpgsql
stable
as $$
declare
    w record;
begin
    perform usage_authorize(p_actor_id, p_org_id, null);
    select * into w from usage_window(p_org_id, p_from, p_to);
    return query
        select t.user_id, coalesce(u.display_name, u.email, t.user_id), u.email, (m.user_id is not null),
               t.credits_used, t.requests
          from (select c.user_id, sum(c.credits_used) as credits_used, count(*) as requests
                  from credit_usage_attribution c
                 where c.org_id = p_org_id and c.created_at >= w.starts_at and c.created_at < w.ends_at
                 group by c.user_id) t
          left join users u on u.id = t.user_id
          left join organization_members m on m.org_id = p_org_id and m.user_id = t.user_id
         order by t.credits_used desc, t.user_id;
end;
$$;

comment on function usage_members(text, text, date, date) is
    'usage_members(p_actor_id, p_org_id, p_from, p_to): credits and requests per user over the range, largest '
    'first, former members too (is_member false). The organization''s admins (usage_authorize with no user).';


-- usage_charges(p_actor_id, p_org_id, p_user_id, p_from, p_to,
-- p_service_type, p_limit, p_offset): one page of the charges (attribution
-- rows) over the range, newest first: p_limit rows (1 to 100,000) after
-- skipping p_offset. One user or the whole organization (null), one service
-- type or all (null); usage_totals with the same filter counts them.
-- local_time is created_at in the organization's time zone; pricing is
-- what the pricing engine recorded (null for a charge reported in credits),
-- hold the hold it settled (null: none). Authorized by usage_authorize;
-- raises CB009 for a bad page, and as usage_window does.
create or replace function usage_charges(
    p_actor_id text, p_org_id text, p_user_id text, p_from date, p_to date, p_service_type text,
    p_limit integer, p_offset integer
)
returns table (
    id bigint, created_at timestamptz, local_time timestamp, user_id text, user_name text, email text,
    service_type text, service_name text, request_id text, credits_used numeric, dollars numeric,
    remaining_after numeric, pricing jsonb, hold jsonb
)
language plpgsql
stable
as $$
declare
    w record;
begin
    perform usage_authorize(p_actor_id, p_org_id, p_user_id);
    if p_limit is null or p_limit not between 1 and 100000 then
        raise exception using errcode = 'CB009',
            message = format('A page holds 1 to 100,000 charges (got %s).', coalesce(p_limit::text, 'none'));
    end if;
    if p_offset is null or p_offset < 0 then
        raise exception using errcode = 'CB009',
            message = format('A page starts at charge 0 or later (got %s).', coalesce(p_offset::text, 'none'));
    end if;
    select * into w from usage_window(p_org_id, p_from, p_to);
    return query
        select c.id, c.created_at, c.created_at at time zone w.time_zone, c.user_id,
               coalesce(u.display_name, u.email, c.user_id), u.email, c.service_type, c.service_name,
               c.request_id, c.credits_used, c.credits_used * 0.001, c.remaining_after,
               c.metadata -> 'pricing', c.metadata -> 'hold'
          from credit_usage_attribution c
          left join users u on u.id = c.user_id
         where c.org_id = p_org_id and c.created_at >= w.starts_at and c.created_at < w.ends_at
           and (p_user_id is null or c.user_id = p_user_id)
           and (p_service_type is null or c.service_type = p_service_type)
         order by c.created_at desc, c.id desc
         limit p_limit offset p_offset;
end;
$$;

comment on function usage_charges(text, text, text, date, date, text, integer, integer) is
    'usage_charges(p_actor_id, p_org_id, p_user_id, p_from, p_to, p_service_type, p_limit, p_offset): one page of '
    'the charges (attribution rows) over the range, newest first: p_limit rows (1 to 100,000) after skipping '
    'p_offset. One user or the whole organization (null), one service type or all (null); usage_totals with the '
    'same filter counts them. local_time is created_at in the organization''s time zone; pricing is what the '
    'pricing engine recorded (null for a charge reported in credits), hold the hold it settled (null: none). '
    'Authorized by usage_authorize; raises CB009 for a bad page, and as usage_window does.';
