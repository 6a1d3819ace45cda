-- Logins, server-side sessions, passwords and application settings.
--
-- The app's login cookie (streamlit-authenticator's signed token) stays valid
-- after a logout or a password change, so the app keeps a row in
-- user_sessions per login and asks check_user_session on every run. A session
-- is live while it has not ended, has been seen within its idle timeout, and
-- the user's password is still the one it started with (users.password_changed_at,
-- which the trigger below moves on every change of password_hash, however it
-- is made).
--
-- Refusals: CB002 unknown user, CB007 concurrent password change, CB008 dead
-- session or missing role, CB009 malformed input, CB010 cookie already bound,
-- CB013 too many failed logins.


-- ledger_login_lockout_window(): returns how long failed logins count: after
-- 5 failures within this window the app refuses further attempts until the
-- window has passed (or a password reset clears the count). Raises nothing.
create or replace function ledger_login_lockout_window()
returns interval
language sql
immutable
as $$
    select interval '15 minutes';
$$;

comment on function ledger_login_lockout_window() is
    'ledger_login_lockout_window(): returns how long failed logins count: after 5 failures within this window the '
    'app refuses further attempts until the window has passed (or a password reset clears the count). Raises '
    'nothing.';


-- ledger_login_max_attempts(): returns how many logins may fail within
-- ledger_login_lockout_window() before begin_login_attempt refuses the next
-- one. Raises nothing.
create or replace function ledger_login_max_attempts()
returns integer
language sql
immutable
as $$
    select 5;
$$;

comment on function ledger_login_max_attempts() is
    'ledger_login_max_attempts(): returns how many logins may fail within ledger_login_lockout_window() before '
    'begin_login_attempt refuses the next one. Raises nothing.';


