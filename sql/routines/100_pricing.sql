-- The pricing engine: effective-dated price tables (migration 0009), the
-- functions system admins edit them with, and price_usage, which turns one
-- metered event into credits and explains the arithmetic.
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


-- pricing_check_rate(p_value, p_what): returns nothing. Raises CB001 unless
-- p_value is a dollar rate >= 0, at most 1,000,000 and with at most 8 decimals.
create or replace function pricing_check_rate(p_value numeric, p_what text)
returns void
language sql
immutable
as $$
    select pricing_check_figure(p_value, p_what, 1000000, 8, 'dollars');
$$;


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


-- set_model_price(p_actor_id, p_provider, p_model, p_usd_per_1k_input,
--                 p_usd_per_1k_output, p_usd_per_image, p_usd_per_request,
--                 p_effective_from, p_is_available, p_note): returns the new
-- row's id.
-- Records a model's provider prices from p_effective_from (default now) on;
-- p_is_available false withdraws the model from then on. Locks nothing (the
-- unique key serializes two edits at the same moment). Raises CB001 (bad
-- rate), CB002 (unknown actor), CB008 (not a system admin), CB009 (bad
-- provider, model, note or time), CB010 (a row for this model at this moment
-- exists).
create or replace function set_model_price(
    p_actor_id text,
    p_provider text,
    p_model text,
    p_usd_per_1k_input numeric,
    p_usd_per_1k_output numeric,
    p_usd_per_image numeric default 0,
    p_usd_per_request numeric default 0,
    p_effective_from timestamptz default null,
    p_is_available boolean default true,
    p_note text default null
)
returns bigint
language plpgsql
as $$
declare
    v_from timestamptz;
    v_id bigint;
begin
    if p_provider is null or p_provider !~ '^[a-z][a-z0-9_.-]{0,63}$' then
        raise exception using errcode = 'CB009',
            message = format('Provider must be a lowercase key like ''openai'' (letters, digits, _ . -); got %L.',
                             left(p_provider, 80));
    end if;
    perform ledger_check_id(p_model, 'Model');
    perform pricing_check_rate(p_usd_per_1k_input, 'Price per 1,000 input tokens');
    perform pricing_check_rate(p_usd_per_1k_output, 'Price per 1,000 output tokens');
    perform pricing_check_rate(p_usd_per_image, 'Price per image');
    perform pricing_check_rate(p_usd_per_request, 'Price per request');
    perform ledger_check_text(p_note, 'Note', 500, false);
    v_from := pricing_effective_from(p_effective_from);
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    insert into model_prices (provider, model, effective_from, usd_per_1k_input, usd_per_1k_output,
                              usd_per_image, usd_per_request, is_available, note, created_by)
    values (p_provider, p_model, v_from, p_usd_per_1k_input, p_usd_per_1k_output, p_usd_per_image,
            p_usd_per_request, coalesce(p_is_available, true), coalesce(btrim(p_note), ''), p_actor_id)
    on conflict (model, effective_from) do nothing
    returning id into v_id;
    if v_id is null then
        raise exception using errcode = 'CB010',
            message = format('Model %L already has a price from %s: choose another time.', p_model,
                             ledger_time_text(v_from));
    end if;
    perform ledger_audit(null, p_actor_id, 'pricing.model_price_set', 'model', p_model,
                         jsonb_build_object('id', v_id, 'provider', p_provider, 'effective_from', v_from,
                                            'usd_per_1k_input', p_usd_per_1k_input,
                                            'usd_per_1k_output', p_usd_per_1k_output,
                                            'usd_per_image', p_usd_per_image, 'usd_per_request', p_usd_per_request,
                                            'is_available', coalesce(p_is_available, true)));
    return v_id;
end;
$$;


