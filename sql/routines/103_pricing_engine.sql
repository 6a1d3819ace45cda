-- The pricing engine: which calls a plan allows, the prices in force at a
-- moment, and pricing_quote / price_usage / pricing_calculator, which turn
-- a metered event into credits and explain the arithmetic. The rules: the
-- top of 100_pricing_checks.sql.


-- pricing_mode_of(p_org_id, p_at): returns (plan_code, pricing_mode) of the
-- subscription the organization had at p_at (default now: its live one), so
-- that a call reported late is judged by the plan it was made under;
-- (null, 'markup') without one, or for a null organization (null, 'mixed': a
-- bare price, no plan to restrict it). Raises nothing, takes no lock.
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

comment on function pricing_mode_of(text, timestamptz) is
    'pricing_mode_of(p_org_id, p_at): returns (plan_code, pricing_mode) of the subscription the organization had '
    'at p_at (default now: its live one), so that a call reported late is judged by the plan it was made under; '
    '(null, ''markup'') without one, or for a null organization (null, ''mixed'': a bare price, no plan to '
    'restrict it). Raises nothing, takes no lock.';


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

comment on function pricing_service_price_at(text, timestamptz) is
    'pricing_service_price_at(p_service_type, p_at): returns the fixed price of the service type in force at '
    'p_at, or null when the type has none (a model call: see pricing_model_price_at). Raises CB009 when the '
    'service is withdrawn at p_at. Takes no lock.';


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

comment on function pricing_model_price_at(text, timestamptz) is
    'pricing_model_price_at(p_model, p_at): returns the model''s provider prices in force at p_at. Raises CB002 '
    'when the model has no price then (the message lists known models), CB009 when it is withdrawn. Takes no '
    'lock.';


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

comment on function pricing_quote(text, text, text, text, text, numeric, numeric, numeric, numeric, boolean, timestamptz) is
    'pricing_quote(p_org_id, p_plan_code, p_pricing_mode, p_service_type, p_service_name, p_input_tokens, '
    'p_output_tokens, p_images, p_requests, p_byok, p_at): returns (credits, explanation). Prices one event under '
    'the given plan and pricing mode with the rules in force at p_at (the organization''s override, when p_org_id '
    'is given). Checks its inputs. Raises CB001 (counts), CB002 (unknown model), CB009 (service withdrawn, model '
    'withdrawn, bad text), CB012 (the mode does not allow this kind of call). Takes no lock.';


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

comment on function price_usage(text, text, text, numeric, numeric, numeric, numeric, boolean, timestamptz) is
    'price_usage(p_org_id, p_service_type, p_service_name, p_input_tokens, p_output_tokens, p_images, p_requests, '
    'p_byok, p_at): returns (credits, explanation): what one metered event costs the organization at p_at '
    '(default now) under its live plan, exactly, and the arithmetic (jsonb: usage, rates, provider cost, markup '
    'or fee, unrounded and rounded credits, dollars). p_org_id null prices with the platform''s rules and no plan '
    'restriction. Takes no lock. Raises CB002 (unknown organization or model) and whatever pricing_quote raises.';


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

comment on function pricing_calculator(text, text, text, numeric, numeric, numeric, numeric, boolean, timestamptz) is
    'pricing_calculator(p_org_id, p_service_type, p_service_name, p_input_tokens, p_output_tokens, p_images, '
    'p_requests, p_byok, p_at): one row per plan of the catalogue: what the event costs under that plan (credits '
    'and dollars), or allowed = false with the reason when the plan refuses that kind of call. p_org_id (may be '
    'null) brings its pricing override. Takes no lock. Raises what pricing_quote raises, except CB012, which '
    'becomes a row''s note.';
