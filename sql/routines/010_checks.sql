-- Shared checks used by every entry point of the ledger.
--
-- Routine files are re-applied, in name order, whenever one of them changes.
--
-- Refusals raise these SQLSTATEs (billing_core maps each to an exception):
--   CB001 invalid amount         zero, negative, NaN, too large, too precise
--   CB002 not found              unknown organization or user
--   CB003 not a member           user does not belong to the organization
--   CB004 insufficient pool      pool's available credits are short
--   CB005 insufficient credits   member's allocation is short (or missing)
--   CB006 allocation inactive    the member's allocation was closed
--   CB007 request conflict       request id / reference reused for another operation
--   CB008 permission denied      acting user lacks the role
--   CB009 invalid input          malformed text or metadata
--   CB010 already exists         id or membership already taken
--   CB011 organization inactive  suspended or closed organization
--   CB012 rule violated          an action that would break a business rule
--                                (removing the last admin, say)
--   CB013 rate limited           too many changes in a window (an org admin's
--                                subscription changes: 5 an hour); the
--                                message says when to try again
--   CB014 hold not open          a credit hold that expired, was settled or released
--   CB015 unauthenticated        an API key that is unknown or revoked
-- Every refusal is raised before anything is written, or rolls back what the
-- call wrote, so a refused call changes nothing.


-- ledger_amount_text(p_amount): an amount as a person reads it in a message:
-- no trailing zeros, scientific notation past 15 digits, 'Infinity' and
-- '-Infinity' as such. Raises nothing.
create or replace function ledger_amount_text(p_amount numeric)
returns text
language sql
immutable
as $$
    select case
        when p_amount is null then 'nothing'
        when p_amount = 'NaN' or abs(p_amount) = 'Infinity' then p_amount::text
        when abs(p_amount) < 1e15 then trim_scale(p_amount)::text
        else btrim(to_char(p_amount, '9.99EEEE'))
    end;
$$;

comment on function ledger_amount_text(numeric) is
    'ledger_amount_text(p_amount): an amount as a person reads it in a message: no trailing zeros, scientific '
    'notation past 15 digits, ''Infinity'' and ''-Infinity'' as such. Raises nothing.';


-- ledger_check_credits(p_credits, p_what): returns nothing.
-- Raises CB001 unless p_credits is a finite number > 0, at most
-- 1,000,000,000,000 and with at most 6 decimal places (the message says
-- which: missing, not a number, infinite, not above 0, too large, too
-- precise). p_what names the amount in the message.
create or replace function ledger_check_credits(p_credits numeric, p_what text)
returns void
language plpgsql
immutable
as $$
begin
    if p_credits is null then
        raise exception using errcode = 'CB001',
            message = format('%s is missing: give a number of credits greater than 0.', p_what);
    end if;
    if p_credits = 'NaN' then
        raise exception using errcode = 'CB001',
            message = format('%s is not a number: give a number of credits greater than 0.', p_what);
    end if;
    if abs(p_credits) = 'Infinity' then
        raise exception using errcode = 'CB001',
            message = format('%s is infinite (got %s): give a finite number of credits greater than 0.',
                             p_what, p_credits);
    end if;
    if p_credits <= 0 then
        raise exception using errcode = 'CB001',
            message = format('%s must be greater than 0 (got %s).', p_what, ledger_amount_text(p_credits));
    end if;
    if p_credits > 1000000000000 then
        raise exception using errcode = 'CB001',
            message = format('%s is too large: at most 1,000,000,000,000 credits per operation (got %s).',
                             p_what, ledger_amount_text(p_credits));
    end if;
    if p_credits <> round(p_credits, 6) then
        raise exception using errcode = 'CB001',
            message = format('%s has more than 6 decimal places (got %s).', p_what, ledger_amount_text(p_credits));
    end if;
end;
$$;

