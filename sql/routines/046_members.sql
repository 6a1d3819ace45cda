-- Memberships an org admin manages from the organization billing screen:
-- add an existing user by email, invite a new one. Both build on
-- add_organization_member (020_organizations.sql), which checks the role
-- again and writes the 'member.added' audit row.


-- add_organization_member_by_email(p_org_id, p_email, p_role, p_actor_id):
-- returns the id of the user added.
-- Adds the existing user with this email (any case) to the organization.
-- p_actor_id, when given, must be an admin of the organization (or a system
-- admin); the role is checked before the email is looked up, so no one else
-- learns which addresses have accounts. Takes no lock. Raises CB002 (unknown
-- organization, no user with this email), CB008, CB009 (missing email,
-- unknown role), CB010 (already a member).
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
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
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


-- invite_organization_member(p_org_id, p_user_id, p_email, p_display_name,
--                            p_role, p_password_hash, p_actor_id): returns nothing.
-- Creates a new user with the given bcrypt password hash (of a one-time
-- password the caller shows once) and adds them to the organization, in one
-- transaction: both or neither. p_actor_id, when given, must be an admin of
-- the organization (or a system admin); org admins may create users only this
-- way, as members of their own organization. Writes 'user.created',
-- 'member.invited' (with the inviting actor) and 'member.added' audit rows.
-- Takes no lock. Raises CB002 (unknown organization or actor), CB008, CB009
-- (bad id, email, name or role; a password hash that is not bcrypt), CB010
-- (user id or email taken).
create or replace function invite_organization_member(
    p_org_id text,
    p_user_id text,
    p_email text,
    p_display_name text,
    p_role text,
    p_password_hash text,
    p_actor_id text default null
)
returns void
language plpgsql
as $$
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    if p_role is null or p_role not in ('admin', 'member') then
        raise exception using errcode = 'CB009',
            message = format('Role must be ''admin'' or ''member'' (got %L).', p_role);
    end if;
    if p_password_hash is null or p_password_hash !~ '^\$2[abxy]\$[0-9]{2}\$[./A-Za-z0-9]{53}$' then
        raise exception using errcode = 'CB009',
            message = 'A new member needs a bcrypt password hash (never the password itself).';
    end if;
    -- the address first: the user id often derives from it, and its message says more
    perform ledger_check_email(p_email);
    -- the role was checked above for this organization; create_user's own
    -- check (system admins only) is for users created outside any organization
    perform ledger_create_user(p_user_id, p_email, p_display_name, false, p_password_hash, null);
    perform ledger_audit(p_org_id, p_actor_id, 'member.invited', 'user', p_user_id,
                         jsonb_build_object('email', lower(btrim(p_email)), 'role', p_role));
    perform add_organization_member(p_org_id, p_user_id, p_role, p_actor_id);
end;
$$;
