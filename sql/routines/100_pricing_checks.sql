-- The pricing engine: effective-dated price tables (migration 0009), the
-- functions system admins edit them with, and price_usage, which turns one
-- metered event into credits and explains the arithmetic.
-- Four files, one subject each: 100_pricing_checks.sql (this one: the
-- rules below and the checks of an entered figure or date),
-- 101_price_tables.sql (the setters of the price tables),
-- 102_credit_packages.sql (packages and their purchase) and
-- 103_pricing_engine.sql (pricing_quote, price_usage, pricing_calculator).
--
-- How a call is priced (1 credit = $0.001, so 1,000 credits per dollar):
--   * a fixed-price service (service_prices has its service_type): its credits
--     per call x requests, whatever the model and keys;
--   * a model call on managed keys: provider cost in USD (tokens / 1,000 x
--     rate, images x rate, requests x rate) x 1,000 x markup (platform rule,
--     or the organization's override);
--   * a model call on the customer's own keys (BYOK): the provider bills the
--     customer directly, so only the platform fee per call x requests.
-- Rounding: once, at the end, half away from zero to 6 decimals (credits
-- have 6). Dollars shown next to credits are credits / 1,000, exact.
-- Which calls a plan allows follows its pricing_mode: 'markup' managed keys
-- only, 'passthrough' own keys only, 'mixed' both; an organization without a
-- live subscription (and a personal balance) is priced as 'markup'. A call
-- the plan does not allow is refused (CB012) before anything is charged.
-- Every edit is a system admin's (a null actor: a trusted operator), writes
-- a new row (never changes a past one) and an audit_log row.


-- pricing_check_figure(p_value, p_what, p_max, p_scale, p_unit): returns
-- nothing. Raises CB001 unless p_value is a number >= 0 (0: free), at most
-- p_max, with at most p_scale decimals (not infinite). p_unit ('dollars' or 'credits')
-- words the message.
create or replace function pricing_check_figure(
    p_value numeric,
    p_what text,
    p_max numeric,
    p_scale integer,
    p_unit text
)
returns void
language plpgsql
immutable
as $$
begin
    if p_value is null or p_value = 'NaN' then
        raise exception using errcode = 'CB001',
            message = format('%s is missing or not a number: give an amount in %s (0 for none).', p_what, p_unit);
    end if;
    if abs(p_value) = 'Infinity' then
        raise exception using errcode = 'CB001',
            message = format('%s is infinite (got %s): give a finite amount in %s (0 for none).',
                             p_what, p_value, p_unit);
    end if;
    if p_value < 0 then
        raise exception using errcode = 'CB001',
            message = format('%s cannot be negative (got %s).', p_what, ledger_amount_text(p_value));
    end if;
    if p_value > p_max then
        raise exception using errcode = 'CB001',
            message = format('%s is too large: at most %s %s (got %s).', p_what,
                             to_char(p_max, 'FM999,999,999,999'), p_unit, ledger_amount_text(p_value));
    end if;
    if p_value <> round(p_value, p_scale) then
        raise exception using errcode = 'CB001',
            message = format('%s has more than %s decimal places (got %s).', p_what, p_scale,
                             ledger_amount_text(p_value));
    end if;
end;
$$;

comment on function pricing_check_figure(numeric, text, numeric, integer, text) is
    'pricing_check_figure(p_value, p_what, p_max, p_scale, p_unit): returns nothing. Raises CB001 unless p_value '
    'is a number >= 0 (0: free), at most p_max, with at most p_scale decimals (not infinite). p_unit (''dollars'' '
    'or ''credits'') words the message.';


-- pricing_check_rate(p_value, p_what): returns nothing. Raises CB001 unless
-- p_value is a dollar rate >= 0, at most 1,000,000 and with at most 8 decimals.
create or replace function pricing_check_rate(p_value numeric, p_what text)
returns void
language sql
immutable
as $$
    select pricing_check_figure(p_value, p_what, 1000000, 8, 'dollars');
$$;

comment on function pricing_check_rate(numeric, text) is
    'pricing_check_rate(p_value, p_what): returns nothing. Raises CB001 unless p_value is a dollar rate >= 0, at '
    'most 1,000,000 and with at most 8 decimals.';


-- pricing_check_count(p_value, p_what, p_min, p_max): returns nothing.
-- Raises CB001 unless p_value is a whole number between p_min and p_max.
create or replace function pricing_check_count(p_value numeric, p_what text, p_min numeric, p_max numeric)
returns void
language plpgsql
immutable
as $$
begin
    if p_value is null or p_value = 'NaN' then
        raise exception using errcode = 'CB001',
            message = format('%s is missing or not a number: give a whole number.', p_what);
    end if;
    if abs(p_value) = 'Infinity' then
        raise exception using errcode = 'CB001',
            message = format('%s is infinite (got %s): give a whole number.', p_what, p_value);
    end if;
    if p_value <> trunc(p_value) then
        raise exception using errcode = 'CB001',
            message = format('%s must be a whole number (got %s).', p_what, ledger_amount_text(p_value));
    end if;
    if p_value < p_min or p_value > p_max then
        raise exception using errcode = 'CB001',
            message = format('%s must be between %s and %s (got %s).', p_what, ledger_amount_text(p_min),
                             to_char(p_max, 'FM999,999,999,999'), ledger_amount_text(p_value));
    end if;
end;
$$;

comment on function pricing_check_count(numeric, text, numeric, numeric) is
    'pricing_check_count(p_value, p_what, p_min, p_max): returns nothing. Raises CB001 unless p_value is a whole '
    'number between p_min and p_max.';


-- pricing_check_credit_price(p_value, p_what): returns nothing. Raises CB001
-- unless p_value is a number of credits >= 0 (0: free), at most
-- 1,000,000,000, with at most 6 decimals.
create or replace function pricing_check_credit_price(p_value numeric, p_what text)
returns void
language sql
immutable
as $$
    select pricing_check_figure(p_value, p_what, 1000000000, 6, 'credits');
$$;

comment on function pricing_check_credit_price(numeric, text) is
    'pricing_check_credit_price(p_value, p_what): returns nothing. Raises CB001 unless p_value is a number of '
    'credits >= 0 (0: free), at most 1,000,000,000, with at most 6 decimals.';


-- pricing_check_markup(p_value): returns nothing. Raises CB001 unless the
-- markup is a number > 0 and at most 100, with at most 4 decimals.
create or replace function pricing_check_markup(p_value numeric)
returns void
language plpgsql
immutable
as $$
begin
    if abs(p_value) = 'Infinity' then
        raise exception using errcode = 'CB001',
            message = format('Markup is infinite (got %s): give a finite number greater than 0 and at most 100.',
                             p_value);
    end if;
    if p_value is null or p_value = 'NaN' or p_value <= 0 or p_value > 100 or p_value <> round(p_value, 4) then
        raise exception using errcode = 'CB001',
            message = format('Markup must be a number greater than 0 and at most 100, with at most 4 decimals '
                             '(1.5 charges provider cost x 1.5); got %s.', ledger_amount_text(p_value));
    end if;
end;
$$;

comment on function pricing_check_markup(numeric) is
    'pricing_check_markup(p_value): returns nothing. Raises CB001 unless the markup is a number > 0 and at most '
    '100, with at most 4 decimals.';


-- pricing_effective_from(p_effective_from): returns the moment a new price
-- row takes effect: p_effective_from, or now when null. Raises CB009 when it
-- lies in the past (more than a minute ago: history is never rewritten) or
-- more than 5 years ahead.
create or replace function pricing_effective_from(p_effective_from timestamptz)
returns timestamptz
language plpgsql
stable
as $$
begin
    if p_effective_from is null then
        return now();
    end if;
    if not isfinite(p_effective_from) or p_effective_from > now() + interval '5 years' then
        raise exception using errcode = 'CB009',
            message = format('Effective time %s is too far ahead: at most 5 years from now.',
                             ledger_time_text(p_effective_from));
    end if;
    if p_effective_from < now() - interval '1 minute' then
        raise exception using errcode = 'CB009',
            message = format('Effective time %s is in the past: prices already charged are never rewritten; '
                             'give now or a later time.', ledger_time_text(p_effective_from));
    end if;
    return p_effective_from;
end;
$$;

comment on function pricing_effective_from(timestamptz) is
    'pricing_effective_from(p_effective_from): returns the moment a new price row takes effect: p_effective_from, '
    'or now when null. Raises CB009 when it lies in the past (more than a minute ago: history is never rewritten) '
    'or more than 5 years ahead.';


-- pricing_check_moment(p_at): returns p_at, or now when null. Raises CB009
-- for an infinite moment.
create or replace function pricing_check_moment(p_at timestamptz)
returns timestamptz
language plpgsql
stable
as $$
begin
    if p_at is not null and not isfinite(p_at) then
        raise exception using errcode = 'CB009', message = 'The pricing time must be a date and time, not infinity.';
    end if;
    return coalesce(p_at, now());
end;
$$;

comment on function pricing_check_moment(timestamptz) is
    'pricing_check_moment(p_at): returns p_at, or now when null. Raises CB009 for an infinite moment.';
