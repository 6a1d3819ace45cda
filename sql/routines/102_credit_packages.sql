-- Credit packages: the catalogue a system admin edits, and buying one. The
-- rules: the top of 100_pricing_checks.sql.


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

comment on function save_credit_package(text, text, text, numeric, numeric, numeric, boolean, integer) is
    'save_credit_package(p_actor_id, p_code, p_name, p_credits, p_bonus_credits, p_price, p_is_active, '
    'p_sort_order): returns true when the package was created, false when an existing one was changed. Creates or '
    'edits a package; the audit row keeps the figures before and after (past purchases keep theirs in billing '
    'history). Locks the package row. Raises CB001 (credits, bonus or price), CB002, CB008, CB009 (code or name).';


-- ledger_package_on_sale(p_package_code): returns the credit package that
-- may be sold (ordered, or recorded as a sale by a trusted caller). Locks
-- nothing. Raises CB002 (unknown package), CB012 (no longer on sale, or free:
-- free credits are a grant with a reason).
create or replace function ledger_package_on_sale(p_package_code text)
returns credit_packages
language plpgsql
stable
as $$
declare
    v_package credit_packages;
begin
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
            message = format('Credit package %L has no price: free credits are a grant by a system admin '
                             '(grant_credits, with a reason).', v_package.name);
    end if;
    return v_package;
end;
$$;

comment on function ledger_package_on_sale(text) is
    'ledger_package_on_sale(p_package_code): returns the credit package that may be sold (ordered, or recorded '
    'as a sale by a trusted caller). Locks nothing. Raises CB002 (unknown package), CB012 (no longer on sale, or '
    'free: free credits are a grant with a reason).';


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
    v_package := ledger_package_on_sale(p_package_code);
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

comment on function buy_credit_package(text, text, text, text) is
    'buy_credit_package(p_org_id, p_package_code, p_actor_id, p_external_ref): returns the pool''s total credits '
    'after the purchase. A trusted caller''s direct entry of a package sale paid outside an order (a system admin '
    'or the operator; a customer orders the package with create_credit_order instead, credited when its payment '
    'is recorded): adds the package''s credits plus its bonus to the pool for its price, as one purchase '
    '(add_credits_to_pool: a paid order and one billing history row describing the package). For a personal '
    'balance the credits are allocated to its owner in the same transaction. p_external_ref makes it idempotent '
    'like add_credits_to_pool. Locks the pool row (then, for a personal balance, the owner''s allocation). Raises '
    'CB002 (unknown package), CB008, CB012 (package not on sale, or free) and whatever add_credits_to_pool '
    'raises.';
