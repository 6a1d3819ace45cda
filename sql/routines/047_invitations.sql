-- Invitations: how a person joins an organization with their consent.
--
-- An organization admin invites an email address (invite_organization_member)
-- or an existing user id (add_organization_member, 020_organizations.sql); the
-- person becomes a member only when they accept after logging in
-- (accept_organization_invitation), or never (decline, or an admin revokes).
-- Before accepting, the admin sees the address they typed, never the person's
-- name, and the answer to an invitation is the same whether the address has
-- an account or not.
--
-- An address without an account gets one, without a password: it cannot log
-- in. The invitation's one-time code, which the admin hands over, sets the
-- person's own password once (set_password_with_invitation_code), and does
-- nothing else: it is no login, and it never touches an account that has a
-- password or that another organization's invitation created. Every
-- invitation answers with a code, so that the answer does not say whether the
-- address had an account; for an existing account the code sets nothing.
--
-- Refusals: CB002 unknown organization, user or invitation; CB008 not the
-- invited user / not an admin, or a code that does not match; CB009
-- malformed input; CB010 already a member or already invited; CB012 a
-- personal organization, or an invitation that is no longer pending.



-- ledger_invitation_code_lifetime(): how long an invitation's one-time code
-- can set the invited person's first password. Raises nothing.
create or replace function ledger_invitation_code_lifetime()
returns interval
language sql
immutable
as $$
    select interval '7 days';
$$;

comment on function ledger_invitation_code_lifetime() is
    'ledger_invitation_code_lifetime(): how long an invitation''s one-time code can set the invited person''s '
    'first password. Raises nothing.';


-- ledger_code_digest(p_code): returns the hex sha256 of a one-time code, as
-- stored (the code itself is 122 random bits: a fast digest is enough).
-- Raises nothing.
create or replace function ledger_code_digest(p_code text)
returns text
language sql
immutable
as $$
    select encode(sha256(convert_to(btrim(p_code), 'UTF8')), 'hex');
$$;

comment on function ledger_code_digest(text) is
    'ledger_code_digest(p_code): returns the hex sha256 of a one-time code, as stored (the code itself is 122 '
    'random bits: a fast digest is enough). Raises nothing.';


-- ledger_create_invitation(p_org_id, p_user_id, p_email, p_role, p_actor_id,
--                          p_created_user): returns (invitation_id, one_time_code).
-- The pending invitation of an existing user, for callers that checked the
-- actor's right to invite. The code is stored (as its digest) only when it may
-- set the account's first password: the account has none and an invitation of
-- this organization created it. Writes 'member.invited' (target: the
-- invitation, never the user, so that the organization's audit log says
-- nothing about the account). Raises CB010 (already a member, already invited).
-- Takes no lock beyond the inserted row.
create or replace function ledger_create_invitation(
    p_org_id text,
    p_user_id text,
    p_email text,
    p_role text,
    p_actor_id text,
    p_created_user boolean
)
returns table (invitation_id text, one_time_code text)
language plpgsql
as $$
declare
    v_who text := coalesce(p_email, format('User %L', p_user_id));
    v_code text := replace(gen_random_uuid()::text, '-', '');
    v_usable boolean;
    v_id text;
begin
    if exists (select 1 from organization_members where org_id = p_org_id and user_id = p_user_id) then
        raise exception using errcode = 'CB010',
            message = format('%s is already a member of organization %L.', v_who, p_org_id);
    end if;
    if exists (select 1 from organization_invitations
                where org_id = p_org_id and user_id = p_user_id and status = 'pending') then
        raise exception using errcode = 'CB010',
            message = format('%s already has a pending invitation to organization %L: revoke it to send a new one.',
                             v_who, p_org_id);
    end if;
    v_usable := p_created_user
        or ((select password_hash is null from users where id = p_user_id)
            and exists (select 1 from organization_invitations
                         where org_id = p_org_id and user_id = p_user_id and created_user));
    insert into organization_invitations (org_id, user_id, email, role, invited_by, created_user,
                                          code_hash, code_expires_at)
    values (p_org_id, p_user_id, p_email, p_role, p_actor_id, p_created_user,
            case when v_usable then ledger_code_digest(v_code) end,
            case when v_usable then now() + ledger_invitation_code_lifetime() end)
    on conflict do nothing
    returning id into v_id;
    if v_id is null then  -- a concurrent invitation of the same person won
        raise exception using errcode = 'CB010',
            message = format('%s already has a pending invitation to organization %L: revoke it to send a new one.',
                             v_who, p_org_id);
    end if;
    perform ledger_audit(p_org_id, p_actor_id, 'member.invited', 'invitation', v_id,
                         jsonb_build_object('invited', coalesce(p_email, p_user_id), 'role', p_role));
    return query select v_id, v_code;
