-- The price tables as the system admins' pricing screen reads them
-- (billing_core.pricing): each read authorizes its acting user here, with the
-- same errors as the setters (ledger_authorize: CB002 unknown actor, CB008
-- not a system admin; a null actor is the operator, accepted on the owner's
-- connection only). The credit packages are a public catalogue.


-- model_price_list(p_actor_id, p_at, p_history): model prices in force at
-- p_at (null: now), one row per model; p_history: every row, scheduled ones
-- too. By provider, model, effective_from. System admins and the operator
-- only. Locks nothing. Raises CB002, CB008.
create or replace function model_price_list(p_actor_id text, p_at timestamptz default null,
                                            p_history boolean default false)
returns setof model_prices
language plpgsql
stable
as $$
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    return query
        select m.* from model_prices m
         where p_history
            or m.id = (select c.id from model_prices c
                        where c.model = m.model and c.effective_from <= coalesce(p_at, now())
                        order by c.effective_from desc limit 1)
         order by m.provider, m.model, m.effective_from;
end;
$$;

comment on function model_price_list(text, timestamptz, boolean) is
    'model_price_list(p_actor_id, p_at, p_history): model prices in force at p_at (null: now), one row per model; '
    'p_history: every row, scheduled ones too. By provider, model, effective_from. System admins and the '
    'operator only. Locks nothing. Raises CB002, CB008.';


-- service_price_list(p_actor_id, p_history): fixed-price services in force
-- now, one row each; p_history: every row, scheduled ones too. System admins
-- and the operator only. Locks nothing. Raises CB002, CB008.
create or replace function service_price_list(p_actor_id text, p_history boolean default false)
returns setof service_prices
language plpgsql
stable
as $$
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    return query
        select s.* from service_prices s
         where p_history
            or s.id = (select c.id from service_prices c
                        where c.service_type = s.service_type and c.effective_from <= now()
                        order by c.effective_from desc limit 1)
         order by s.service_type, s.effective_from;
end;
$$;

comment on function service_price_list(text, boolean) is
    'service_price_list(p_actor_id, p_history): fixed-price services in force now, one row each; p_history: every '
    'row, scheduled ones too. System admins and the operator only. Locks nothing. Raises CB002, CB008.';


-- platform_rule_list(p_actor_id): every platform rule (markup, BYOK fee,
-- hold lifetime), newest first; in_force marks the one in force now. System
-- admins and the operator only. Locks nothing. Raises CB002, CB008.
create or replace function platform_rule_list(p_actor_id text)
returns table (id bigint, effective_from timestamptz, markup numeric, byok_fee_credits numeric,
               hold_ttl_seconds integer, in_force boolean, note text, created_by text, created_at timestamptz)
language plpgsql
stable
as $$
#variable_conflict use_column
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    return query
        select r.id, r.effective_from, r.markup, r.byok_fee_credits, r.hold_ttl_seconds,
               r.id = (pricing_platform_rule_at(now())).id, r.note, r.created_by, r.created_at
          from platform_pricing_rules r
         order by r.effective_from desc;
end;
$$;

comment on function platform_rule_list(text) is
    'platform_rule_list(p_actor_id): every platform rule (markup, BYOK fee, hold lifetime), newest first; in_force '
    'marks the one in force now. System admins and the operator only. Locks nothing. Raises CB002, CB008.';


-- org_pricing_override_list(p_actor_id, p_org_id): the organizations'
-- pricing overrides (all, or p_org_id's), by organization name, newest
-- first. System admins and the operator only. Locks nothing. Raises CB002,
-- CB008.
create or replace function org_pricing_override_list(p_actor_id text, p_org_id text default null)
returns table (org_id text, org_name text, id bigint, effective_from timestamptz, markup numeric,
               byok_fee_credits numeric, note text, created_by text, created_at timestamptz)
language plpgsql
stable
as $$
#variable_conflict use_column
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    return query
        select v.org_id, o.name, v.id, v.effective_from, v.markup, v.byok_fee_credits, v.note, v.created_by,
               v.created_at
          from org_pricing_overrides v
          join organizations o on o.id = v.org_id
         where p_org_id is null or v.org_id = p_org_id
         order by o.name, v.org_id, v.effective_from desc;
end;
$$;

comment on function org_pricing_override_list(text, text) is
    'org_pricing_override_list(p_actor_id, p_org_id): the organizations'' pricing overrides (all, or p_org_id''s), '
    'by organization name, newest first. System admins and the operator only. Locks nothing. Raises CB002, CB008.';


-- credit_package_list(p_active_only): the credit packages (a public
-- catalogue, like the plans) in display order, with their total credits and
-- what 1,000 credits cost in each; p_active_only: those on sale. Locks
-- nothing. Raises nothing.
create or replace function credit_package_list(p_active_only boolean default false)
returns table (code text, name text, credits numeric, bonus_credits numeric, total_credits numeric, price numeric,
               usd_per_1000_credits numeric, is_active boolean, sort_order integer)
language sql
stable
as $$
    select k.code, k.name, k.credits, k.bonus_credits, k.credits + k.bonus_credits, k.price,
           round(k.price * 1000 / (k.credits + k.bonus_credits), 4), k.is_active, k.sort_order
      from credit_packages k
     where k.is_active or not p_active_only
     order by k.sort_order, k.code;
$$;

comment on function credit_package_list(boolean) is
    'credit_package_list(p_active_only): the credit packages (a public catalogue, like the plans) in display '
    'order, with their total credits and what 1,000 credits cost in each; p_active_only: those on sale. Locks '
    'nothing. Raises nothing.';


-- pricing_calculator_for(p_actor_id, p_org_id, p_service_type, ...): what
-- pricing_calculator answers (the event priced under each plan), for a
-- system admin or the operator. Locks nothing. Raises CB002, CB008 and what
-- pricing_calculator raises.
create or replace function pricing_calculator_for(
    p_actor_id text,
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
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    return query
        select * from pricing_calculator(p_org_id, p_service_type, p_service_name, p_input_tokens, p_output_tokens,
                                         p_images, p_requests, p_byok, p_at);
end;
$$;

comment on function pricing_calculator_for(text, text, text, text, numeric, numeric, numeric, numeric, boolean,
                                           timestamptz) is
    'pricing_calculator_for(p_actor_id, p_org_id, p_service_type, p_service_name, p_input_tokens, p_output_tokens, '
    'p_images, p_requests, p_byok, p_at): what pricing_calculator answers (the event priced under each plan), for '
    'a system admin or the operator. Locks nothing. Raises CB002, CB008 and what pricing_calculator raises.';