comment on function ledger_check_credits(numeric, text) is
    'ledger_check_credits(p_credits, p_what): returns nothing. Raises CB001 unless p_credits is a finite number > '
    '0, at most 1,000,000,000,000 and with at most 6 decimal places (the message says which: missing, not a '
    'number, infinite, not above 0, too large, too precise). p_what names the amount in the message.';


-- ledger_check_money(p_amount, p_what): returns nothing.
-- Raises CB001 unless p_amount is a finite number >= 0, at most
-- 10,000,000,000 and with at most 4 decimal places.
create or replace function ledger_check_money(p_amount numeric, p_what text)
returns void
language plpgsql
immutable
as $$
begin
    if p_amount is null then
        raise exception using errcode = 'CB001',
            message = format('%s is missing: give an amount in dollars (0 for a free grant).', p_what);
    end if;
    if p_amount = 'NaN' then
        raise exception using errcode = 'CB001',
            message = format('%s is not a number: give an amount in dollars.', p_what);
    end if;
    if abs(p_amount) = 'Infinity' then
        raise exception using errcode = 'CB001',
            message = format('%s is infinite (got %s): give a finite amount in dollars.', p_what, p_amount);
    end if;
    if p_amount < 0 then
        raise exception using errcode = 'CB001',
            message = format('%s cannot be negative (got %s).', p_what, ledger_amount_text(p_amount));
    end if;
    if p_amount > 10000000000 then
        raise exception using errcode = 'CB001',
            message = format('%s is too large: at most $10,000,000,000 (got %s).', p_what, ledger_amount_text(p_amount));
    end if;
    if p_amount <> round(p_amount, 4) then
        raise exception using errcode = 'CB001',
            message = format('%s has more than 4 decimal places (got %s).', p_what, ledger_amount_text(p_amount));
    end if;
end;
$$;

comment on function ledger_check_money(numeric, text) is
    'ledger_check_money(p_amount, p_what): returns nothing. Raises CB001 unless p_amount is a finite number >= 0, '
    'at most 10,000,000,000 and with at most 4 decimal places.';


-- ledger_check_text(p_value, p_what, p_max_length, p_required): returns nothing.
-- Raises CB009 when a required value is missing or blank, when the value is
-- longer than p_max_length characters, or when it holds control characters.
-- Quotes, HTML and SQL are ordinary text here: values travel as parameters.
create or replace function ledger_check_text(
    p_value text,
    p_what text,
    p_max_length integer,
    p_required boolean default true
)
returns void
language plpgsql
immutable
as $$
begin
    if p_value is null or btrim(p_value) = '' then
        if p_required then
            raise exception using errcode = 'CB009', message = format('%s is missing.', p_what);
        end if;
        return;
    end if;
    if length(p_value) > p_max_length then
        raise exception using errcode = 'CB009',
            message = format('%s is too long: at most %s characters (got %s).',
                             p_what, p_max_length, length(p_value));
    end if;
    if p_value ~ '[[:cntrl:]]' then
        raise exception using errcode = 'CB009',
            message = format('%s contains control characters (line breaks, tabs...); remove them.', p_what);
    end if;
end;
$$;

comment on function ledger_check_text(text, text, integer, boolean) is
    'ledger_check_text(p_value, p_what, p_max_length, p_required): returns nothing. Raises CB009 when a required '
    'value is missing or blank, when the value is longer than p_max_length characters, or when it holds control '
    'characters. Quotes, HTML and SQL are ordinary text here: values travel as parameters.';


-- ledger_check_id(p_id, p_what): returns nothing.
-- Raises CB009 unless p_id is 1-128 characters with no spaces or control
-- characters (the format of organization and user ids).
create or replace function ledger_check_id(p_id text, p_what text)
returns void
language plpgsql
immutable
as $$
begin
    if p_id is null or p_id = '' then
        raise exception using errcode = 'CB009', message = format('%s is missing.', p_what);
    end if;
    if length(p_id) > 128 or p_id ~ '[[:space:][:cntrl:]]' then
        raise exception using errcode = 'CB009',
            message = format('%s must be 1 to 128 characters without spaces (got %L).',
                             p_what, left(p_id, 140));
    end if;
