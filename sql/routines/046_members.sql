-- Memberships an organization's people manage from the organization billing
-- screen. A trusted caller (a system admin, the operator) adds an existing
-- user by email; an organization admin invites by email
-- (invite_organization_member, 047_invitations.sql) and the person joins when
-- they accept.


-- add_organization_member_by_email(p_org_id, p_email, p_role, p_actor_id):
-- returns the id of the user added.
-- Adds the existing user with this email (any case) to the organization, for
-- trusted callers only: a system admin, or a null actor (the operator). An
-- admin of the organization is refused (CB008) and told to invite instead: a
-- person joins an organization only by accepting its invitation. The role is
-- checked before the email is looked up, so no one else learns which
-- addresses have accounts. Takes no lock. Raises CB002 (unknown organization,
-- no user with this email), CB008, CB009 (missing email, unknown role), CB010
-- (already a member), CB012 (a personal organization).
create or replace function add_organization_member_by_email(
    p_org_id text,
    p_email text,
    p_role text default 'member',
    p_actor_id text default null
)
returns text
language plpgsql
as $$
declare
    v_user_id text;
begin
    perform ledger_require_org(p_org_id);
    if p_actor_id is not null and ledger_role_in(p_actor_id, null) is distinct from 'system_admin' then
        perform ledger_authorize(p_actor_id, p_org_id, 'admin');
        raise exception using errcode = 'CB008',
            message = 'An organization admin invites people by email and they join when they accept: '
                      'use Invite (invite_organization_member), not Add.';
    end if;
    perform ledger_authorize(p_actor_id, p_org_id, 'system_admin');
    perform ledger_check_text(p_email, 'Email', 254);
    select id into v_user_id from users where lower(email) = lower(btrim(p_email));
    if not found then
        raise exception using errcode = 'CB002',
            message = format('No user has the email %L: invite them as a new user instead.', btrim(p_email));
    end if;
    perform add_organization_member(p_org_id, v_user_id, p_role, p_actor_id);
    return v_user_id;
end;
$$;

comment on function add_organization_member_by_email(text, text, text, text) is
    'add_organization_member_by_email(p_org_id, p_email, p_role, p_actor_id): returns the id of the user added. '
    'Adds the existing user with this email (any case) to the organization, for trusted callers only: a system '
    'admin, or a null actor (the operator). An admin of the organization is refused (CB008) and told to invite '
    'instead: a person joins an organization only by accepting its invitation. The role is checked before the '
    'email is looked up, so no one else learns which addresses have accounts. Takes no lock. Raises CB002 '
    '(unknown organization, no user with this email), CB008, CB009 (missing email, unknown role), CB010 (already '
    'a member), CB012 (a personal organization).';


-- ledger_check_email(p_email): returns nothing. Raises CB009 unless p_email
-- looks like name@example.com (the test create_user applies), at most 254
-- characters, without control characters.
create or replace function ledger_check_email(p_email text)
returns void
language plpgsql
immutable
as $$
begin
    perform ledger_check_text(p_email, 'Email', 254);
    if p_email !~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$' then
        raise exception using errcode = 'CB009',
            message = format('Email %L is not an email address (expected name@example.com).', p_email);
    end if;
end;
$$;

comment on function ledger_check_email(text) is
    'ledger_check_email(p_email): returns nothing. Raises CB009 unless p_email looks like name@example.com (the '
    'test create_user applies), at most 254 characters, without control characters.';


-- organization_members_of(p_org_id, p_actor_id): the organization's members
-- with their role and current allocation (user_multi_org_credits), by name.
-- p_actor_id: an admin of it, a system admin or the operator. Locks nothing.
-- Raises CB002, CB008.
create or replace function organization_members_of(p_org_id text, p_actor_id text)
returns table (user_id text, email text, display_name text, role text, is_default boolean,
               allocated_credits numeric, used_credits numeric, remaining_credits numeric, usage_percent numeric)
language plpgsql
stable
as $$
#variable_conflict use_column
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    return query
        select c.user_id, c.email, c.display_name, c.role, c.is_default, c.allocated_credits, c.used_credits,
               c.remaining_credits, c.usage_percent
          from user_multi_org_credits c
         where c.org_id = p_org_id
         order by c.display_name, c.user_id;
end;
$$;

comment on function organization_members_of(text, text) is
    'organization_members_of(p_org_id, p_actor_id): the organization''s members with their role and current '
    'allocation (user_multi_org_credits), by name. p_actor_id: an admin of it, a system admin or the operator. '
    'Locks nothing. Raises CB002, CB008.';


-- all_organizations(p_actor_id): every organization (not the individual
-- balances) with its status, by name (case ignored). System admins and the
-- operator only. Locks nothing. Raises CB002, CB008.
create or replace function all_organizations(p_actor_id text)
returns table (org_id text, name text, status text, created_at timestamptz)
language plpgsql
stable
as $$
#variable_conflict use_column
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    return query
        select o.id, o.name, o.status, o.created_at
          from organizations o
         where o.kind = 'organization'
         order by lower(o.name), o.id;
end;
$$;

comment on function all_organizations(text) is
    'all_organizations(p_actor_id): every organization (not the individual balances) with its status, by name '
    '(case ignored). System admins and the operator only. Locks nothing. Raises CB002, CB008.';


-- user_account(p_user_id): the user's id, email, name (the email when none
-- was given) and whether they are a system admin; no row for an unknown
-- id. What a signed-in session shows of its user. Locks nothing. Raises
-- nothing.
create or replace function user_account(p_user_id text)
returns table (id text, email text, display_name text, is_system_admin boolean)
language sql
stable
as $$
    select u.id, u.email, coalesce(u.display_name, u.email), u.is_system_admin from users u where u.id = p_user_id;
$$;

comment on function user_account(text) is
    'user_account(p_user_id): the user''s id, email, name (the email when none was given) and whether they are a '
    'system admin; no row for an unknown id. What a signed-in session shows of its user. Locks nothing. Raises '
    'nothing.';


-- user_memberships(p_user_id): the organizations the user belongs to, with
-- their name and the user's role, the default one first, then in the order
-- joined. Locks nothing. Raises nothing.
create or replace function user_memberships(p_user_id text)
returns table (org_id text, org_name text, role text, is_default boolean)
language sql
stable
as $$
    select m.org_id, o.name, m.role, m.is_default
      from organization_members m
      join organizations o on o.id = m.org_id
     where m.user_id = p_user_id
     order by m.is_default desc, m.joined_at, m.org_id;
$$;

comment on function user_memberships(text) is
    'user_memberships(p_user_id): the organizations the user belongs to, with their name and the user''s role, '
    'the default one first, then in the order joined. Locks nothing. Raises nothing.';