end;
$$;

comment on function ledger_create_invitation(text, text, text, text, text, boolean) is
    'ledger_create_invitation(p_org_id, p_user_id, p_email, p_role, p_actor_id, p_created_user): returns '
    '(invitation_id, one_time_code). The pending invitation of an existing user, for callers that checked the '
    'actor''s right to invite. The code is stored (as its digest) only when it may set the account''s first '
    'password: the account has none and an invitation of this organization created it. Writes ''member.invited'' '
    '(target: the invitation, never the user, so that the organization''s audit log says nothing about the '
    'account). Raises CB010 (already a member, already invited). Takes no lock beyond the inserted row.';


-- invite_organization_member(p_org_id, p_email, p_role, p_actor_id,
--                            p_display_name): returns (invitation_id, one_time_code).
-- Invites the person with this email address (any case) to the organization
-- as 'admin' or 'member'. An address without an account gets one (user id: the
-- address, or a generated id when the address is taken as an id; display name
-- p_display_name; no password). The answer has the same shape either way, and
-- the code is to hand over to the person: it sets their own password once,
-- within ledger_invitation_code_lifetime(), when the invitation created their
-- account (set_password_with_invitation_code); for an existing account it sets
-- nothing (they log in as usual and accept). p_display_name is ignored for an
-- existing account. p_actor_id, when given, must be an admin of the
-- organization (or a system admin); null is the operator. The role is checked
-- before the address is looked up. Locks the address (an advisory lock: two
-- organizations inviting a new address at once create one account). Raises
-- CB002 (unknown organization or actor), CB008, CB009 (bad email, name or
-- role), CB010 (already a member, already invited), CB012 (a personal
-- organization).
create or replace function invite_organization_member(
    p_org_id text,
    p_email text,
    p_role text default 'member',
    p_actor_id text default null,
    p_display_name text default null
)
returns table (invitation_id text, one_time_code text)
language plpgsql
as $$
declare
    v_email text;
    v_user_id text;
    v_created boolean := false;
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    if p_role is null or p_role not in ('admin', 'member') then
        raise exception using errcode = 'CB009',
            message = format('Role must be ''admin'' or ''member'' (got %L).', p_role);
    end if;
    perform ledger_check_email(p_email);
    perform ledger_check_text(p_display_name, 'Display name', 200, false);
    if exists (select 1 from organizations where id = p_org_id and kind = 'personal') then
        raise exception using errcode = 'CB012',
            message = format('Organization %L is a personal balance: it has no members besides its owner.', p_org_id);
    end if;
    v_email := lower(btrim(p_email));
    perform pg_advisory_xact_lock(hashtextextended('invitation:' || v_email, 0));
    select id into v_user_id from users where lower(email) = v_email;
    if not found then
        v_user_id := case when length(v_email) <= 128 and v_email !~ '[[:space:][:cntrl:]]'
                               and not exists (select 1 from users where id = v_email)
                          then v_email else 'u-' || gen_random_uuid()::text end;
        insert into users (id, email, display_name, is_system_admin, password_hash)
        values (v_user_id, v_email, nullif(btrim(p_display_name), ''), false, null);
        perform ledger_audit(null, p_actor_id, 'user.created', 'user', v_user_id,
                             jsonb_build_object('email', v_email, 'is_system_admin', false,
                                                'invited_to', p_org_id));
        v_created := true;
    end if;
    return query select * from ledger_create_invitation(p_org_id, v_user_id, v_email, p_role, p_actor_id, v_created);
end;
$$;