-- set_service_price(p_actor_id, p_service_type, p_credits, p_effective_from,
--                   p_is_available, p_note): returns the new row's id.
-- Records a fixed-price service's credits per call from p_effective_from
-- (default now) on; p_is_available false withdraws it. Locks nothing.
-- Raises CB001, CB002, CB008, CB009, CB010 (a row at this moment exists).
create or replace function set_service_price(
    p_actor_id text,
    p_service_type text,
    p_credits numeric,
    p_effective_from timestamptz default null,
    p_is_available boolean default true,
    p_note text default null
)
returns bigint
language plpgsql
as $$
declare
    v_from timestamptz;
    v_id bigint;
begin
    perform ledger_check_usage(p_service_type, 'fixed price', null, '{}');
    perform pricing_check_credit_price(p_credits, 'Credits per call');
    perform ledger_check_text(p_note, 'Note', 500, false);
    v_from := pricing_effective_from(p_effective_from);
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    insert into service_prices (service_type, effective_from, credits, is_available, note, created_by)
    values (p_service_type, v_from, p_credits, coalesce(p_is_available, true), coalesce(btrim(p_note), ''),
            p_actor_id)
    on conflict (service_type, effective_from) do nothing
    returning id into v_id;
    if v_id is null then
        raise exception using errcode = 'CB010',
            message = format('Service %L already has a price from %s: choose another time.', p_service_type,
                             ledger_time_text(v_from));
    end if;
    perform ledger_audit(null, p_actor_id, 'pricing.service_price_set', 'service', p_service_type,
                         jsonb_build_object('id', v_id, 'credits', p_credits, 'effective_from', v_from,
                                            'is_available', coalesce(p_is_available, true)));
    return v_id;
end;
$$;


-- pricing_platform_rule_at(p_at): returns the platform rule in force at p_at
-- (the seed row is in force from 2024-01-01). Raises CB002 when none is.
create or replace function pricing_platform_rule_at(p_at timestamptz)
returns platform_pricing_rules
language plpgsql
stable
as $$
declare
    v_rule platform_pricing_rules;
begin
    select * into v_rule from platform_pricing_rules
     where effective_from <= p_at order by effective_from desc limit 1;
    if not found then
        raise exception using errcode = 'CB002',
            message = format('No platform pricing rule is in force at %s.', ledger_time_text(p_at));
    end if;
    return v_rule;
end;
$$;


-- set_platform_pricing_rule(p_actor_id, p_markup, p_byok_fee_credits,
--                           p_hold_ttl_seconds, p_effective_from, p_note):
-- returns the new row's id.
-- The platform's markup, BYOK fee per call and default hold lifetime from
-- p_effective_from (default now) on; a null figure keeps the one in force
-- then. Locks nothing. Raises CB001, CB002, CB008, CB009, CB010.
create or replace function set_platform_pricing_rule(
    p_actor_id text,
    p_markup numeric default null,
    p_byok_fee_credits numeric default null,
    p_hold_ttl_seconds integer default null,
    p_effective_from timestamptz default null,
    p_note text default null
)
returns bigint
language plpgsql
as $$
declare
    v_from timestamptz;
    v_current platform_pricing_rules;
    v_id bigint;
begin
    if p_markup is not null then
        perform pricing_check_markup(p_markup);
    end if;
    if p_byok_fee_credits is not null then
        perform pricing_check_credit_price(p_byok_fee_credits, 'BYOK platform fee per call');
    end if;
    if p_hold_ttl_seconds is not null and p_hold_ttl_seconds not between 1 and 604800 then
        raise exception using errcode = 'CB001',
            message = format('Hold lifetime must be between 1 second and 7 days (604800 seconds); got %s.',
                             p_hold_ttl_seconds);
    end if;
    perform ledger_check_text(p_note, 'Note', 500, false);
    v_from := pricing_effective_from(p_effective_from);
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    v_current := pricing_platform_rule_at(v_from);
    insert into platform_pricing_rules (effective_from, markup, byok_fee_credits, hold_ttl_seconds, note, created_by)
    values (v_from, coalesce(p_markup, v_current.markup), coalesce(p_byok_fee_credits, v_current.byok_fee_credits),
            coalesce(p_hold_ttl_seconds, v_current.hold_ttl_seconds), coalesce(btrim(p_note), ''), p_actor_id)
    on conflict (effective_from) do nothing
    returning id into v_id;
    if v_id is null then
        raise exception using errcode = 'CB010',
            message = format('A platform rule already starts at %s: choose another time.', ledger_time_text(v_from));
    end if;
    perform ledger_audit(null, p_actor_id, 'pricing.platform_rule_set', 'platform_rule', v_id::text,
                         jsonb_build_object('effective_from', v_from,
                                            'markup', coalesce(p_markup, v_current.markup),
                                            'byok_fee_credits', coalesce(p_byok_fee_credits, v_current.byok_fee_credits),
                                            'hold_ttl_seconds', coalesce(p_hold_ttl_seconds, v_current.hold_ttl_seconds),
                                            'previous_rule_id', v_current.id));
    return v_id;
