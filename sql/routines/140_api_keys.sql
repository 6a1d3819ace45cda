-- API keys (issue 10): created, listed and revoked by the admins who may
-- make them, and checked on every request of the HTTP API.
--
-- A key acts as the user who created it. The token (cbk_<prefix>_<secret>)
-- is made by billing_core (billing_core/api_keys.py) and never stored: the
-- database holds its public prefix and the sha256 digest of the whole token.
-- Organization keys: made by an admin of the organization (or a system
-- admin), act within that organization only, and only while their creator is
-- still its admin (or a system admin). Service keys: made by a system admin,
-- charge for users of any organization or of their listed organizations only
-- (with system_scope they also read the System endpoints and act on every
-- organization's endpoints; with listed organizations, on those
-- organizations' endpoints), and work only while their creator is a system
-- admin.
--
-- Rate limits: per key and class of use, each with a default per kind
-- (ledger_api_key_limits), counted in api_key_rate_windows across every
-- process that shares the database (ledger_api_key_count). Refused requests
-- raise CB013 with DETAIL 'retry_after=<seconds>'.


-- ledger_api_key_limits(p_kind, p_reads, p_writes, p_subscriptions,
-- p_charges): returns the limits in force as a JSON object (the key's own,
-- else its kind's default): reads_per_minute, writes_per_minute,
-- subscription_changes_per_hour and, for service keys, charges_per_second.
-- Defaults: organization keys 100 reads and 20 writes a minute, 5
-- subscription changes an hour; service keys (metered traffic) 6000 reads and
-- 1200 writes a minute, 60 subscription changes an hour, 500 charges a
-- second. The one place the defaults live. Raises nothing.
create or replace function ledger_api_key_limits(
    p_kind text,
    p_reads integer,
    p_writes integer,
    p_subscriptions integer,
    p_charges integer
)
returns jsonb
language sql
immutable
as $$
    select case p_kind
        when 'organization' then jsonb_build_object(
            'reads_per_minute', coalesce(p_reads, 100),
            'writes_per_minute', coalesce(p_writes, 20),
            'subscription_changes_per_hour', coalesce(p_subscriptions, 5))
        else jsonb_build_object(
            'reads_per_minute', coalesce(p_reads, 6000),
            'writes_per_minute', coalesce(p_writes, 1200),
            'subscription_changes_per_hour', coalesce(p_subscriptions, 60),
            'charges_per_second', coalesce(p_charges, 500))
    end;
$$;

comment on function ledger_api_key_limits(text, integer, integer, integer, integer) is
    'ledger_api_key_limits(p_kind, p_reads, p_writes, p_subscriptions, p_charges): returns the limits in force as '
    'a JSON object (the key''s own, else its kind''s default): reads_per_minute, writes_per_minute, '
    'subscription_changes_per_hour and, for service keys, charges_per_second. Defaults: organization keys 100 '
    'reads and 20 writes a minute, 5 subscription changes an hour; service keys (metered traffic) 6000 reads and '
    '1200 writes a minute, 60 subscription changes an hour, 500 charges a second. The one place the defaults '
    'live. Raises nothing.';


-- ledger_api_key_rows(): every API key as the reads show it (never its
-- digest): key_id, prefix, name, kind, org_id, org_ids (a service key's
-- listed organizations, sorted; empty: platform-wide), system_scope,
-- created_by, created_at, last_used_at, revoked_at, limits (in force).
-- The callers filter and authorize. Locks nothing, raises nothing.
create or replace function ledger_api_key_rows()
returns table (key_id text, prefix text, name text, kind text, org_id text, org_ids text[], system_scope boolean,
               created_by text, created_at timestamptz, last_used_at timestamptz, revoked_at timestamptz,
               limits jsonb)
language sql
stable
as $$
    select k.key_id, k.prefix, k.name, k.kind, k.org_id,
           coalesce((select array_agg(o.org_id order by o.org_id) from api_key_organizations o
                      where o.key_id = k.key_id), '{}'::text[]),
           k.system_scope, k.created_by, k.created_at, k.last_used_at, k.revoked_at,
           ledger_api_key_limits(k.kind, k.reads_per_minute, k.writes_per_minute, k.subscription_changes_per_hour,
                                 k.charges_per_second)
      from api_keys k;
$$;

comment on function ledger_api_key_rows() is
    'ledger_api_key_rows(): every API key as the reads show it (never its digest): key_id, prefix, name, kind, '
    'org_id, org_ids (a service key''s listed organizations, sorted; empty: platform-wide), system_scope, '
    'created_by, created_at, last_used_at, revoked_at, limits (in force). The callers filter and authorize. Locks '
    'nothing, raises nothing.';


-- ledger_authorize_api_key_admin(p_actor_id, p_kind, p_org_id): returns
-- nothing. Who may create (and so revoke) a key of this kind: an
-- organization key, an admin of p_org_id or a system admin; a service key, a
-- system admin. A key acts as a user, so the operator's null actor is
-- refused too. Raises CB002 (unknown actor), CB008. Locks nothing.
create or replace function ledger_authorize_api_key_admin(p_actor_id text, p_kind text, p_org_id text)
returns void
language plpgsql
stable
as $$
begin
    if p_actor_id is null then
        raise exception using errcode = 'CB008',
            message = 'An API key acts as the user who creates it: pass the acting user''s id.';
    end if;
    if p_kind = 'organization' then
        perform ledger_authorize(p_actor_id, p_org_id, 'admin');
        return;
    end if;
    perform ledger_require_actor(p_actor_id);
    if not coalesce((select u.is_system_admin from users u where u.id = p_actor_id), false) then
        raise exception using errcode = 'CB008',
            message = format('User %L is not a system admin: only system admins manage service keys '
                             '(an organization admin makes organization keys).', p_actor_id);
    end if;
end;
$$;

comment on function ledger_authorize_api_key_admin(text, text, text) is
    'ledger_authorize_api_key_admin(p_actor_id, p_kind, p_org_id): returns nothing. Who may create (and so '
    'revoke) a key of this kind: an organization key, an admin of p_org_id or a system admin; a service key, a '
    'system admin. A key acts as a user, so the operator''s null actor is refused too. Raises CB002 (unknown '
    'actor), CB008. Locks nothing.';


-- ledger_check_api_key_limit(p_limit, p_what): returns nothing. Raises
-- CB009 unless p_limit is null (the kind's default) or a whole number from 1
-- to 1,000,000.
create or replace function ledger_check_api_key_limit(p_limit integer, p_what text)
returns void
language plpgsql
immutable
as $$
begin
    if p_limit is not null and p_limit not between 1 and 1000000 then
        raise exception using errcode = 'CB009',
            message = format('%s must be between 1 and 1,000,000 (got %s); leave it empty for the default.',
                             p_what, p_limit);
    end if;
end;
$$;

comment on function ledger_check_api_key_limit(integer, text) is
    'ledger_check_api_key_limit(p_limit, p_what): returns nothing. Raises CB009 unless p_limit is null (the '
    'kind''s default) or a whole number from 1 to 1,000,000.';


-- create_api_key(p_actor_id, p_kind, p_name, p_org_id, p_org_ids,
--                p_system_scope, p_prefix, p_digest, p_reads_per_minute,
--                p_writes_per_minute, p_subscription_changes_per_hour,
--                p_charges_per_second): returns the new key's row (as
-- api_keys_of shows it).
-- p_kind 'organization': p_org_id's key, made by an admin of it or a system
-- admin (no listed organizations, no system scope, no charge limit).
-- p_kind 'service': made by a system admin; p_org_ids its listed
-- organizations (empty or null: platform-wide), p_system_scope the System
-- endpoints. p_prefix (8 lowercase letters or digits) and p_digest (sha256
-- of the whole token, 32 bytes) come from billing_core, which made the
-- token; the token itself never reaches the database. Limits: null for the
-- kind's default, else 1 to 1,000,000. Audits 'api_key_created'.
-- Locks nothing (the unique prefix and digest settle a race).
-- Raises CB002 (unknown organization or actor), CB008 (not allowed to make
-- this key), CB009 (name missing or over 100 characters, unknown kind, bad
-- prefix, digest or limit, a scope the kind cannot have), CB010 (prefix or
-- digest already used: make a new token).
create or replace function create_api_key(
    p_actor_id text,
    p_kind text,
    p_name text,
    p_org_id text default null,
    p_org_ids text[] default null,
    p_system_scope boolean default false,
    p_prefix text default null,
    p_digest bytea default null,
    p_reads_per_minute integer default null,
    p_writes_per_minute integer default null,
    p_subscription_changes_per_hour integer default null,
    p_charges_per_second integer default null
)
returns table (key_id text, prefix text, name text, kind text, org_id text, org_ids text[], system_scope boolean,
               created_by text, created_at timestamptz, last_used_at timestamptz, revoked_at timestamptz,
               limits jsonb)
language plpgsql
as $$
#variable_conflict use_column
declare
    v_key_id text := 'key_' || left(replace(gen_random_uuid()::text, '-', ''), 20);
    v_org_ids text[];
    v_listed text;
begin
    if p_kind is null or p_kind not in ('organization', 'service') then
        raise exception using errcode = 'CB009',
            message = format('Key kind must be ''organization'' or ''service'' (got %L).', p_kind);
    end if;
    v_org_ids := coalesce((select array_agg(distinct o) from unnest(p_org_ids) o), '{}'::text[]);
    if p_kind = 'organization' then
        if p_org_id is null then
            raise exception using errcode = 'CB009',
                message = 'An organization key needs its organization: name the organization.';
        end if;
        if cardinality(v_org_ids) > 0 or coalesce(p_system_scope, false) or p_charges_per_second is not null then
            raise exception using errcode = 'CB009',
                message = 'An organization key acts in its own organization only: it takes no listed '
                          'organizations, no system scope and no charge limit (make a service key for those).';
        end if;
        perform ledger_require_org(p_org_id);
    elsif p_org_id is not null then
        raise exception using errcode = 'CB009',
            message = 'A service key belongs to no organization: list the organizations it may charge for instead.';
    end if;
    foreach v_listed in array v_org_ids loop
        perform ledger_require_org(v_listed);
    end loop;
    perform ledger_authorize_api_key_admin(p_actor_id, p_kind, p_org_id);
    perform ledger_check_text(p_name, 'Key name', 100);
    if p_prefix is null or p_prefix !~ '^[a-z0-9]{8}$' then
        raise exception using errcode = 'CB009',
            message = 'The key prefix must be 8 lowercase letters or digits: make the token with billing_core.';
    end if;
    if p_digest is null or octet_length(p_digest) <> 32 then
        raise exception using errcode = 'CB009',
            message = 'The key digest must be the 32-byte sha256 of the token: make the token with billing_core.';
    end if;
    perform ledger_check_api_key_limit(p_reads_per_minute, 'Reads per minute');
    perform ledger_check_api_key_limit(p_writes_per_minute, 'Writes per minute');
    perform ledger_check_api_key_limit(p_subscription_changes_per_hour, 'Subscription changes per hour');
    perform ledger_check_api_key_limit(p_charges_per_second, 'Charges per second');
    if exists (select 1 from api_keys k where k.prefix = p_prefix or k.digest = p_digest) then
        raise exception using errcode = 'CB010',
            message = format('Key prefix %L is already used: make a new token.', p_prefix);
    end if;

    insert into api_keys (key_id, prefix, digest, name, kind, org_id, system_scope, created_by,
                          reads_per_minute, writes_per_minute, subscription_changes_per_hour, charges_per_second)
    values (v_key_id, p_prefix, p_digest, btrim(p_name), p_kind, p_org_id, coalesce(p_system_scope, false),
            p_actor_id, p_reads_per_minute, p_writes_per_minute, p_subscription_changes_per_hour,
            p_charges_per_second);
    insert into api_key_organizations (key_id, org_id) select v_key_id, o from unnest(v_org_ids) o;

    perform ledger_audit(p_org_id, p_actor_id, 'api_key_created', 'api_key', v_key_id,
                         jsonb_build_object('name', btrim(p_name), 'kind', p_kind, 'prefix', p_prefix,
                                            'org_ids', to_jsonb(v_org_ids),
                                            'system_scope', coalesce(p_system_scope, false),
                                            'limits', r.limits))
      from ledger_api_key_rows() r where r.key_id = v_key_id;
    return query select * from ledger_api_key_rows() r where r.key_id = v_key_id;
end;
$$;

comment on function create_api_key(text, text, text, text, text[], boolean, text, bytea, integer, integer, integer, integer) is
    'create_api_key(p_actor_id, p_kind, p_name, p_org_id, p_org_ids, p_system_scope, p_prefix, p_digest, '
    'p_reads_per_minute, p_writes_per_minute, p_subscription_changes_per_hour, p_charges_per_second): returns the '
    'new key''s row (as api_keys_of shows it). p_kind ''organization'': p_org_id''s key, made by an admin of it or '
    'a system admin (no listed organizations, no system scope, no charge limit). p_kind ''service'': made by a '
    'system admin; p_org_ids its listed organizations (empty or null: platform-wide), p_system_scope the System '
    'endpoints. p_prefix (8 lowercase letters or digits) and p_digest (sha256 of the whole token, 32 bytes) come '
    'from billing_core, which made the token; the token itself never reaches the database. Limits: null for the '
    'kind''s default, else 1 to 1,000,000. Audits ''api_key_created''. Locks nothing (the unique prefix and '
    'digest settle a race). Raises CB002 (unknown organization or actor), CB008 (not allowed to make this key), '
    'CB009 (name missing or over 100 characters, unknown kind, bad prefix, digest or limit, a scope the kind '
    'cannot have), CB010 (prefix or digest already used: make a new token).';


-- revoke_api_key(p_actor_id, p_key_id): returns true when this call revoked
-- the key, false when it was already revoked (nothing changes then).
-- Whoever may create such a key may revoke it (ledger_authorize_api_key_admin).
-- A revoked key is refused from its next request on. Audits
-- 'api_key_revoked'. Locks the key's row. Raises CB002 (unknown key or
-- actor), CB008.
create or replace function revoke_api_key(p_actor_id text, p_key_id text)
returns boolean
language plpgsql
as $$
declare
    v_key api_keys;
begin
    select * into v_key from api_keys k where k.key_id = p_key_id for update;
    if not found then
        raise exception using errcode = 'CB002', message = format('API key %L does not exist.', p_key_id);
    end if;
    perform ledger_authorize_api_key_admin(p_actor_id, v_key.kind, v_key.org_id);
    if v_key.revoked_at is not null then
        return false;
    end if;
    update api_keys k set revoked_at = now(), revoked_by = p_actor_id where k.key_id = p_key_id;
    perform ledger_audit(v_key.org_id, p_actor_id, 'api_key_revoked', 'api_key', p_key_id,
                         jsonb_build_object('name', v_key.name, 'kind', v_key.kind, 'prefix', v_key.prefix));
    return true;
end;
$$;

comment on function revoke_api_key(text, text) is
    'revoke_api_key(p_actor_id, p_key_id): returns true when this call revoked the key, false when it was already '
    'revoked (nothing changes then). Whoever may create such a key may revoke it '
    '(ledger_authorize_api_key_admin). A revoked key is refused from its next request on. Audits '
    '''api_key_revoked''. Locks the key''s row. Raises CB002 (unknown key or actor), CB008.';


-- api_keys_of(p_actor_id, p_org_id): the keys an admin may see, newest
-- first, never their digest: with p_org_id, that organization's keys (an
-- admin of it or a system admin); with p_org_id null, every key, service
-- keys included (system admins only). A null actor is the operator, on the
-- owner's connection only (ledger_authorize). Locks nothing. Raises CB002
-- (unknown organization or actor), CB008.
create or replace function api_keys_of(p_actor_id text, p_org_id text default null)
returns table (key_id text, prefix text, name text, kind text, org_id text, org_ids text[], system_scope boolean,
               created_by text, created_at timestamptz, last_used_at timestamptz, revoked_at timestamptz,
               limits jsonb)
language plpgsql
stable
as $$
#variable_conflict use_column
begin
    if p_org_id is null then
        perform ledger_authorize(p_actor_id, null, 'system_admin');
    else
        perform ledger_require_org(p_org_id);
        perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    end if;
    return query
        select * from ledger_api_key_rows() r
         where p_org_id is null or r.org_id = p_org_id
         order by r.created_at desc, r.key_id;
end;
$$;

comment on function api_keys_of(text, text) is
    'api_keys_of(p_actor_id, p_org_id): the keys an admin may see, newest first, never their digest: with '
    'p_org_id, that organization''s keys (an admin of it or a system admin); with p_org_id null, every key, '
    'service keys included (system admins only). A null actor is the operator, on the owner''s connection only '
    '(ledger_authorize). Locks nothing. Raises CB002 (unknown organization or actor), CB008.';


-- ledger_api_key_count(p_key_id, p_class, p_limit, p_window, p_sharded):
-- returns nothing. Counts one request of the key in its class's current
-- window and raises CB013 when that makes more than p_limit, with DETAIL
-- 'retry_after=<whole seconds>' (the refusal rolls the count back: refused
-- requests do not use the allowance up).
-- Not sharded (per-minute and per-hour classes): one row per key and class,
-- a window that starts at the first request after the last one ended; the
-- row's lock orders concurrent requests, so the count is exact across
-- processes (30 calls against 20 a minute: exactly 20 pass).
-- Sharded (per-second charges of service keys): windows aligned on the
-- second, one row per shard (backend pid % 16) summed, so many connections
-- do not queue on one row; requests in flight on other connections are not
-- yet seen, so a burst may pass the limit by at most the number of
-- concurrent connections. Locks the key's row of this class (and shard).
create or replace function ledger_api_key_count(
    p_key_id text,
    p_class text,
    p_limit integer,
    p_window interval,
    p_sharded boolean
)
returns void
language plpgsql
as $$
declare
    v_start timestamptz := case when p_sharded then date_trunc('second', now()) else now() end;
    v_window_start timestamptz;
    v_requests integer;
    v_wait integer;
begin
    insert into api_key_rate_windows as w (key_id, class, shard, window_start, requests)
    values (p_key_id, p_class, case when p_sharded then pg_backend_pid() % 16 else 0 end, v_start, 1)
    on conflict (key_id, class, shard) do update
       set window_start = case when w.window_start > v_start - p_window then w.window_start else v_start end,
           requests = case when w.window_start > v_start - p_window then w.requests + 1 else 1 end
    returning w.window_start, w.requests into v_window_start, v_requests;
    if p_sharded then
        select sum(w.requests) into v_requests from api_key_rate_windows w
         where w.key_id = p_key_id and w.class = p_class and w.window_start = v_start;
    end if;
    if v_requests > p_limit then
        v_wait := greatest(1, ceil(extract(epoch from v_window_start + p_window - now())))::integer;
        raise exception using errcode = 'CB013',
            message = format('Too many requests with this API key: its limit is %s %s per %s. '
                             'Try again in %s second%s.', p_limit,
                             case p_class when 'charge' then 'charges' when 'read' then 'reads'
                                          when 'write' then 'writes' else 'subscription changes' end,
                             case p_window when interval '1 second' then 'second' when interval '1 minute'
                                           then 'minute' else 'hour' end,
                             v_wait, case when v_wait = 1 then '' else 's' end),
            detail = format('retry_after=%s', v_wait);
    end if;
end;
$$;

comment on function ledger_api_key_count(text, text, integer, interval, boolean) is
    'ledger_api_key_count(p_key_id, p_class, p_limit, p_window, p_sharded): returns nothing. Counts one request '
    'of the key in its class''s current window and raises CB013 when that makes more than p_limit, with DETAIL '
    '''retry_after=<whole seconds>'' (the refusal rolls the count back: refused requests do not use the allowance '
    'up). Not sharded (per-minute and per-hour classes): one row per key and class, a window that starts at the '
    'first request after the last one ended; the row''s lock orders concurrent requests, so the count is exact '
    'across processes (30 calls against 20 a minute: exactly 20 pass). Sharded (per-second charges of service '
    'keys): windows aligned on the second, one row per shard (backend pid % 16) summed, so many connections do '
    'not queue on one row; requests in flight on other connections are not yet seen, so a burst may pass the '
    'limit by at most the number of concurrent connections. Locks the key''s row of this class (and shard).';


-- api_key_authorize(p_digest, p_org_id, p_user_id, p_use): returns
-- (key_id, prefix, kind, actor_id, org_id): the key, the user it acts as
-- (its creator) and the organization the request concerns.
-- p_use: 'charge' (charge, hold, settle, release, balance, quote: service
-- keys only), 'read', 'write', 'subscription' (an organization's endpoints)
-- or 'system' (the System endpoints: service keys with system scope).
-- Organization: p_org_id; for 'charge' with p_org_id null and a user,
-- charging_org_for(p_user_id); an organization key's own when not given.
-- Scope: an organization key acts in its organization only; a service key
-- charges within its listed organizations (if any) and acts on an
-- organization's endpoints only with system scope or for a listed one.
-- Counts the request against the key's limit for the use's class (charge
-- per second, read and system per minute, write per minute, subscription
-- per hour; see ledger_api_key_count) and refreshes last_used_at when it is
-- a minute old or more. Locks the key's rate row of that class (and, once a
-- minute, the key's row).
-- Raises CB015 (unknown or revoked key), CB009 (unknown use), CB008 (a use
-- or organization outside the key's scope; a creator no longer admin of the
-- organization, or no longer a system admin), CB002 (unknown organization
-- or user), CB003 (a user with no organization to charge), CB013 (over the
-- limit; DETAIL 'retry_after=<seconds>').
create or replace function api_key_authorize(
    p_digest bytea,
    p_org_id text default null,
    p_user_id text default null,
    p_use text default 'read'
)
returns table (key_id text, prefix text, kind text, actor_id text, org_id text)
language plpgsql
as $$
#variable_conflict use_column
declare
    v_key api_keys;
    v_org text := p_org_id;
    v_limits jsonb;
begin
    select * into v_key from api_keys k where k.digest = p_digest;
    if not found or v_key.revoked_at is not null then
        raise exception using errcode = 'CB015', message = 'This API key is not valid: it is unknown or revoked.';
    end if;
    if p_use is null or p_use not in ('charge', 'read', 'write', 'subscription', 'system') then
        raise exception using errcode = 'CB009',
            message = format('Unknown use %L of an API key: charge, read, write, subscription or system.', p_use);
    end if;
    if p_org_id is not null then
        perform ledger_require_org(p_org_id);
    end if;

    if v_key.kind = 'organization' then
        if not coalesce(ledger_role_in(v_key.created_by, v_key.org_id) in ('admin', 'system_admin'), false) then
            raise exception using errcode = 'CB008',
                message = format('API key %s no longer works: its creator %L is no longer an admin of organization '
                                 '%L. Ask a current admin for a new key.', v_key.prefix, v_key.created_by,
                                 v_key.org_id);
        end if;
        if p_use in ('charge', 'system') then
            raise exception using errcode = 'CB008',
                message = format('An organization key cannot %s: use a service key.',
                                 case p_use when 'charge' then 'charge usage' else 'use the System endpoints' end);
        end if;
        if v_org is not null and v_org <> v_key.org_id then
            raise exception using errcode = 'CB008',
                message = format('API key %s belongs to organization %L: it cannot act on organization %L.',
                                 v_key.prefix, v_key.org_id, v_org);
        end if;
        v_org := v_key.org_id;
    else
        if not coalesce((select u.is_system_admin from users u where u.id = v_key.created_by), false) then
            raise exception using errcode = 'CB008',
                message = format('Service key %s no longer works: its creator %L is no longer a system admin. '
                                 'Ask a system admin for a new key.', v_key.prefix, v_key.created_by);
        end if;
        if p_use = 'charge' and v_org is null and p_user_id is not null then
            v_org := charging_org_for(p_user_id, null);
        end if;
        if p_use = 'system' and not v_key.system_scope then
            raise exception using errcode = 'CB008',
                message = format('Service key %s has no system scope: it cannot use the System endpoints.',
                                 v_key.prefix);
        end if;
        if p_use = 'charge' and exists (select 1 from api_key_organizations o where o.key_id = v_key.key_id)
           and not exists (select 1 from api_key_organizations o where o.key_id = v_key.key_id and o.org_id = v_org)
        then
            raise exception using errcode = 'CB008',
                message = format('Service key %s may charge only for its listed organizations, not for %s.',
                                 v_key.prefix,
                                 case when v_org is null then 'a request naming no organization or user'
                                      else format('organization %L', v_org) end);
        end if;
        if p_use in ('read', 'write', 'subscription') and not v_key.system_scope
           and not exists (select 1 from api_key_organizations o where o.key_id = v_key.key_id and o.org_id = v_org)
        then
            raise exception using errcode = 'CB008',
                message = format('Service key %s may act only on its listed organizations'' endpoints (or, with '
                                 'system scope, on any): not on %s.', v_key.prefix,
                                 case when v_org is null then 'a request naming no organization or user'
                                      else format('organization %L', v_org) end);
        end if;
    end if;

    v_limits := ledger_api_key_limits(v_key.kind, v_key.reads_per_minute, v_key.writes_per_minute,
                                      v_key.subscription_changes_per_hour, v_key.charges_per_second);
    case p_use
        when 'charge' then
            perform ledger_api_key_count(v_key.key_id, 'charge', (v_limits ->> 'charges_per_second')::integer,
                                         interval '1 second', true);
        when 'write' then
            perform ledger_api_key_count(v_key.key_id, 'write', (v_limits ->> 'writes_per_minute')::integer,
                                         interval '1 minute', false);
        when 'subscription' then
            perform ledger_api_key_count(v_key.key_id, 'subscription',
                                         (v_limits ->> 'subscription_changes_per_hour')::integer,
                                         interval '1 hour', false);
        else
            perform ledger_api_key_count(v_key.key_id, 'read', (v_limits ->> 'reads_per_minute')::integer,
                                         interval '1 minute', false);
    end case;

    if v_key.last_used_at is null or v_key.last_used_at < now() - interval '1 minute' then
        update api_keys k set last_used_at = now()
         where k.key_id = v_key.key_id and (k.last_used_at is null or k.last_used_at < now() - interval '1 minute');
    end if;
    return query select v_key.key_id, v_key.prefix, v_key.kind, v_key.created_by, v_org;
end;
$$;

comment on function api_key_authorize(bytea, text, text, text) is
    'api_key_authorize(p_digest, p_org_id, p_user_id, p_use): returns (key_id, prefix, kind, actor_id, org_id): '
    'the key, the user it acts as (its creator) and the organization the request concerns. p_use: ''charge'' '
    '(charge, hold, settle, release, balance, quote: service keys only), ''read'', ''write'', ''subscription'' '
    '(an organization''s endpoints) or ''system'' (the System endpoints: service keys with system scope). '
    'Organization: p_org_id; for ''charge'' with p_org_id null and a user, charging_org_for(p_user_id); an '
    'organization key''s own when not given. Scope: an organization key acts in its organization only; a service '
    'key charges within its listed organizations (if any) and acts on an organization''s endpoints only with '
    'system scope or for a listed one. Counts the request against the key''s limit for the use''s class (charge '
    'per second, read and system per minute, write per minute, subscription per hour; see ledger_api_key_count) '
    'and refreshes last_used_at when it is a minute old or more. Locks the key''s rate row of that class (and, '
    'once a minute, the key''s row). Raises CB015 (unknown or revoked key), CB009 (unknown use), CB008 (a use or '
    'organization outside the key''s scope; a creator no longer admin of the organization, or no longer a system '
    'admin), CB002 (unknown organization or user), CB003 (a user with no organization to charge), CB013 (over '
    'the limit; DETAIL ''retry_after=<seconds>'').';