-- ledger_session_lifetime(): returns the longest a login session lives,
-- however active it is (besides check_user_session's idle timeout). Raises
-- nothing.
create or replace function ledger_session_lifetime()
returns interval
language sql
immutable
as $$
    select interval '7 days';
$$;

comment on function ledger_session_lifetime() is
    'ledger_session_lifetime(): returns the longest a login session lives, however active it is (besides '
    'check_user_session''s idle timeout). Raises nothing.';


-- ledger_touch_password_changed(): trigger function (BEFORE UPDATE OF
-- password_hash ON users): stamps users.password_changed_at with the clock
-- whenever the hash really changes, which makes every session started
-- before the change dead. Raises nothing.
create or replace function ledger_touch_password_changed()
returns trigger
language plpgsql
as $$
begin
    if new.password_hash is distinct from old.password_hash then
        new.password_changed_at := clock_timestamp();
    end if;
    return new;
end;
$$;

comment on function ledger_touch_password_changed() is
    'ledger_touch_password_changed(): trigger function (BEFORE UPDATE OF password_hash ON users): stamps '
    'users.password_changed_at with the clock whenever the hash really changes, which makes every session started '
    'before the change dead. Raises nothing.';


create or replace trigger users_password_changed
    before update of password_hash on users
    for each row execute function ledger_touch_password_changed();


-- login_credentials: one row per user who can log in (has a password hash),
-- as the login form needs it: email (the login name), name, hash, the failed
-- attempts that still count (those within ledger_login_lockout_window()),
-- and the user's roles ('system_admin', 'admin', 'member').

create view login_credentials as
select u.id as user_id,
       u.email,
       coalesce(u.display_name, u.email) as name,
       u.password_hash,
       case when u.last_failed_login_at > now() - ledger_login_lockout_window()
            then u.failed_login_attempts else 0 end as failed_login_attempts,
       array_remove(
           array[case when u.is_system_admin then 'system_admin' end]
           || coalesce((select array_agg(distinct m.role order by m.role)
                        from organization_members m where m.user_id = u.id), '{}'),
           null) as roles
  from users u
 where u.password_hash is not null;

comment on view login_credentials is
    'login_credentials: one row per user who can log in (has a password hash), as the login form needs it: email '
    '(the login name), name, hash, the failed attempts that still count (those within '
    'ledger_login_lockout_window()), and the user''s roles (''system_admin'', ''admin'', ''member''). Dropped and '
    're-created, so that a later change of its columns applies.';


-- app_setting(p_key, p_value_if_missing): returns the stored value of setting
-- p_key, storing p_value_if_missing first when the setting does not exist
-- (the first caller wins; concurrent callers all get the same value).
-- Raises CB009 for a malformed key or a blank value. Locks nothing beyond
-- the inserted row.
create or replace function app_setting(p_key text, p_value_if_missing text)
returns text
language plpgsql
as $$
declare
    v_value text;
begin
    if p_key is null or p_key !~ '^[a-z][a-z0-9_.]{0,63}$' then
        raise exception using errcode = 'CB009',
            message = format('Setting name %L must be lower-case letters, digits, dots or underscores.', p_key);
    end if;
    perform ledger_check_text(p_value_if_missing, format('Value of setting %s', p_key), 10000);
    insert into app_settings (key, value) values (p_key, p_value_if_missing) on conflict (key) do nothing;
    select value into v_value from app_settings where key = p_key;
    return v_value;
end;
$$;

comment on function app_setting(text, text) is
    'app_setting(p_key, p_value_if_missing): returns the stored value of setting p_key, storing '
    'p_value_if_missing first when the setting does not exist (the first caller wins; concurrent callers all get '
    'the same value). Raises CB009 for a malformed key or a blank value. Locks nothing beyond the inserted row.';


-- start_user_session(p_user_id, p_cookie_ref): returns the new session's id.
-- Called after a successful login: records the session (bound to the login
-- cookie named by p_cookie_ref, when given), clears the failed-login count
-- and stamps last_login_at. Locks the user row. Raises CB002 (unknown user),
-- CB008 (the user has no password: cannot log in), CB009 (malformed cookie
-- reference), CB010 (the cookie is already bound to another session).
create or replace function start_user_session(p_user_id text, p_cookie_ref text default null)
returns text
language plpgsql
as $$
declare
    v_user users;
    v_id text;
begin
    perform ledger_check_text(p_cookie_ref, 'Cookie reference', 128, false);
    select * into v_user from users where id = p_user_id for update;
    if not found then
        raise exception using errcode = 'CB002', message = format('User %L does not exist.', p_user_id);
    end if;
    if v_user.password_hash is null then
        raise exception using errcode = 'CB008',
            message = format('User %L has no password and cannot log in: ask a system admin to set one.', p_user_id);
    end if;
    if p_cookie_ref is not null and exists (select 1 from user_sessions where cookie_ref = p_cookie_ref) then
        raise exception using errcode = 'CB010',
            message = 'This login cookie already belongs to another session: log in again.';
    end if;
    insert into user_sessions (user_id, cookie_ref, password_changed_at)
    values (p_user_id, nullif(p_cookie_ref, ''), v_user.password_changed_at)
    returning id into v_id;
    update users set failed_login_attempts = 0, last_failed_login_at = null, last_login_at = now()
     where id = p_user_id;
    return v_id;
end;
$$;

comment on function start_user_session(text, text) is
    'start_user_session(p_user_id, p_cookie_ref): returns the new session''s id. Called after a successful login: '
    'records the session (bound to the login cookie named by p_cookie_ref, when given), clears the failed-login '
    'count and stamps last_login_at. Locks the user row. Raises CB002 (unknown user), CB008 (the user has no '
    'password: cannot log in), CB009 (malformed cookie reference), CB010 (the cookie is already bound to another '
    'session).';


-- check_user_session(p_session_id, p_idle_timeout): returns the session's
-- user id when the session is live, and marks it seen (at most one write a
-- minute). Raises CB008, with the reason and what to do, when the session is
-- unknown, ended (logout, password changed or reset), idle for longer than
-- p_idle_timeout, older than ledger_session_lifetime() (7 days) however
-- active, or started before the user's latest password change. A
-- refusal writes nothing. Takes no lock beyond the session row it touches.
create or replace function check_user_session(p_session_id text, p_idle_timeout interval default interval '12 hours')
returns text
language plpgsql
as $$
declare
    v_session user_sessions;
    v_changed_at timestamptz;
    v_has_password boolean;
begin
    select * into v_session from user_sessions where id = p_session_id;
    if not found then
        raise exception using errcode = 'CB008', message = 'Your login session is unknown: please log in again.';
    end if;
    if v_session.ended_at is not null then
        raise exception using errcode = 'CB008',
            message = case v_session.end_reason
                when 'logout' then 'You logged out: please log in again.'
                when 'password_changed' then 'Your password was changed: please log in again with the new password.'
                when 'password_reset' then 'A system admin reset your password: please log in with the new password.'
                else 'Your session expired: please log in again.'
            end;
    end if;
    select password_changed_at, password_hash is not null into v_changed_at, v_has_password
      from users where id = v_session.user_id;
    if v_changed_at is distinct from v_session.password_changed_at or not v_has_password then
        raise exception using errcode = 'CB008',
            message = 'Your password was changed since you logged in: please log in again with the new password.';
    end if;
    if v_session.last_seen_at < now() - p_idle_timeout then
        raise exception using errcode = 'CB008',
            message = format('Your session expired after %s without activity: please log in again.', p_idle_timeout);
    end if;
    if v_session.started_at < now() - ledger_session_lifetime() then
        raise exception using errcode = 'CB008',
            message = format('Your login is older than %s, the longest a login lasts: please log in again.',
                             ledger_session_lifetime());
    end if;
    update user_sessions set last_seen_at = now()
     where id = p_session_id and last_seen_at < now() - interval '1 minute';
    return v_session.user_id;
end;
$$;

comment on function check_user_session(text, interval) is
    'check_user_session(p_session_id, p_idle_timeout): returns the session''s user id when the session is live, '
    'and marks it seen (at most one write a minute). Raises CB008, with the reason and what to do, when the '
    'session is unknown, ended (logout, password changed or reset), idle for longer than p_idle_timeout, older '
    'than ledger_session_lifetime() (7 days) however active, or started before the user''s latest password '
    'change. A refusal writes nothing. Takes no lock beyond the session row it touches.';


-- resume_user_session(p_cookie_ref, p_idle_timeout): returns the id of the
-- session bound to the login cookie p_cookie_ref, when that session is live
-- (a browser coming back with its cookie). Raises CB008 when no session is
-- bound to the cookie or the bound one is dead (see check_user_session).
create or replace function resume_user_session(p_cookie_ref text, p_idle_timeout interval default interval '12 hours')
returns text
language plpgsql
as $$
declare
    v_id text;
begin
    select id into v_id from user_sessions where cookie_ref = p_cookie_ref;
    if v_id is null then
        raise exception using errcode = 'CB008', message = 'Your login cookie belongs to no session: please log in again.';
    end if;
    perform check_user_session(v_id, p_idle_timeout);
    return v_id;
end;
$$;

comment on function resume_user_session(text, interval) is
    'resume_user_session(p_cookie_ref, p_idle_timeout): returns the id of the session bound to the login cookie '
    'p_cookie_ref, when that session is live (a browser coming back with its cookie). Raises CB008 when no '
    'session is bound to the cookie or the bound one is dead (see check_user_session).';


-- end_user_session(p_session_id, p_reason): returns true when it ended a live
-- session, false when the session was unknown or had already ended (a logout
-- is safe to repeat). p_reason is 'logout' (default) or 'expired'. Raises
-- CB009 for another reason. Locks the session row.
create or replace function end_user_session(p_session_id text, p_reason text default 'logout')
returns boolean
language plpgsql
as $$
begin
    if p_reason is null or p_reason not in ('logout', 'expired') then
        raise exception using errcode = 'CB009',
            message = format('A session ends by ''logout'' or ''expired'' (got %L).', p_reason);
    end if;
    update user_sessions set ended_at = now(), end_reason = p_reason
     where id = p_session_id and ended_at is null;
    return found;
end;
$$;

comment on function end_user_session(text, text) is
    'end_user_session(p_session_id, p_reason): returns true when it ended a live session, false when the session '
    'was unknown or had already ended (a logout is safe to repeat). p_reason is ''logout'' (default) or '
    '''expired''. Raises CB009 for another reason. Locks the session row.';


-- change_user_password(p_user_id, p_new_hash, p_actor_id, p_expected_old_hash,
--                      p_keep_session_id): returns how many sessions it ended.
-- Sets the user's bcrypt password hash and ends every live session of the
-- user except p_keep_session_id (the session the change was made from), so
-- other browsers are logged out; the kept session stays live. Clears the
-- failed-login count and writes the audit log (never the hash).
--   p_actor_id = p_user_id: the user's own change; p_expected_old_hash is
--     then required (the hash the caller verified the old password against).
--   p_actor_id another user: a system admin's reset; null: a trusted operator.
--   p_expected_old_hash, when given, must still be the stored hash.
-- Locks the user row, then the user's session rows. Raises CB002 (unknown
-- user or actor), CB007 (the password changed meanwhile), CB008 (actor is
-- neither the user nor a system admin), CB009 (not a bcrypt hash, missing
-- expected hash, or a kept session of another user or already ended).
create or replace function change_user_password(
    p_user_id text,
    p_new_hash text,
    p_actor_id text,
    p_expected_old_hash text default null,
    p_keep_session_id text default null
)
returns integer
language plpgsql
as $$
declare
    v_old_hash text;
    v_own boolean := p_actor_id is not null and p_actor_id = p_user_id;
    v_changed_at timestamptz;
    v_ended integer;
begin
    perform ledger_require_user(p_user_id);
    if p_new_hash is null or p_new_hash !~ '^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$' then
        raise exception using errcode = 'CB009',
            message = 'The new password must be stored as a bcrypt hash: hash it with billing_core.auth.hash_password.';
    end if;
    if not v_own then
        perform ledger_authorize(p_actor_id, null, 'system_admin');
    elsif p_expected_old_hash is null then
        raise exception using errcode = 'CB009',
            message = 'Changing your own password needs your current password: nothing was changed.';
    end if;
    if p_keep_session_id is not null and not exists (
            select 1 from user_sessions where id = p_keep_session_id and user_id = p_user_id and ended_at is null) then
        raise exception using errcode = 'CB009',
            message = format('Session to keep is not a live session of user %L: log in again.', p_user_id);
    end if;
    select password_hash into v_old_hash from users where id = p_user_id for update;
    if p_expected_old_hash is not null and v_old_hash is distinct from p_expected_old_hash then
        raise exception using errcode = 'CB007',
            message = 'The password was changed meanwhile (in another window?): nothing was changed; try again.';
    end if;
    update users set password_hash = p_new_hash, failed_login_attempts = 0, last_failed_login_at = null
     where id = p_user_id
    returning password_changed_at into v_changed_at;
    update user_sessions
       set ended_at = now(), end_reason = case when v_own then 'password_changed' else 'password_reset' end
     where user_id = p_user_id and ended_at is null and id is distinct from p_keep_session_id;
    get diagnostics v_ended = row_count;
    update user_sessions set password_changed_at = v_changed_at where id = p_keep_session_id;
    perform ledger_audit(null, p_actor_id,
                         case when v_own then 'user.password_changed' else 'user.password_reset' end,
                         'user', p_user_id, jsonb_build_object('sessions_ended', v_ended));
    return v_ended;
end;
$$;

comment on function change_user_password(text, text, text, text, text) is
    'change_user_password(p_user_id, p_new_hash, p_actor_id, p_expected_old_hash, p_keep_session_id): returns how '
    'many sessions it ended. Sets the user''s bcrypt password hash and ends every live session of the user except '
    'p_keep_session_id (the session the change was made from), so other browsers are logged out; the kept session '
    'stays live. Clears the failed-login count and writes the audit log (never the hash). p_actor_id = p_user_id: '
    'the user''s own change; p_expected_old_hash is then required (the hash the caller verified the old password '
    'against). p_actor_id another user: a system admin''s reset; null: a trusted operator. p_expected_old_hash, '
    'when given, must still be the stored hash. Locks the user row, then the user''s session rows. Raises CB002 '
    '(unknown user or actor), CB007 (the password changed meanwhile), CB008 (actor is neither the user nor a '
    'system admin), CB009 (not a bcrypt hash, missing expected hash, or a kept session of another user or already '
    'ended).';


-- record_failed_login(p_email, p_attempts): returns the user's failed-login
-- count within ledger_login_lockout_window() after adding p_attempts, or null
-- when no user has this email (the caller learns nothing more; nothing is
-- written). Failures older than the window no longer count. Locks the user
-- row. Raises CB009 unless p_attempts is 1 to 100.
create or replace function record_failed_login(p_email text, p_attempts integer default 1)
returns integer
language plpgsql
as $$
declare
    v_count integer;
begin
    if p_attempts is null or p_attempts not between 1 and 100 then
        raise exception using errcode = 'CB009',
            message = format('Failed attempts to record must be 1 to 100 (got %s).', coalesce(p_attempts::text, 'nothing'));
    end if;
    update users
       set failed_login_attempts = case when last_failed_login_at > now() - ledger_login_lockout_window()
                                        then failed_login_attempts else 0 end + p_attempts,
           last_failed_login_at = now()
     where lower(email) = lower(btrim(p_email))
    returning failed_login_attempts into v_count;
    return v_count;
end;
$$;

comment on function record_failed_login(text, integer) is
    'record_failed_login(p_email, p_attempts): returns the user''s failed-login count within '
    'ledger_login_lockout_window() after adding p_attempts, or null when no user has this email (the caller '
    'learns nothing more; nothing is written). Failures older than the window no longer count. Locks the user '
    'row. Raises CB009 unless p_attempts is 1 to 100.';


-- begin_login_attempt(p_email): returns the user who is trying to log in with
-- this email (any case, surrounding spaces ignored): user id, email, name,
-- bcrypt password hash and roles, one row; no row when no user with a
-- password has this email (nothing is written). The attempt is counted
-- BEFORE the caller checks the password: the user row is locked, the failures
-- within ledger_login_lockout_window() are counted and this attempt is added
-- to them, so parallel attempts queue on the row and at most
-- ledger_login_max_attempts() passwords are ever checked per window. A
-- successful login clears the count (start_user_session). Raises CB013 (and
-- writes nothing) once the failures reach the maximum, saying when to try
-- again. Locks the user row.
create or replace function begin_login_attempt(p_email text)
returns table (user_id text, email text, name text, password_hash text, roles text[])
language plpgsql
as $$
declare
    v_user users;
    v_failures integer;
begin
    perform ledger_check_text(p_email, 'Email', 320);
    select * into v_user from users u
     where lower(u.email) = lower(btrim(p_email)) and u.password_hash is not null
     for update;
    if not found then
        return;
    end if;
    v_failures := case when v_user.last_failed_login_at > now() - ledger_login_lockout_window()
                       then v_user.failed_login_attempts else 0 end;
    if v_failures >= ledger_login_max_attempts() then
        raise exception using errcode = 'CB013',
            message = format('Too many failed logins for this email: try again after %s, '
                             'or ask a system admin to reset your password.',
                             ledger_time_text(v_user.last_failed_login_at + ledger_login_lockout_window()));
    end if;
    update users u set failed_login_attempts = v_failures + 1, last_failed_login_at = now()
     where u.id = v_user.id;
    return query
    select v_user.id, v_user.email, coalesce(v_user.display_name, v_user.email), v_user.password_hash,
           array_remove(
               array[case when v_user.is_system_admin then 'system_admin' end]
               || coalesce((select array_agg(distinct m.role order by m.role)
                            from organization_members m where m.user_id = v_user.id), '{}'),
               null);
end;
$$;

comment on function begin_login_attempt(text) is
    'begin_login_attempt(p_email): returns the user who is trying to log in with this email (any case, '
    'surrounding spaces ignored): user id, email, name, bcrypt password hash and roles, one row; no row when no '
    'user with a password has this email (nothing is written). The attempt is counted BEFORE the caller checks '
    'the password: the user row is locked, the failures within ledger_login_lockout_window() are counted and this '
    'attempt is added to them, so parallel attempts queue on the row and at most ledger_login_max_attempts() '
    'passwords are ever checked per window. A successful login clears the count (start_user_session). Raises '
    'CB013 (and writes nothing) once the failures reach the maximum, saying when to try again. Locks the user '
    'row.';


-- login_entry(p_email): the login's view of the user with this email (any
-- case, surrounding spaces ignored): id, email, name, and roles
-- ('system_admin', then each distinct membership role); no row for an
-- unknown email. No password hash (begin_login_attempt reads that, counting
-- the attempt). Locks nothing. Raises nothing.
create or replace function login_entry(p_email text)
returns table (user_id text, email text, name text, roles text[])
language sql
stable
as $$
    select u.id, u.email, coalesce(u.display_name, u.email),
           array_remove(array[case when u.is_system_admin then 'system_admin' end]
                        || coalesce((select array_agg(distinct m.role order by m.role)
                                       from organization_members m where m.user_id = u.id), '{}'), null)
      from users u
     where lower(u.email) = lower(btrim(p_email));
$$;

comment on function login_entry(text) is
    'login_entry(p_email): the login''s view of the user with this email (any case, surrounding spaces ignored): '
    'id, email, name, and roles (''system_admin'', then each distinct membership role); no row for an unknown '
    'email. No password hash (begin_login_attempt reads that, counting the attempt). Locks nothing. Raises '
    'nothing.';


-- user_id_for_email(p_email): the id of the user with this email (any case,
-- surrounding spaces ignored), null when none. Locks nothing. Raises nothing.
create or replace function user_id_for_email(p_email text)
returns text
language sql
stable
as $$
    select u.id from users u where lower(u.email) = lower(btrim(p_email));
$$;

comment on function user_id_for_email(text) is
    'user_id_for_email(p_email): the id of the user with this email (any case, surrounding spaces ignored), null '
    'when none. Locks nothing. Raises nothing.';