end;
$$;

comment on function ledger_check_id(text, text) is
    'ledger_check_id(p_id, p_what): returns nothing. Raises CB009 unless p_id is 1-128 characters with no spaces '
    'or control characters (the format of organization and user ids).';


-- ledger_require_org(p_org_id, p_must_be_active): returns the organization's status.
-- Raises CB002 for an unknown organization and, when p_must_be_active,
-- CB011 for a suspended or closed one. Takes no lock.
create or replace function ledger_require_org(p_org_id text, p_must_be_active boolean default false)
returns text
language plpgsql
stable
as $$
declare
    v_status text;
begin
    select status into v_status from organizations where id = p_org_id;
    if not found then
        raise exception using errcode = 'CB002',
            message = format('Organization %L does not exist.', p_org_id);
    end if;
    if p_must_be_active and v_status <> 'active' then
        raise exception using errcode = 'CB011',
            message = format('Organization %L is %s: its credits cannot be used or changed.',
                             p_org_id, v_status);
    end if;
    return v_status;
end;
$$;

comment on function ledger_require_org(text, boolean) is
    'ledger_require_org(p_org_id, p_must_be_active): returns the organization''s status. Raises CB002 for an '
    'unknown organization and, when p_must_be_active, CB011 for a suspended or closed one. Takes no lock.';


-- ledger_require_user(p_user_id, p_what): returns nothing.
-- Raises CB002 when no user has this id. Takes no lock.
create or replace function ledger_require_user(p_user_id text, p_what text default 'User')
returns void
language plpgsql
stable
as $$
begin
    if p_user_id is null or not exists (select 1 from users where id = p_user_id) then
        raise exception using errcode = 'CB002',
            message = format('%s %L does not exist.', p_what, p_user_id);
    end if;
end;
$$;

comment on function ledger_require_user(text, text) is
    'ledger_require_user(p_user_id, p_what): returns nothing. Raises CB002 when no user has this id. Takes no '
    'lock.';


-- ledger_require_member(p_org_id, p_user_id): returns the member's role.
-- Raises CB002 for an unknown user, CB003 when the user is not a member of
-- the organization. Takes no lock.
create or replace function ledger_require_member(p_org_id text, p_user_id text)
returns text
language plpgsql
stable
as $$
declare
    v_role text;
begin
    select role into v_role from organization_members where org_id = p_org_id and user_id = p_user_id;
    if not found then
        perform ledger_require_user(p_user_id);
        raise exception using errcode = 'CB003',
            message = format('User %L is not a member of organization %L.', p_user_id, p_org_id);
    end if;
    return v_role;
end;
$$;

comment on function ledger_require_member(text, text) is
    'ledger_require_member(p_org_id, p_user_id): returns the member''s role. Raises CB002 for an unknown user, '
    'CB003 when the user is not a member of the organization. Takes no lock.';


-- ledger_role_in(p_actor_id, p_org_id): returns 'system_admin', 'admin',
-- 'member' or null (no role). Raises nothing, takes no lock.
create or replace function ledger_role_in(p_actor_id text, p_org_id text)
returns text
language sql
stable
as $$
    select case
        when (select is_system_admin from users where id = p_actor_id) then 'system_admin'
        else (select role from organization_members where org_id = p_org_id and user_id = p_actor_id)
    end;
$$;

comment on function ledger_role_in(text, text) is
    'ledger_role_in(p_actor_id, p_org_id): returns ''system_admin'', ''admin'', ''member'' or null (no role). '
    'Raises nothing, takes no lock.';


