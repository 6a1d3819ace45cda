-- 0004: logins and server-side sessions for the Streamlit app.
--
-- The login cookie that streamlit-authenticator sets is a signed token that
-- stays valid after a logout or a password change; the app therefore keeps a
-- session record here and checks it on every run (sql/routines/060_sessions.sql).

alter table users
    add column failed_login_attempts integer not null default 0,
    add column last_failed_login_at timestamptz,
    add column last_login_at timestamptz,
    -- set by a trigger whenever password_hash changes; null: unchanged since the user was created
    add column password_changed_at timestamptz,
    add constraint users_failed_login_attempts_not_negative check (failed_login_attempts >= 0);

-- One login of one user. A session is live while ended_at is null and the
-- user's password_changed_at is still the one it started with.
--   cookie_ref: a digest naming the login cookie issued with this session, so
--               that a browser coming back with that cookie resumes this
--               session (and is refused once it ended); null without a cookie.
create table user_sessions (
    id text primary key default gen_random_uuid()::text,
    user_id text not null references users (id),
    cookie_ref text,
    password_changed_at timestamptz,
    started_at timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    ended_at timestamptz,
    end_reason text,
    constraint user_sessions_end_reason_known
        check (end_reason in ('logout', 'password_changed', 'password_reset', 'expired')),
    constraint user_sessions_ended_with_reason check ((ended_at is null) = (end_reason is null))
);

create index user_sessions_live_by_user on user_sessions (user_id) where ended_at is null;

create unique index user_sessions_cookie on user_sessions (cookie_ref) where cookie_ref is not null;

-- Settings the application generates once and keeps (the login cookie's
-- signing key, say). A value is written once and never updated in place.
create table app_settings (
    key text primary key,
    value text not null,
    created_at timestamptz not null default now(),
    constraint app_settings_key_format check (key ~ '^[a-z][a-z0-9_.]{0,63}$')
);