end;
$$;


-- set_org_pricing_override(p_org_id, p_actor_id, p_markup,
--                          p_byok_fee_credits, p_effective_from, p_note):
-- returns the new row's id.
-- The organization's own markup and BYOK fee from p_effective_from (default
-- now) on; a null figure follows the platform rule (both null: back to the
-- platform's rules). Locks nothing. Raises CB001, CB002 (unknown org or
-- actor), CB008, CB009, CB010.
create or replace function set_org_pricing_override(
    p_org_id text,
    p_actor_id text,
    p_markup numeric,
    p_byok_fee_credits numeric default null,
    p_effective_from timestamptz default null,
    p_note text default null
)
returns bigint
language plpgsql
as $$
declare
    v_from timestamptz;
    v_id bigint;
begin
    perform ledger_require_org(p_org_id);
    if p_markup is not null then
        perform pricing_check_markup(p_markup);
    end if;
    if p_byok_fee_credits is not null then
        perform pricing_check_credit_price(p_byok_fee_credits, 'BYOK platform fee per call');
    end if;
    perform ledger_check_text(p_note, 'Note', 500, false);
    v_from := pricing_effective_from(p_effective_from);
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    insert into org_pricing_overrides (org_id, effective_from, markup, byok_fee_credits, note, created_by)
    values (p_org_id, v_from, p_markup, p_byok_fee_credits, coalesce(btrim(p_note), ''), p_actor_id)
    on conflict (org_id, effective_from) do nothing
    returning id into v_id;
    if v_id is null then
        raise exception using errcode = 'CB010',
            message = format('Organization %L already has a pricing override from %s: choose another time.',
                             p_org_id, ledger_time_text(v_from));
    end if;
    perform ledger_audit(p_org_id, p_actor_id, 'pricing.org_override_set', 'organization', p_org_id,
                         jsonb_build_object('id', v_id, 'effective_from', v_from, 'markup', p_markup,
                                            'byok_fee_credits', p_byok_fee_credits));
    return v_id;
end;
$$;


-- save_credit_package(p_actor_id, p_code, p_name, p_credits,
--                     p_bonus_credits, p_price, p_is_active, p_sort_order):
-- returns true when the package was created, false when an existing one was
-- changed.
-- Creates or edits a package; the audit row keeps the figures before and
-- after (past purchases keep theirs in billing history). Locks the package
-- row. Raises CB001 (credits, bonus or price), CB002, CB008, CB009 (code or
-- name).
create or replace function save_credit_package(
    p_actor_id text,
    p_code text,
    p_name text,
    p_credits numeric,
    p_bonus_credits numeric,
    p_price numeric,
    p_is_active boolean default true,
    p_sort_order integer default 0
)
returns boolean
language plpgsql
as $$
declare
    v_before credit_packages;
    v_after credit_packages;