-- ledger_is_operator(): true when the calling connection is the operator's:
-- the database owner's own login (the CLI without --as, cron jobs,
-- migrations) with no SET ROLE in effect. Decided from the CALLER, not from
-- current_user (inside a SECURITY DEFINER function current_user is always the
-- owner): current_setting('role') is the SET ROLE value ('none' when none is
-- set; SECURITY DEFINER does not change it, checked on PostgreSQL 15 and 18),
-- session_user the login. The owner is the owner of the schema's tables
-- (whoever ran the migrations); a superuser login, or a login that is a
-- member of the owner, counts as the owner. The app's connections (SET ROLE
-- billing_app) and metered services' logins (members of billing_service)
-- are never the operator. Raises nothing, takes no lock.
create or replace function ledger_is_operator()
returns boolean
language sql
stable
as $$
    select current_setting('role') = 'none'
       and (coalesce((select r.rolsuper from pg_catalog.pg_roles r where r.rolname = session_user), false)
            or pg_catalog.pg_has_role(session_user,
                                      (select c.relowner from pg_catalog.pg_class c
                                        where c.oid = 'public.organizations'::pg_catalog.regclass),
                                      'MEMBER'));
$$;

comment on function ledger_is_operator() is
    'ledger_is_operator(): true when the calling connection is the operator''s: the database owner''s own login '
    '(the CLI without --as, cron jobs, migrations) with no SET ROLE in effect. Decided from the CALLER, not from '
    'current_user (inside a SECURITY DEFINER function current_user is always the owner): '
    'current_setting(''role'') is the SET ROLE value (''none'' when none is set; SECURITY DEFINER does not change '
    'it, checked on PostgreSQL 15 and 18), session_user the login. The owner is the owner of the schema''s tables '
    '(whoever ran the migrations); a superuser login, or a login that is a member of the owner, counts as the '
    'owner. The app''s connections (SET ROLE billing_app) and metered services'' logins (members of '
    'billing_service) are never the operator. Raises nothing, takes no lock.';


-- ledger_require_actor(p_actor_id): returns nothing. Raises CB008 for an
-- empty actor id (a screen or the CLI with no one logged in: not an unknown
-- user), CB002 for an unknown or null one. Takes no lock.
create or replace function ledger_require_actor(p_actor_id text)
returns void
language plpgsql
stable
as $$
begin
    if btrim(p_actor_id) = '' then
        raise exception using errcode = 'CB008', message = 'No acting user: log in first.';
    end if;
    perform ledger_require_user(p_actor_id, 'Acting user');
end;
$$;

comment on function ledger_require_actor(text) is
    'ledger_require_actor(p_actor_id): returns nothing. Raises CB008 for an empty actor id (a screen or the CLI '
    'with no one logged in: not an unknown user), CB002 for an unknown or null one. Takes no lock.';


-- ledger_authorize(p_actor_id, p_org_id, p_required): returns nothing.
-- p_required is 'system_admin', 'admin' (of p_org_id) or 'member' (of p_org_id).
-- A system admin passes every check; an org admin passes 'member' checks of
-- their organization. A null actor is the operator: it passes only on the
-- operator's connection (ledger_is_operator(): the owner's login without SET
-- ROLE); from the app's or a metered service's connection it raises CB008.
-- Raises CB002 for an unknown actor, CB008 when the actor lacks the role
-- or is empty (no one logged in). Takes no lock.
create or replace function ledger_authorize(p_actor_id text, p_org_id text, p_required text)
returns void
language plpgsql
stable
as $$
declare
    v_role text;
begin
    if p_actor_id is null then
        if ledger_is_operator() then
            return;
        end if;
        raise exception using errcode = 'CB008',
            message = 'An operator action (no acting user) is only accepted on the database owner''s connection: '
                      'pass the acting user''s id.';
    end if;
    perform ledger_require_actor(p_actor_id);
    v_role := ledger_role_in(p_actor_id, p_org_id);
    if v_role = 'system_admin'
       or (p_required = 'admin' and v_role = 'admin')
       or (p_required = 'member' and v_role in ('admin', 'member')) then
        return;
    end if;
    raise exception using errcode = 'CB008',
        message = case p_required
            when 'system_admin' then format('User %L is not a system admin.', p_actor_id)
            when 'admin' then format('User %L is not an admin of organization %L.', p_actor_id, p_org_id)
            else format('User %L is not a member of organization %L.', p_actor_id, p_org_id)
        end;
