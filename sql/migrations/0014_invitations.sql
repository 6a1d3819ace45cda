-- 0014: invitations to an organization, accepted by the invited user.
--
-- An organization admin no longer adds a person directly: they invite an email
-- address, and the person becomes a member only when they accept after logging
-- in (or never, when they decline or the admin revokes). An address without an
-- account gets one, with no password: the invitation's one-time code sets the
-- person's own password once (sql/routines/047_invitations.sql).
--
--   email:             the address the admin typed (lower-cased): what the admin's
--                      list shows, never the user's name; null for an invitation of a
--                      user id (add_organization_member by an organization admin)
--   created_user:      this invitation created the account (an address that had none)
--   code_hash:         sha256 of the one-time code, when the code may set the
--                      account's first password (only for an account an invitation
--                      of this organization created); null otherwise
--   code_expires_at:   the code works until then (and only while the account has no password)
--   code_used_at:      when the code set the password (it works once)
--   status:            pending, then accepted, declined (by the user) or revoked (by an admin)
create table organization_invitations (
    id text primary key default gen_random_uuid()::text,
    org_id text not null references organizations (id),
    user_id text not null references users (id),
    email text,
    role text not null,
    invited_by text references users (id),
    created_user boolean not null default false,
    code_hash text,
    code_expires_at timestamptz,
    code_used_at timestamptz,
    status text not null default 'pending',
    created_at timestamptz not null default now(),
    decided_at timestamptz,
    decided_by text references users (id),
    constraint organization_invitations_role_known check (role in ('admin', 'member')),
    constraint organization_invitations_status_known check (status in ('pending', 'accepted', 'declined', 'revoked')),
    constraint organization_invitations_decided check ((status = 'pending') = (decided_at is null)),
    constraint organization_invitations_code_expires check ((code_hash is null) = (code_expires_at is null)),
    constraint organization_invitations_code_format check (code_hash ~ '^[0-9a-f]{64}$')
);

-- at most one pending invitation per person and organization
create unique index organization_invitations_one_pending
    on organization_invitations (org_id, user_id) where status = 'pending';

create index organization_invitations_pending_by_user
    on organization_invitations (user_id) where status = 'pending';
