-- Organizations, users and memberships.


-- create_organization(p_org_id, p_name, p_actor_id): returns nothing.
-- Creates the organization and its empty credit pool. p_actor_id, when given,
-- must be a system admin. Raises CB009 (bad id or name), CB010 (id taken),
-- CB008, CB002 (unknown actor).
create or replace function create_organization(p_org_id text, p_name text, p_actor_id text default null)
returns void
language plpgsql
as $$
begin
    perform ledger_check_id(p_org_id, 'Organization id');
    perform ledger_check_text(p_name, 'Organization name', 200);
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    insert into organizations (id, name) values (p_org_id, btrim(p_name)) on conflict (id) do nothing;
    if not found then
        raise exception using errcode = 'CB010',
            message = format('Organization id %L is already taken.', p_org_id);
    end if;
    insert into credit_pools (org_id) values (p_org_id);
    perform ledger_audit(p_org_id, p_actor_id, 'organization.created', 'organization', p_org_id,
                         jsonb_build_object('name', btrim(p_name)));
end;
$$;

comment on function create_organization(text, text, text) is
    'create_organization(p_org_id, p_name, p_actor_id): returns nothing. Creates the organization and its empty '
    'credit pool. p_actor_id, when given, must be a system admin. Raises CB009 (bad id or name), CB010 (id '
    'taken), CB008, CB002 (unknown actor).';