comment on function invite_organization_member(text, text, text, text, text) is
    'invite_organization_member(p_org_id, p_email, p_role, p_actor_id, p_display_name): returns (invitation_id, '
    'one_time_code). Invites the person with this email address (any case) to the organization as ''admin'' or '
    '''member''. An address without an account gets one (user id: the address, or a generated id when the address '
    'is taken as an id; display name p_display_name; no password). The answer has the same shape either way, and '
    'the code is to hand over to the person: it sets their own password once, within '
    'ledger_invitation_code_lifetime(), when the invitation created their account '
    '(set_password_with_invitation_code); for an existing account it sets nothing (they log in as usual and '
    'accept). p_display_name is ignored for an existing account. p_actor_id, when given, must be an admin of the '
    'organization (or a system admin); null is the operator. The role is checked before the address is looked up. '
    'Locks the address (an advisory lock: two organizations inviting a new address at once create one account). '
    'Raises CB002 (unknown organization or actor), CB008, CB009 (bad email, name or role), CB010 (already a '
    'member, already invited), CB012 (a personal organization).';


-- ledger_pending_invitation(p_invitation_id): returns the invitation row,
-- locked FOR UPDATE. Raises CB002 (unknown invitation), CB012 (no longer
-- pending: says what happened to it).
create or replace function ledger_pending_invitation(p_invitation_id text)
returns organization_invitations
language plpgsql
as $$
declare
    v_invitation organization_invitations;
begin
    select * into v_invitation from organization_invitations where id = p_invitation_id for update;
    if not found then
        raise exception using errcode = 'CB002',
            message = format('Invitation %L does not exist.', p_invitation_id);
    end if;
    if v_invitation.status <> 'pending' then
        raise exception using errcode = 'CB012',
            message = format('This invitation to organization %L was already %s: nothing changed.',
                             v_invitation.org_id, v_invitation.status);
    end if;
    return v_invitation;
end;
$$;

comment on function ledger_pending_invitation(text) is
    'ledger_pending_invitation(p_invitation_id): returns the invitation row, locked FOR UPDATE. Raises CB002 '
    '(unknown invitation), CB012 (no longer pending: says what happened to it).';


-- ledger_invitation_of(p_invitation_id, p_actor_id): returns the pending
-- invitation of p_actor_id, locked FOR UPDATE (see ledger_pending_invitation).
-- Only the invited user answers their invitation. Raises CB002, CB008 (an
-- invitation of someone else, or no acting user), CB012.
create or replace function ledger_invitation_of(p_invitation_id text, p_actor_id text)
returns organization_invitations
language plpgsql
as $$
declare
    v_invitation organization_invitations;
begin
    if p_actor_id is null then
        raise exception using errcode = 'CB008',
            message = 'Only the invited user answers an invitation: log in as them.';
    end if;
    perform ledger_require_user(p_actor_id, 'Acting user');
    select * into v_invitation from organization_invitations where id = p_invitation_id;
    if found and v_invitation.user_id <> p_actor_id then
        raise exception using errcode = 'CB008',
            message = 'This invitation is for another user: only they can answer it.';
    end if;
    return ledger_pending_invitation(p_invitation_id);
end;
$$;

comment on function ledger_invitation_of(text, text) is
    'ledger_invitation_of(p_invitation_id, p_actor_id): returns the pending invitation of p_actor_id, locked FOR '
    'UPDATE (see ledger_pending_invitation). Only the invited user answers their invitation. Raises CB002, CB008 '
    '(an invitation of someone else, or no acting user), CB012.';


-- accept_organization_invitation(p_invitation_id, p_actor_id): returns the
-- organization id. The invited user (p_actor_id) joins the organization with
-- the invited role (their first organization becomes their default); the
-- invitation is 'accepted'. Already a member (a system admin added them
-- meanwhile): the invitation is closed as accepted and nothing else changes.
-- Writes 'member.invitation_accepted' and 'member.added' audit rows. Locks the
-- organization's pool row (membership changes of an organization are
-- serialized there), then the invitation row. Raises CB002, CB008 (not the
-- invited user; an account an invitation created that has not set its
-- password yet), CB012 (not pending any more).
create or replace function accept_organization_invitation(p_invitation_id text, p_actor_id text)
returns text
language plpgsql
as $$
declare
    v_invitation organization_invitations;
begin
    select * into v_invitation from organization_invitations where id = p_invitation_id;
    if found then
        perform ledger_lock_pool(v_invitation.org_id);
    end if;
    v_invitation := ledger_invitation_of(p_invitation_id, p_actor_id);
    if (select password_hash is null from users where id = p_actor_id)
       and exists (select 1 from organization_invitations where user_id = p_actor_id and created_user) then
        raise exception using errcode = 'CB008',
            message = 'Set your password first (with the one-time code of the invitation), then log in and accept.';
    end if;
    if not exists (select 1 from organization_members where org_id = v_invitation.org_id and user_id = p_actor_id) then
        perform ledger_insert_member(v_invitation.org_id, p_actor_id, v_invitation.role, p_actor_id);
    end if;
    update organization_invitations set status = 'accepted', decided_at = now(), decided_by = p_actor_id
     where id = p_invitation_id;
    perform ledger_audit(v_invitation.org_id, p_actor_id, 'member.invitation_accepted', 'invitation',
                         p_invitation_id, jsonb_build_object('role', v_invitation.role));
    return v_invitation.org_id;
end;
$$;

comment on function accept_organization_invitation(text, text) is
    'accept_organization_invitation(p_invitation_id, p_actor_id): returns the organization id. The invited user '
    '(p_actor_id) joins the organization with the invited role (their first organization becomes their default); '
    'the invitation is ''accepted''. Already a member (a system admin added them meanwhile): the invitation is '
    'closed as accepted and nothing else changes. Writes ''member.invitation_accepted'' and ''member.added'' '
    'audit rows. Locks the organization''s pool row (membership changes of an organization are serialized there), '
    'then the invitation row. Raises CB002, CB008 (not the invited user; an account an invitation created that '
    'has not set its password yet), CB012 (not pending any more).';


-- decline_organization_invitation(p_invitation_id, p_actor_id): returns
-- nothing. The invited user says no: the invitation is 'declined' (its code
-- dies with it). Writes 'member.invitation_declined'. Locks the invitation
-- row. Raises CB002, CB008 (not the invited user), CB012 (not pending any more).
create or replace function decline_organization_invitation(p_invitation_id text, p_actor_id text)
returns void
language plpgsql
as $$
declare
    v_invitation organization_invitations;
begin
    v_invitation := ledger_invitation_of(p_invitation_id, p_actor_id);
    update organization_invitations set status = 'declined', decided_at = now(), decided_by = p_actor_id
     where id = p_invitation_id;
    perform ledger_audit(v_invitation.org_id, p_actor_id, 'member.invitation_declined', 'invitation',
                         p_invitation_id, '{}');
end;
$$;

comment on function decline_organization_invitation(text, text) is
    'decline_organization_invitation(p_invitation_id, p_actor_id): returns nothing. The invited user says no: the '
    'invitation is ''declined'' (its code dies with it). Writes ''member.invitation_declined''. Locks the '
    'invitation row. Raises CB002, CB008 (not the invited user), CB012 (not pending any more).';


-- revoke_organization_invitation(p_invitation_id, p_actor_id): returns
-- nothing. An admin of the invitation's organization (or a system admin; null:
-- the operator) takes a pending invitation back: it is 'revoked' and its code
-- dies with it. Writes 'member.invitation_revoked'. Locks the invitation row.
-- Raises CB002 (unknown invitation or actor), CB008, CB012 (not pending any more).
create or replace function revoke_organization_invitation(p_invitation_id text, p_actor_id text default null)
returns void
language plpgsql
as $$
declare
    v_org_id text;
    v_invitation organization_invitations;
begin
    select org_id into v_org_id from organization_invitations where id = p_invitation_id;
    if not found then
        raise exception using errcode = 'CB002',
            message = format('Invitation %L does not exist.', p_invitation_id);
    end if;
    perform ledger_authorize(p_actor_id, v_org_id, 'admin');
    v_invitation := ledger_pending_invitation(p_invitation_id);
    update organization_invitations set status = 'revoked', decided_at = now(), decided_by = p_actor_id
     where id = p_invitation_id;
    perform ledger_audit(v_invitation.org_id, p_actor_id, 'member.invitation_revoked', 'invitation',
                         p_invitation_id, jsonb_build_object('invited', coalesce(v_invitation.email, v_invitation.user_id)));
end;
$$;

comment on function revoke_organization_invitation(text, text) is
    'revoke_organization_invitation(p_invitation_id, p_actor_id): returns nothing. An admin of the invitation''s '
    'organization (or a system admin; null: the operator) takes a pending invitation back: it is ''revoked'' and '
    'its code dies with it. Writes ''member.invitation_revoked''. Locks the invitation row. Raises CB002 (unknown '
    'invitation or actor), CB008, CB012 (not pending any more).';


-- organization_pending_invitations(p_org_id, p_actor_id): the organization's
-- pending invitations, newest first, for its admins (and system admins; null:
-- the operator): invitation_id, invited (the email the admin typed, or the
-- user id they named), role, invited_by (name), created_at. Never the invited
-- person's name, nor whether the address has an account. Raises CB002, CB008.
create or replace function organization_pending_invitations(p_org_id text, p_actor_id text)
returns table (invitation_id text, invited text, role text, invited_by text, created_at timestamptz)
language plpgsql
stable
as $$
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    return query
        select i.id, coalesce(i.email, i.user_id), i.role,
               coalesce(u.display_name, u.email, 'the operator'), i.created_at
          from organization_invitations i
          left join users u on u.id = i.invited_by
         where i.org_id = p_org_id and i.status = 'pending'
         order by i.created_at desc, i.id;
end;
$$;

comment on function organization_pending_invitations(text, text) is
    'organization_pending_invitations(p_org_id, p_actor_id): the organization''s pending invitations, newest '
    'first, for its admins (and system admins; null: the operator): invitation_id, invited (the email the admin '
    'typed, or the user id they named), role, invited_by (name), created_at. Never the invited person''s name, '
    'nor whether the address has an account. Raises CB002, CB008.';


-- my_pending_invitations(p_actor_id): the acting user's pending invitations,
-- newest first: invitation_id, org_id, org_name, role, invited_by (name),
-- created_at. Raises CB002 (unknown user), CB008 (no acting user).
create or replace function my_pending_invitations(p_actor_id text)
returns table (invitation_id text, org_id text, org_name text, role text, invited_by text, created_at timestamptz)
language plpgsql
stable
as $$
begin
    if p_actor_id is null then
        raise exception using errcode = 'CB008', message = 'No acting user: log in first.';
    end if;
    perform ledger_require_actor(p_actor_id);  -- an empty one: no one logged in
    return query
        select i.id, i.org_id, o.name, i.role, coalesce(u.display_name, u.email, 'the operator'), i.created_at
          from organization_invitations i
          join organizations o on o.id = i.org_id
          left join users u on u.id = i.invited_by
         where i.user_id = p_actor_id and i.status = 'pending'
         order by i.created_at desc, i.id;
end;
$$;

comment on function my_pending_invitations(text) is
    'my_pending_invitations(p_actor_id): the acting user''s pending invitations, newest first: invitation_id, '
    'org_id, org_name, role, invited_by (name), created_at. Raises CB002 (unknown user), CB008 (no acting user).';


-- set_password_with_invitation_code(p_email, p_code, p_new_hash): returns nothing.
-- For a person whose account an invitation created: their one-time code sets
-- their own password (a bcrypt hash made by the caller) once; then they log in
-- with it and answer the invitation. The code is no login and does nothing
-- else; it works only while the account has no password, the invitation is
-- pending and within ledger_invitation_code_lifetime(). Any mismatch (unknown
-- email, wrong, used or expired code, an account with a password) gets the
-- same refusal, so the answer says nothing about which addresses have
-- accounts. Writes 'user.password_set' (in the organization of the
-- invitation). Locks the user row and the invitation row. Raises CB008 (no
-- such code), CB009 (malformed input, a hash that is not bcrypt).
create or replace function set_password_with_invitation_code(p_email text, p_code text, p_new_hash text)
returns void
language plpgsql
as $$
declare
    v_user_id text;
    v_invitation_id text;
    v_org_id text;
begin
    perform ledger_check_text(p_email, 'Email', 254);
    perform ledger_check_text(p_code, 'One-time code', 200);
    if p_new_hash is null or p_new_hash !~ '^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$' then
        raise exception using errcode = 'CB009',
            message = 'The new password must be stored as a bcrypt hash: hash it with billing_core.auth.hash_password.';
    end if;
    select u.id, i.id, i.org_id into v_user_id, v_invitation_id, v_org_id
      from users u
      join organization_invitations i on i.user_id = u.id
     where lower(u.email) = lower(btrim(p_email))
       and i.code_hash = ledger_code_digest(p_code)
       and i.status = 'pending' and i.code_used_at is null and i.code_expires_at > now()
       and u.password_hash is null
     for update of u, i;
    if v_user_id is null then
        raise exception using errcode = 'CB008',
            message = 'This email and one-time code do not match an open invitation (a code works once, for 7 days): '
                      'ask the admin who invited you to invite you again. Already have a password? Log in.';
    end if;
    update users set password_hash = p_new_hash, failed_login_attempts = 0, last_failed_login_at = null
     where id = v_user_id;
    update organization_invitations set code_used_at = now() where id = v_invitation_id;
    perform ledger_audit(v_org_id, v_user_id, 'user.password_set', 'user', v_user_id,
                         jsonb_build_object('with', 'invitation code'));
end;
$$;

comment on function set_password_with_invitation_code(text, text, text) is
    'set_password_with_invitation_code(p_email, p_code, p_new_hash): returns nothing. For a person whose account '
    'an invitation created: their one-time code sets their own password (a bcrypt hash made by the caller) once; '
    'then they log in with it and answer the invitation. The code is no login and does nothing else; it works '
    'only while the account has no password, the invitation is pending and within '
    'ledger_invitation_code_lifetime(). Any mismatch (unknown email, wrong, used or expired code, an account with '
    'a password) gets the same refusal, so the answer says nothing about which addresses have accounts. Writes '
    '''user.password_set'' (in the organization of the invitation). Locks the user row and the invitation row. '
    'Raises CB008 (no such code), CB009 (malformed input, a hash that is not bcrypt).';