begin
    if p_code is null or p_code !~ '^[a-z][a-z0-9_]{0,31}$' then
        raise exception using errcode = 'CB009',
            message = format('Package code must be a lowercase key like ''growth_50k'' (letters, digits, _; '
                             'at most 32 characters); got %L.', left(p_code, 80));
    end if;
    perform ledger_check_text(p_name, 'Package name', 100);
    perform ledger_check_credits(p_credits, 'Package credits');
    perform pricing_check_credit_price(p_bonus_credits, 'Bonus credits');
    perform ledger_check_money(p_price, 'Package price');
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    select * into v_before from credit_packages where code = p_code for update;
    insert into credit_packages (code, name, credits, bonus_credits, price, is_active, sort_order)
    values (p_code, btrim(p_name), p_credits, p_bonus_credits, p_price, coalesce(p_is_active, true),
            coalesce(p_sort_order, 0))
    on conflict (code) do update
       set name = excluded.name, credits = excluded.credits, bonus_credits = excluded.bonus_credits,
           price = excluded.price, is_active = excluded.is_active, sort_order = excluded.sort_order,
           updated_at = now()
    returning * into v_after;
    perform ledger_audit(null, p_actor_id,
                         case when v_before.code is null then 'pricing.package_created' else 'pricing.package_changed' end,
                         'credit_package', p_code,
                         jsonb_build_object('before', case when v_before.code is null then null
                                                           else to_jsonb(v_before) - 'created_at' - 'updated_at' end,
                                            'after', to_jsonb(v_after) - 'created_at' - 'updated_at'));
    return v_before.code is null;
end;
$$;