-- ledger_create_user(p_user_id, p_email, p_display_name, p_is_system_admin,
--                    p_password_hash, p_actor_id): returns nothing.
-- Creates the user and writes the 'user.created' audit row (actor
-- p_actor_id); checks no role: the caller did (create_user, or
-- invite_organization_member for an org admin's new member). Raises CB009
-- (bad id, email or name), CB010 (id or email taken).
create or replace function ledger_create_user(
    p_user_id text,
    p_email text,
    p_display_name text,
    p_is_system_admin boolean,
    p_password_hash text,
    p_actor_id text
)
returns void
language plpgsql
as $$
begin
    perform ledger_check_id(p_user_id, 'User id');
    perform ledger_check_text(p_email, 'Email', 254);
    if p_email !~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$' then
        raise exception using errcode = 'CB009',
            message = format('Email %L is not an email address (expected name@example.com).', p_email);
    end if;
    perform ledger_check_text(p_display_name, 'Display name', 200, false);
    if exists (select 1 from users where lower(email) = lower(btrim(p_email))) then
        raise exception using errcode = 'CB010',
            message = format('Email %L is already used by another user.', p_email);
    end if;
    insert into users (id, email, display_name, is_system_admin, password_hash)
    values (p_user_id, lower(btrim(p_email)), nullif(btrim(p_display_name), ''),
            coalesce(p_is_system_admin, false), p_password_hash)
    on conflict (id) do nothing;
    if not found then
        raise exception using errcode = 'CB010', message = format('User id %L is already taken.', p_user_id);
    end if;
    perform ledger_audit(null, p_actor_id, 'user.created', 'user', p_user_id,
                         jsonb_build_object('email', lower(btrim(p_email)),
                                            'is_system_admin', coalesce(p_is_system_admin, false)));
end;
$$;

comment on function ledger_create_user(text, text, text, boolean, text, text) is
    'ledger_create_user(p_user_id, p_email, p_display_name, p_is_system_admin, p_password_hash, p_actor_id): '
    'returns nothing. Creates the user and writes the ''user.created'' audit row (actor p_actor_id); checks no '
    'role: the caller did (create_user, or invite_organization_member for an org admin''s new member). Raises '
    'CB009 (bad id, email or name), CB010 (id or email taken).';


-- create_user(p_user_id, p_email, p_display_name, p_is_system_admin,
--             p_password_hash, p_actor_id): returns nothing.
-- p_actor_id, when given, must be a system admin; null is the operator (on
-- the owner's connection only). Raises CB009 (bad id, email or name), CB010
-- (id or email taken), CB008, CB002.
create or replace function create_user(
    p_user_id text,
    p_email text,
    p_display_name text default null,
    p_is_system_admin boolean default false,
    p_password_hash text default null,
    p_actor_id text default null
)
returns void
language plpgsql
as $$
begin
    perform ledger_check_id(p_user_id, 'User id');
    perform ledger_check_text(p_email, 'Email', 254);
    if p_email !~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$' then
        raise exception using errcode = 'CB009',
            message = format('Email %L is not an email address (expected name@example.com).', p_email);
    end if;
    perform ledger_check_text(p_display_name, 'Display name', 200, false);
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    perform ledger_create_user(p_user_id, p_email, p_display_name, p_is_system_admin, p_password_hash, p_actor_id);
end;
$$;

comment on function create_user(text, text, text, boolean, text, text) is
    'create_user(p_user_id, p_email, p_display_name, p_is_system_admin, p_password_hash, p_actor_id): returns '
    'nothing. p_actor_id, when given, must be a system admin; null is the operator (on the owner''s connection '
    'only). Raises CB009 (bad id, email or name), CB010 (id or email taken), CB008, CB002.';


-- add_organization_member(p_org_id, p_user_id, p_role, p_actor_id): returns nothing.
-- Trusted callers (a system admin; a null actor: the operator) add the existing
-- user directly: the user's first organization becomes their default (their
-- personal balance does not count), with a 'member.added' audit row. An admin
-- of the organization cannot add someone without their consent: the call makes
-- a pending invitation (organization_invitations) that the user accepts or
-- declines after logging in (accept_organization_invitation); the admin learns
-- nothing about the user (no email, no name) before that. The role is checked
-- before the user is looked up. Takes no lock. Raises CB002 (unknown
-- organization or user), CB008 (neither trusted nor an admin of the
-- organization), CB009 (unknown role), CB010 (already a member, or already
-- invited), CB012 (a personal organization).
create or replace function add_organization_member(
    p_org_id text,
    p_user_id text,
    p_role text default 'member',
    p_actor_id text default null
)
returns void
language plpgsql
as $$
declare
    v_trusted boolean := p_actor_id is null or ledger_role_in(p_actor_id, null) = 'system_admin';
begin
    perform ledger_require_org(p_org_id);
    if p_role is null or p_role not in ('admin', 'member') then
        raise exception using errcode = 'CB009',
            message = format('Role must be ''admin'' or ''member'' (got %L).', p_role);
    end if;
    perform ledger_authorize(p_actor_id, p_org_id, case when v_trusted then 'system_admin' else 'admin' end);
    perform ledger_require_user(p_user_id);
    if exists (select 1 from organizations where id = p_org_id and kind = 'personal') then
        raise exception using errcode = 'CB012',
            message = format('Organization %L is a personal balance: it has no members besides its owner.', p_org_id);
    end if;
    if v_trusted then
        perform ledger_insert_member(p_org_id, p_user_id, p_role, p_actor_id);
    else
        perform ledger_create_invitation(p_org_id, p_user_id, null, p_role, p_actor_id, false);
    end if;
end;
$$;

comment on function add_organization_member(text, text, text, text) is
    'add_organization_member(p_org_id, p_user_id, p_role, p_actor_id): returns nothing. Trusted callers (a system '
    'admin; a null actor: the operator) add the existing user directly: the user''s first organization becomes '
    'their default (their personal balance does not count), with a ''member.added'' audit row. An admin of the '
    'organization cannot add someone without their consent: the call makes a pending invitation '
    '(organization_invitations) that the user accepts or declines after logging in '
    '(accept_organization_invitation); the admin learns nothing about the user (no email, no name) before that. '
    'The role is checked before the user is looked up. Takes no lock. Raises CB002 (unknown organization or '
    'user), CB008 (neither trusted nor an admin of the organization), CB009 (unknown role), CB010 (already a '
    'member, or already invited), CB012 (a personal organization).';


-- ledger_insert_member(p_org_id, p_user_id, p_role, p_actor_id): returns nothing.
-- The membership row and its 'member.added' audit row, for callers that have
-- checked the right to add (a trusted add, an accepted invitation). The user's
-- first organization becomes their default. Raises CB010 (already a member).
-- Takes no lock beyond the inserted row.
create or replace function ledger_insert_member(p_org_id text, p_user_id text, p_role text, p_actor_id text)
returns void
language plpgsql
as $$
begin
    -- a personal balance (organizations.kind 'personal') never counts as the first organization
    insert into organization_members (org_id, user_id, role, is_default)
    values (p_org_id, p_user_id, p_role,
            not exists (select 1 from organization_members m join organizations o on o.id = m.org_id
                         where m.user_id = p_user_id and o.kind = 'organization'))
    on conflict (org_id, user_id) do nothing;
    if not found then
        raise exception using errcode = 'CB010',
            message = format('User %L is already a member of organization %L.', p_user_id, p_org_id);
    end if;
    perform ledger_audit(p_org_id, p_actor_id, 'member.added', 'user', p_user_id,
                         jsonb_build_object('role', p_role));
end;
$$;

comment on function ledger_insert_member(text, text, text, text) is
    'ledger_insert_member(p_org_id, p_user_id, p_role, p_actor_id): returns nothing. The membership row and its '
    '''member.added'' audit row, for callers that have checked the right to add (a trusted add, an accepted '
    'invitation). The user''s first organization becomes their default. Raises CB010 (already a member). Takes no '
    'lock beyond the inserted row.';


-- ledger_require_other_admin(p_org_id, p_user_id): returns nothing.
-- Raises CB012 when p_user_id is the organization's only admin. The caller
-- holds the organization's pool lock, which serializes membership changes.
create or replace function ledger_require_other_admin(p_org_id text, p_user_id text)
returns void
language plpgsql
stable
as $$
begin
    if exists (select 1 from organization_members
               where org_id = p_org_id and user_id = p_user_id and role = 'admin')
       and not exists (select 1 from organization_members
                       where org_id = p_org_id and user_id <> p_user_id and role = 'admin') then
        raise exception using errcode = 'CB012',
            message = format('User %L is the only admin of organization %L: make another member admin first.',
                             p_user_id, p_org_id);
    end if;
end;
$$;

comment on function ledger_require_other_admin(text, text) is
    'ledger_require_other_admin(p_org_id, p_user_id): returns nothing. Raises CB012 when p_user_id is the '
    'organization''s only admin. The caller holds the organization''s pool lock, which serializes membership '
    'changes.';


-- ledger_lock_pool(p_org_id): returns the pool row, locked FOR UPDATE.
-- Creates an empty pool for an organization that has none (organizations
-- inserted directly by an integrator). The pool row is the first lock every
-- pool-changing function takes; allocation rows come after it, in user id order.
create or replace function ledger_lock_pool(p_org_id text)
returns credit_pools
language plpgsql
as $$
declare
    v_pool credit_pools;
begin
    select * into v_pool from credit_pools where org_id = p_org_id for update;
    if not found then
        insert into credit_pools (org_id) values (p_org_id) on conflict (org_id) do nothing;
        select * into v_pool from credit_pools where org_id = p_org_id for update;
    end if;
    return v_pool;
end;
$$;

comment on function ledger_lock_pool(text) is
    'ledger_lock_pool(p_org_id): returns the pool row, locked FOR UPDATE. Creates an empty pool for an '
    'organization that has none (organizations inserted directly by an integrator). The pool row is the first '
    'lock every pool-changing function takes; allocation rows come after it, in user id order.';


-- set_member_role(p_org_id, p_user_id, p_role, p_actor_id): returns nothing.
-- Locks the pool row (serializes membership changes of the org). Raises
-- CB002, CB003, CB009, CB008, CB012 (demoting the only admin).
create or replace function set_member_role(
    p_org_id text,
    p_user_id text,
    p_role text,
    p_actor_id text default null
)
returns void
language plpgsql
as $$
declare
    v_old_role text;
begin
    perform ledger_require_org(p_org_id);
    if p_role is null or p_role not in ('admin', 'member') then
        raise exception using errcode = 'CB009',
            message = format('Role must be ''admin'' or ''member'' (got %L).', p_role);
    end if;
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    perform ledger_lock_pool(p_org_id);
    v_old_role := ledger_require_member(p_org_id, p_user_id);
    if v_old_role = p_role then
        return;
    end if;
    if p_role = 'member' then
        perform ledger_require_other_admin(p_org_id, p_user_id);
    end if;
    update organization_members set role = p_role where org_id = p_org_id and user_id = p_user_id;
    perform ledger_audit(p_org_id, p_actor_id, 'member.role_changed', 'user', p_user_id,
                         jsonb_build_object('from', v_old_role, 'to', p_role));
end;
$$;

comment on function set_member_role(text, text, text, text) is
    'set_member_role(p_org_id, p_user_id, p_role, p_actor_id): returns nothing. Locks the pool row (serializes '
    'membership changes of the org). Raises CB002, CB003, CB009, CB008, CB012 (demoting the only admin).';


-- set_default_organization(p_user_id, p_org_id): returns nothing.
-- Makes p_org_id the organization the user spends from by default.
-- Raises CB002, CB003.
create or replace function set_default_organization(p_user_id text, p_org_id text)
returns void
language plpgsql
as $$
begin
    perform ledger_require_org(p_org_id);
    perform ledger_require_member(p_org_id, p_user_id);
    update organization_members
       set is_default = (org_id = p_org_id)
     where user_id = p_user_id and is_default <> (org_id = p_org_id);
end;
$$;

comment on function set_default_organization(text, text) is
    'set_default_organization(p_user_id, p_org_id): returns nothing. Makes p_org_id the organization the user '
    'spends from by default. Raises CB002, CB003.';


-- remove_organization_member(p_org_id, p_user_id, p_actor_id): returns the
-- credits returned to the pool. Closes the member's active allocation (unused
-- credits go back to the pool, what was used stays in history) and deletes
-- the membership. Locks the pool row, then the allocation. Raises CB002,
-- CB003, CB008, CB012 (removing the only admin).
create or replace function remove_organization_member(
    p_org_id text,
    p_user_id text,
    p_actor_id text default null
)
returns numeric
language plpgsql
as $$
declare
    v_allocation_id text;
    v_returned numeric := 0;
    v_role text;
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    perform ledger_lock_pool(p_org_id);
    v_role := ledger_require_member(p_org_id, p_user_id);
    perform ledger_require_other_admin(p_org_id, p_user_id);
    select id into v_allocation_id
      from user_credit_allocations
     where org_id = p_org_id and user_id = p_user_id and is_active;
    if found then
        v_returned := ledger_close_allocation(p_org_id, v_allocation_id, p_actor_id);
    end if;
    delete from organization_members where org_id = p_org_id and user_id = p_user_id;
    perform ledger_audit(p_org_id, p_actor_id, 'member.removed', 'user', p_user_id,
                         jsonb_build_object('role', v_role, 'credits_returned', v_returned));
    return v_returned;
end;
$$;

comment on function remove_organization_member(text, text, text) is
    'remove_organization_member(p_org_id, p_user_id, p_actor_id): returns the credits returned to the pool. '
    'Closes the member''s active allocation (unused credits go back to the pool, what was used stays in history) '
    'and deletes the membership. Locks the pool row, then the allocation. Raises CB002, CB003, CB008, CB012 '
    '(removing the only admin).';
