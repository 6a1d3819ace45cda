-- The price tables' setters: model and service prices, the platform rule
-- and organizations' overrides, each a new effective-dated row (never a
-- change to a past one) with an audit row. The rules: the top of
-- 100_pricing_checks.sql.


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

comment on function set_model_price(text, text, text, numeric, numeric, numeric, numeric, timestamptz, boolean, text) is
    'set_model_price(p_actor_id, p_provider, p_model, p_usd_per_1k_input, p_usd_per_1k_output, p_usd_per_image, '
    'p_usd_per_request, p_effective_from, p_is_available, p_note): returns the new row''s id. Records a model''s '
    'provider prices from p_effective_from (default now) on; p_is_available false withdraws the model from then '
    'on. Locks nothing (the unique key serializes two edits at the same moment). Raises CB001 (bad rate), CB002 '
    '(unknown actor), CB008 (not a system admin), CB009 (bad provider, model, note or time), CB010 (a row for '
    'this model at this moment exists).';


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

comment on function set_service_price(text, text, numeric, timestamptz, boolean, text) is
    'set_service_price(p_actor_id, p_service_type, p_credits, p_effective_from, p_is_available, p_note): returns '
    'the new row''s id. Records a fixed-price service''s credits per call from p_effective_from (default now) on; '
    'p_is_available false withdraws it. Locks nothing. Raises CB001, CB002, CB008, CB009, CB010 (a row at this '
    'moment exists).';


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

comment on function pricing_platform_rule_at(timestamptz) is
    'pricing_platform_rule_at(p_at): returns the platform rule in force at p_at (the seed row is in force from '
    '2024-01-01). Raises CB002 when none is.';


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

comment on function set_platform_pricing_rule(text, numeric, numeric, integer, timestamptz, text) is
    'set_platform_pricing_rule(p_actor_id, p_markup, p_byok_fee_credits, p_hold_ttl_seconds, p_effective_from, '
    'p_note): returns the new row''s id. The platform''s markup, BYOK fee per call and default hold lifetime from '
    'p_effective_from (default now) on; a null figure keeps the one in force then. Locks nothing. Raises CB001, '
    'CB002, CB008, CB009, CB010.';


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

comment on function set_org_pricing_override(text, text, numeric, numeric, timestamptz, text) is
    'set_org_pricing_override(p_org_id, p_actor_id, p_markup, p_byok_fee_credits, p_effective_from, p_note): '
    'returns the new row''s id. The organization''s own markup and BYOK fee from p_effective_from (default now) '
    'on; a null figure follows the platform rule (both null: back to the platform''s rules). Locks nothing. '
    'Raises CB001, CB002 (unknown org or actor), CB008, CB009, CB010.';


-- pricing_rule_reach(p_actor_id, p_at): one row: how many organizations are
-- not closed (organizations), and how many of them have their own markup
-- (own_markup) or their own BYOK fee (own_fee) in force at p_at (default
-- now), per their latest override starting at or before then; a platform
-- rule reaches the others. p_actor_id: a system admin or the operator.
-- Locks nothing. Raises CB002, CB008.
create or replace function pricing_rule_reach(p_actor_id text, p_at timestamptz default null)
returns table (organizations bigint, own_markup bigint, own_fee bigint)
language plpgsql
stable
as $$
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    return query
        select count(*), count(*) filter (where v.markup is not null),
               count(*) filter (where v.byok_fee_credits is not null)
          from organizations o
          left join lateral (
                select x.markup, x.byok_fee_credits
                  from org_pricing_overrides x
                 where x.org_id = o.id and x.effective_from <= coalesce(p_at, now())
                 order by x.effective_from desc
                 limit 1
               ) v on true
         where o.status <> 'closed';
end;
$$;

comment on function pricing_rule_reach(text, timestamptz) is
    'pricing_rule_reach(p_actor_id, p_at): one row: how many organizations are not closed (organizations), and '
    'how many of them have their own markup (own_markup) or their own BYOK fee (own_fee) in force at p_at (default '
    'now), per their latest override starting at or before then; a platform rule reaches the others. p_actor_id: '
    'a system admin or the operator. Locks nothing. Raises CB002, CB008.';


-- pricing_price_reach(p_service_type, p_model, p_days, p_actor_id): one row:
-- how many organizations were charged for calls of this fixed-price service
-- type (p_model null) or to this model (p_service_type null) over the last
-- p_days days (organizations), and how many such calls (calls): whom a new
-- price of it reaches, going by recent use. p_actor_id: a system admin or the
-- operator. Locks nothing. Raises CB002, CB008.
create or replace function pricing_price_reach(p_service_type text, p_model text, p_days integer, p_actor_id text)
returns table (organizations bigint, calls bigint)
language plpgsql
stable
as $$
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    return query
        select count(distinct c.org_id), count(*)
          from credit_usage_attribution c
         where c.created_at >= now() - make_interval(days => p_days)
           and (p_service_type is null or c.service_type = p_service_type)
           and (p_model is null or c.service_name = p_model)
           and (p_service_type is not null or p_model is not null);
end;
$$;

comment on function pricing_price_reach(text, text, integer, text) is
    'pricing_price_reach(p_service_type, p_model, p_days, p_actor_id): one row: how many organizations were '
    'charged for calls of this fixed-price service type (p_model null) or to this model (p_service_type null) over '
    'the last p_days days (organizations), and how many such calls (calls): whom a new price of it reaches, going '
    'by recent use. p_actor_id: a system admin or the operator. Locks nothing. Raises CB002, CB008.';
