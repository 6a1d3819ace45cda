-- The billing calendar: the periods an organization's credits renew in and
-- its subscription is billed for.


-- ledger_check_timezone(p_timezone): returns nothing.
-- Raises CB009 unless p_timezone is a time zone name PostgreSQL knows
-- ('UTC', 'Europe/Berlin'...).
create or replace function ledger_check_timezone(p_timezone text)
returns void
language plpgsql
stable
as $$
begin
    if p_timezone is null
       or not exists (select 1 from pg_timezone_names where name = p_timezone) then
        raise exception using errcode = 'CB009',
            message = format('%s is not a time zone name: use a name such as UTC or Europe/Berlin.',
                             coalesce(quote_literal(p_timezone), 'An empty value'));
    end if;
end;
$$;

comment on function ledger_check_timezone(text) is
    'ledger_check_timezone(p_timezone): returns nothing. Raises CB009 unless p_timezone is a time zone name '
    'PostgreSQL knows (''UTC'', ''Europe/Berlin''...).';


-- ledger_check_anchor_day(p_day): returns nothing.
-- Raises CB009 unless p_day is a day of the month, 1 to 31.
create or replace function ledger_check_anchor_day(p_day integer)
returns void
language plpgsql
immutable
as $$
begin
    if p_day is null or p_day not between 1 and 31 then
        raise exception using errcode = 'CB009',
            message = format('The billing day must be a day of the month, 1 to 31 (got %s).',
                             coalesce(p_day::text, 'nothing'));
    end if;
end;
$$;

comment on function ledger_check_anchor_day(integer) is
    'ledger_check_anchor_day(p_day): returns nothing. Raises CB009 unless p_day is a day of the month, 1 to 31.';


-- billing_period_start_in(p_anchor_day, p_timezone, p_year, p_month): when
-- the billing period that starts in that calendar month starts: local
-- midnight of the anchor day (the month's last day when it is shorter), in
-- p_timezone. Raises nothing for valid arguments.
create or replace function billing_period_start_in(
    p_anchor_day integer,
    p_timezone text,
    p_year integer,
    p_month integer
)
returns timestamptz
language sql
stable
as $$
    select (make_date(p_year, p_month, 1)
            + (least(p_anchor_day,
                     extract(day from make_date(p_year, p_month, 1) + interval '1 month' - interval '1 day')::integer)
               - 1))::timestamp
           at time zone p_timezone;
$$;

comment on function billing_period_start_in(integer, text, integer, integer) is
    'billing_period_start_in(p_anchor_day, p_timezone, p_year, p_month): when the billing period that starts in '
    'that calendar month starts: local midnight of the anchor day (the month''s last day when it is shorter), in '
    'p_timezone. Raises nothing for valid arguments.';


-- billing_period_bounds(p_anchor_day, p_timezone, p_at): the billing period
-- [period_start, period_end) that contains p_at, for a calendar anchored on
-- p_anchor_day in p_timezone. Periods are calendar months: anchor day 31
-- gives Jan 31, Feb 28 (29 in a leap year), Mar 31... Raises CB009 for an
-- unknown time zone or an anchor day outside 1-31.
create or replace function billing_period_bounds(
    p_anchor_day integer,
    p_timezone text,
    p_at timestamptz default now()
)
returns table (period_start timestamptz, period_end timestamptz)
language plpgsql
stable
as $$
declare
    v_local date;
    v_month date;
begin
    perform ledger_check_anchor_day(p_anchor_day);
    perform ledger_check_timezone(p_timezone);
    v_local := (p_at at time zone p_timezone)::date;
    v_month := date_trunc('month', v_local)::date;
    if p_at < billing_period_start_in(p_anchor_day, p_timezone,
                                      extract(year from v_month)::integer, extract(month from v_month)::integer) then
        v_month := (v_month - interval '1 month')::date;
    end if;
    period_start := billing_period_start_in(p_anchor_day, p_timezone,
                                            extract(year from v_month)::integer, extract(month from v_month)::integer);
    v_month := (v_month + interval '1 month')::date;
    period_end := billing_period_start_in(p_anchor_day, p_timezone,
                                          extract(year from v_month)::integer, extract(month from v_month)::integer);
    return next;
end;
$$;

comment on function billing_period_bounds(integer, text, timestamptz) is
    'billing_period_bounds(p_anchor_day, p_timezone, p_at): the billing period [period_start, period_end) that '
    'contains p_at, for a calendar anchored on p_anchor_day in p_timezone. Periods are calendar months: anchor '
    'day 31 gives Jan 31, Feb 28 (29 in a leap year), Mar 31... Raises CB009 for an unknown time zone or an '
    'anchor day outside 1-31.';


-- org_billing_period(p_org_id, p_at): the billing period of organization
-- p_org_id that contains p_at, on its own anchor day and time zone.
-- Raises CB002 for an unknown organization.
create or replace function org_billing_period(p_org_id text, p_at timestamptz default now())
returns table (period_start timestamptz, period_end timestamptz)
language plpgsql
stable
as $$
declare
    v_org organizations%rowtype;
begin
    select * into v_org from organizations where id = p_org_id;
    if not found then
        raise exception using errcode = 'CB002',
            message = format('Organization %s does not exist.', coalesce(quote_literal(p_org_id), 'with no id'));
    end if;
    return query select b.period_start, b.period_end
                   from billing_period_bounds(v_org.billing_anchor_day, v_org.billing_timezone, p_at) b;
end;
$$;

comment on function org_billing_period(text, timestamptz) is
    'org_billing_period(p_org_id, p_at): the billing period of organization p_org_id that contains p_at, on its '
    'own anchor day and time zone. Raises CB002 for an unknown organization.';