end;
$$;

comment on function ledger_authorize(text, text, text) is
    'ledger_authorize(p_actor_id, p_org_id, p_required): returns nothing. p_required is ''system_admin'', '
    '''admin'' (of p_org_id) or ''member'' (of p_org_id). A system admin passes every check; an org admin passes '
    '''member'' checks of their organization. A null actor is the operator: it passes only on the operator''s '
    'connection (ledger_is_operator(): the owner''s login without SET ROLE); from the app''s or a metered '
    'service''s connection it raises CB008. Raises CB002 for an unknown actor, CB008 when the actor lacks the '
    'role or is empty (no one logged in). Takes no lock.';


-- ledger_api_key_id(): returns the id of the API key the current
-- transaction acts through (billing_core sets 'billing.api_key_id',
-- transaction-local, inside database.acting_through_key), or null. The one
-- reader of that setting: audit details and attribution metadata carry it.
-- Raises nothing.
create or replace function ledger_api_key_id()
returns text
language sql
stable
as $$
    select nullif(current_setting('billing.api_key_id', true), '');
$$;

comment on function ledger_api_key_id() is
    'ledger_api_key_id(): returns the id of the API key the current transaction acts through (billing_core sets '
    '''billing.api_key_id'', transaction-local, inside database.acting_through_key), or null. The one reader of '
    'that setting: audit details and attribution metadata carry it. Raises nothing.';


-- ledger_authorize_scope(p_actor_id, p_org_id): returns nothing. The check
-- of a read that covers one organization (p_org_id: it must exist; its
-- admins) or every organization (p_org_id null: system admins), as
-- ledger_authorize decides (system admins pass; a null actor only on the
-- operator's connection). Raises CB002 (unknown organization or actor),
-- CB008. Takes no lock.
create or replace function ledger_authorize_scope(p_actor_id text, p_org_id text)
returns void
language plpgsql
stable
as $$
begin
    if p_org_id is not null then
        perform ledger_require_org(p_org_id);
    end if;
    perform ledger_authorize(p_actor_id, p_org_id, case when p_org_id is null then 'system_admin' else 'admin' end);
end;
$$;

comment on function ledger_authorize_scope(text, text) is
    'ledger_authorize_scope(p_actor_id, p_org_id): returns nothing. The check of a read that covers one '
    'organization (p_org_id: it must exist; its admins) or every organization (p_org_id null: system admins), as '
    'ledger_authorize decides (system admins pass; a null actor only on the operator''s connection). Raises CB002 '
    '(unknown organization or actor), CB008. Takes no lock.';


-- ledger_audit(...): appends one row to audit_log; its details carry
-- "api_key_id" when the transaction acts through an API key
-- (ledger_api_key_id). Locks nothing.
create or replace function ledger_audit(
    p_org_id text,
    p_actor_id text,
    p_action text,
    p_target_type text,
    p_target_id text,
    p_details jsonb default '{}'
)
returns void
language sql
as $$
    insert into audit_log (org_id, actor_id, action, target_type, target_id, details)
    values (p_org_id, p_actor_id, p_action, p_target_type, p_target_id,
            coalesce(p_details, '{}')
            || jsonb_strip_nulls(jsonb_build_object('api_key_id', ledger_api_key_id())));
$$;

comment on function ledger_audit(text, text, text, text, text, jsonb) is
    'ledger_audit(...): appends one row to audit_log; its details carry "api_key_id" when the transaction acts '
    'through an API key (ledger_api_key_id). Locks nothing.';