-- buy_credit_package(p_org_id, p_package_code, p_actor_id, p_external_ref):
-- returns the pool's total credits after the purchase.
-- A trusted caller's direct entry of a package sale paid outside an order
-- (a system admin or the operator; a customer orders the package with
-- create_credit_order instead, credited when its payment is recorded): adds
-- the package's credits plus its bonus to the pool for its price, as one
-- purchase (add_credits_to_pool: a paid order and one billing history row
-- describing the package). For a personal balance the credits are allocated
-- to its owner in the same transaction. p_external_ref makes it idempotent
-- like add_credits_to_pool. Locks the pool row (then, for a personal
-- balance, the owner's allocation). Raises CB002 (unknown package), CB008,
-- CB012 (package not on sale, or free) and whatever add_credits_to_pool
-- raises.
create or replace function buy_credit_package(
    p_org_id text,
    p_package_code text,
    p_actor_id text default null,
    p_external_ref text default null
)
returns numeric
language plpgsql
as $$
declare
    v_package credit_packages;
    v_owner text;
    v_description text;
begin
    perform ledger_authorize_credits_in(p_actor_id, p_org_id, 'record a package sale');
    select * into v_package from credit_packages where code = p_package_code;
    if not found then
        raise exception using errcode = 'CB002',
            message = format('Credit package %L does not exist.', left(p_package_code, 80));
    end if;
    if not v_package.is_active then
        raise exception using errcode = 'CB012',
            message = format('Credit package %L is no longer on sale.', v_package.name);
    end if;
    if v_package.price <= 0 then
        raise exception using errcode = 'CB012',
            message = format('Credit package %L has no price: free credits are a grant (grant_credits, with a reason).',
                             v_package.name);
    end if;
    v_description := format('Package %s: %s credits%s for $%s', v_package.name, ledger_amount_text(v_package.credits),
                            case when v_package.bonus_credits > 0
                                 then format(' + %s bonus', ledger_amount_text(v_package.bonus_credits)) else '' end,
                            ledger_amount_text(v_package.price));
    select personal_user_id into v_owner from organizations where id = p_org_id;
    if v_owner is not null then
        perform top_up_personal_balance(v_owner, v_package.credits + v_package.bonus_credits, v_package.price,
                                        p_actor_id, v_description, p_external_ref);
        return (select total_credits from credit_pools where org_id = p_org_id);
    end if;
    return add_credits_to_pool(p_org_id => p_org_id,
                               p_credits => v_package.credits + v_package.bonus_credits,
                               p_purchase_amount => v_package.price,
                               p_actor_id => p_actor_id,
                               p_description => v_description,
                               p_external_ref => p_external_ref);
end;
$$;


-- pricing_mode_of(p_org_id, p_at): returns (plan_code, pricing_mode) of the
-- subscription the organization had at p_at (default now: its live one), so
-- that a call reported late is judged by the plan it was made under;
-- (null, 'markup') without one, or for a null organization (null, 'mixed': a
-- bare price, no plan to restrict it). Raises nothing, takes no lock.
drop function if exists pricing_mode_of(text);

create or replace function pricing_mode_of(
    p_org_id text,
    p_at timestamptz default null,
    out plan_code text,
    out pricing_mode text
)
language sql
stable
as $$
    select s.plan, coalesce(p.pricing_mode, case when p_org_id is null then 'mixed' else 'markup' end)
      from (select 1) one
      left join lateral (
            select x.plan
              from organization_subscriptions x
             where x.org_id = p_org_id
               and case when p_at is null then x.status in ('trialing', 'active', 'past_due')
                        else x.created_at <= p_at and (x.canceled_at is null or x.canceled_at > p_at) end
             order by x.created_at desc, x.id
             limit 1
           ) s on true
      left join plans p on p.code = s.plan;
$$;


-- pricing_service_price_at(p_service_type, p_at): returns the fixed price
-- of the service type in force at p_at, or null when the type has none (a
-- model call: see pricing_model_price_at). Raises CB009 when the service is
-- withdrawn at p_at. Takes no lock.
create or replace function pricing_service_price_at(p_service_type text, p_at timestamptz)
returns service_prices
language plpgsql
stable
as $$
declare
    v_service service_prices;
begin
    select * into v_service from service_prices
     where service_type = p_service_type and effective_from <= p_at
     order by effective_from desc limit 1;
    if found and not v_service.is_available then
        raise exception using errcode = 'CB009',
            message = format('Service %L is not offered since %s.', p_service_type,
                             ledger_time_text(v_service.effective_from));
    end if;
    return v_service;
end;
$$;


-- pricing_model_price_at(p_model, p_at): returns the model's provider prices
-- in force at p_at. Raises CB002 when the model has no price then (the
-- message lists known models), CB009 when it is withdrawn. Takes no lock.
create or replace function pricing_model_price_at(p_model text, p_at timestamptz)
returns model_prices
language plpgsql
stable
as $$
declare
    v_model model_prices;
begin
    select * into v_model from model_prices
     where model = p_model and effective_from <= p_at
     order by effective_from desc limit 1;
    if not found then
        raise exception using errcode = 'CB002',
            message = format('No price for model %L at %s: ask a system admin to add it on the Pricing page '
                             '(known models: %s).', left(p_model, 200), ledger_time_text(p_at),
                             coalesce((select string_agg(m, ', ' order by m)
                                         from (select distinct model as m from model_prices
                                                where effective_from <= p_at and is_available limit 20) known),
                                      'none'));
    end if;
    if not v_model.is_available then
        raise exception using errcode = 'CB009',
            message = format('Model %L is withdrawn since %s.', p_model, ledger_time_text(v_model.effective_from));
    end if;
    return v_model;
end;
$$;


-- pricing_quote(p_org_id, p_plan_code, p_pricing_mode, p_service_type,
--               p_service_name, p_input_tokens, p_output_tokens, p_images,
--               p_requests, p_byok, p_at): returns (credits, explanation).
-- Prices one event under the given plan and pricing mode with the rules in
-- force at p_at (the organization's override, when p_org_id is given).
-- Checks its inputs. Raises CB001 (counts), CB002 (unknown model), CB009
-- (service withdrawn, model withdrawn, bad text), CB012 (the mode does not
-- allow this kind of call). Takes no lock.
create or replace function pricing_quote(
    p_org_id text,
    p_plan_code text,
    p_pricing_mode text,
    p_service_type text,
    p_service_name text,
    p_input_tokens numeric,
    p_output_tokens numeric,
    p_images numeric,
    p_requests numeric,
    p_byok boolean,
    p_at timestamptz,
    out credits numeric,
    out explanation jsonb
)
language plpgsql
stable
as $$
declare
    v_byok boolean := coalesce(p_byok, false);
    v_service service_prices;
    v_model model_prices;
    v_rule platform_pricing_rules;
    v_override org_pricing_overrides;
    v_cost numeric;
    v_unrounded numeric;
    v_base jsonb;
begin
    perform ledger_check_usage(p_service_type, p_service_name, null, '{}');
    perform pricing_check_count(p_input_tokens, 'Input tokens', 0, 1000000000);
    perform pricing_check_count(p_output_tokens, 'Output tokens', 0, 1000000000);
    perform pricing_check_count(p_images, 'Images', 0, 1000000);
    perform pricing_check_count(p_requests, 'Requests', 1, 1000000);
    v_base := jsonb_build_object(
        'service_type', p_service_type, 'service_name', p_service_name, 'at', p_at,
        'plan', p_plan_code, 'pricing_mode', p_pricing_mode, 'byok', v_byok,
        'usage', jsonb_build_object('input_tokens', p_input_tokens, 'output_tokens', p_output_tokens,
                                    'images', p_images, 'requests', p_requests),
        'credits_per_usd', 1000, 'rounding', 'half away from zero to 6 decimals, once, at the end');

    v_service := pricing_service_price_at(p_service_type, p_at);
    if v_service.id is not null then
        credits := round(v_service.credits * p_requests, 6);
        explanation := v_base || jsonb_build_object(
            'method', 'fixed_price', 'service_price_id', v_service.id,
            'price_effective_from', v_service.effective_from,
            'credits_per_call', v_service.credits, 'unrounded_credits', v_service.credits * p_requests,
            'credits', credits, 'dollars', credits * 0.001);
        return;
    end if;

    v_model := pricing_model_price_at(p_service_name, p_at);
    if v_byok and p_pricing_mode = 'markup' then
        raise exception using errcode = 'CB012',
            message = format('Plan %s runs on managed provider keys: calls with your own key (BYOK) need a '
                             'BYOK, Hybrid or Enterprise plan.', coalesce(p_plan_code, '(none)'));
    end if;
    if not v_byok and p_pricing_mode = 'passthrough' then
        raise exception using errcode = 'CB012',
            message = format('Plan %s passes calls through your own provider keys: a call on managed keys is not '
                             'included; send it with your key, or move to a Hybrid or Enterprise plan.',
                             coalesce(p_plan_code, '(none)'));
    end if;

    v_rule := pricing_platform_rule_at(p_at);
    if p_org_id is not null then
        select * into v_override from org_pricing_overrides
         where org_id = p_org_id and effective_from <= p_at
         order by effective_from desc limit 1;
    end if;
    -- what the provider bills for the call (multiplying by 0.001 keeps it exact)
    v_cost := p_input_tokens * v_model.usd_per_1k_input * 0.001
              + p_output_tokens * v_model.usd_per_1k_output * 0.001
              + p_images * v_model.usd_per_image
              + p_requests * v_model.usd_per_request;
    v_base := v_base || jsonb_build_object(
        'provider', v_model.provider, 'model', v_model.model, 'model_price_id', v_model.id,
        'price_effective_from', v_model.effective_from, 'platform_rule_id', v_rule.id,
        'org_override_id', v_override.id,
        'rates_usd', jsonb_build_object('per_1k_input', v_model.usd_per_1k_input,
                                        'per_1k_output', v_model.usd_per_1k_output,
                                        'per_image', v_model.usd_per_image,
                                        'per_request', v_model.usd_per_request),
        'provider_cost_usd', v_cost);
    if v_byok then
        v_unrounded := coalesce(v_override.byok_fee_credits, v_rule.byok_fee_credits) * p_requests;
        credits := round(v_unrounded, 6);
        explanation := v_base || jsonb_build_object(
            'method', 'byok_fee', 'provider_cost_billed_to', 'customer (own key)',
            'platform_fee_credits', coalesce(v_override.byok_fee_credits, v_rule.byok_fee_credits),
            'fee_source', case when v_override.byok_fee_credits is not null then 'organization' else 'platform' end,
            'unrounded_credits', v_unrounded, 'credits', credits, 'dollars', credits * 0.001);
    else
        v_unrounded := v_cost * 1000 * coalesce(v_override.markup, v_rule.markup);
        credits := round(v_unrounded, 6);
        explanation := v_base || jsonb_build_object(
            'method', 'provider_cost_markup', 'provider_cost_credits', v_cost * 1000,
            'markup', coalesce(v_override.markup, v_rule.markup),
            'markup_source', case when v_override.markup is not null then 'organization' else 'platform' end,
            'unrounded_credits', v_unrounded, 'credits', credits, 'dollars', credits * 0.001);
    end if;
end;
$$;


-- price_usage(p_org_id, p_service_type, p_service_name, p_input_tokens,
--             p_output_tokens, p_images, p_requests, p_byok, p_at): returns
-- (credits, explanation): what one metered event costs the organization at
-- p_at (default now) under its live plan, exactly, and the arithmetic
-- (jsonb: usage, rates, provider cost, markup or fee, unrounded and rounded
-- credits, dollars). p_org_id null prices with the platform's rules and no
-- plan restriction. Takes no lock. Raises CB002 (unknown organization or
-- model) and whatever pricing_quote raises.
create or replace function price_usage(
    p_org_id text,
    p_service_type text,
    p_service_name text,
    p_input_tokens numeric default 0,
    p_output_tokens numeric default 0,
    p_images numeric default 0,
    p_requests numeric default 1,
    p_byok boolean default false,
    p_at timestamptz default null,
    out credits numeric,
    out explanation jsonb
)
language plpgsql
stable
as $$
declare
    v_mode record;
begin
    if p_org_id is not null then
        perform ledger_require_org(p_org_id);
    end if;
    select * into v_mode from pricing_mode_of(p_org_id, p_at);
    select q.credits, q.explanation into credits, explanation
      from pricing_quote(p_org_id, v_mode.plan_code, v_mode.pricing_mode, p_service_type, p_service_name,
                         p_input_tokens, p_output_tokens, p_images, p_requests, p_byok,
                         pricing_check_moment(p_at)) q;
end;
$$;


-- pricing_calculator(p_org_id, p_service_type, p_service_name,
--                    p_input_tokens, p_output_tokens, p_images, p_requests,
--                    p_byok, p_at): one row per plan of the catalogue: what
-- the event costs under that plan (credits and dollars), or allowed = false
-- with the reason when the plan refuses that kind of call. p_org_id (may be
-- null) brings its pricing override. Takes no lock. Raises what
-- pricing_quote raises, except CB012, which becomes a row's note.
create or replace function pricing_calculator(
    p_org_id text,
    p_service_type text,
    p_service_name text,
    p_input_tokens numeric default 0,
    p_output_tokens numeric default 0,
    p_images numeric default 0,
    p_requests numeric default 1,
    p_byok boolean default false,
    p_at timestamptz default null
)
returns table (plan_code text, plan_name text, pricing_mode text, monthly_price numeric, allowed boolean,
               credits numeric, dollars numeric, note text, explanation jsonb)
language plpgsql
stable
as $$
declare
    v_plan plans;
    v_at timestamptz := pricing_check_moment(p_at);
    v_quote record;
begin
    if p_org_id is not null then
        perform ledger_require_org(p_org_id);
    end if;
    for v_plan in select * from plans order by sort_order, code loop
        plan_code := v_plan.code;
        plan_name := v_plan.name;
        pricing_mode := v_plan.pricing_mode;
        monthly_price := v_plan.monthly_price;
        begin
            select * into v_quote
              from pricing_quote(p_org_id, v_plan.code, v_plan.pricing_mode, p_service_type, p_service_name,
                                 p_input_tokens, p_output_tokens, p_images, p_requests, p_byok, v_at);
            allowed := true;
            credits := v_quote.credits;
            dollars := v_quote.credits * 0.001;
            note := '';
            explanation := v_quote.explanation;
        exception when sqlstate 'CB012' then
            allowed := false;
            credits := null;
            dollars := null;
            get stacked diagnostics note = message_text;
            explanation := null;
        end;
        return next;
    end loop;
end;
$$;
