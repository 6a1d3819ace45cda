-- A member's requests for more credits (table credit_requests, migration 0015).
--
-- A member asks the admins of one of their organizations for a number of
-- credits, with an optional note; one pending request per member and
-- organization. The organization's admins (and system admins) approve it,
-- which raises the member's allocation through allocate_credits_to_user (the
-- pool's available credits pay for it, so an approval never mints credits and
-- is refused when the pool cannot cover it), or decline it with an optional
-- reason. The member may withdraw it while it is pending. Every change is
-- audit-logged ('credit_request.created', '.approved', '.declined',
-- '.withdrawn'). Lock order (as everywhere): the pool row first, then the
-- request row.


-- ledger_credit_request_for_update(p_org_id, p_request_id): returns the
-- request, locked. Raises CB002 when the organization has no such request.
create or replace function ledger_credit_request_for_update(p_org_id text, p_request_id text)
returns credit_requests
language plpgsql
as $$
declare
    v_request credit_requests;
begin
    select * into v_request from credit_requests where org_id = p_org_id and id = p_request_id for update;
    if not found then
        raise exception using errcode = 'CB002',
            message = 'This credit request does not exist in the organization (it may have been removed): '
                      'reload the page.';
    end if;
    return v_request;
end;
$$;

comment on function ledger_credit_request_for_update(text, text) is
    'ledger_credit_request_for_update(p_org_id, p_request_id): returns the request, locked. Raises CB002 when the '
    'organization has no such request.';


-- ledger_require_pending_request(p_request): returns nothing. Raises CB012
-- when the request was already approved, declined or withdrawn (saying
-- which): a second decision changes nothing.
create or replace function ledger_require_pending_request(p_request credit_requests)
returns void
language plpgsql
immutable
as $$
begin
    if p_request.status <> 'pending' then
        raise exception using errcode = 'CB012',
            message = format('This request for %s credits was already %s: nothing changed.',
                             ledger_credits_text(p_request.credits), p_request.status);
    end if;
end;
$$;

comment on function ledger_require_pending_request(credit_requests) is
    'ledger_require_pending_request(p_request): returns nothing. Raises CB012 when the request was already '
    'approved, declined or withdrawn (saying which): a second decision changes nothing.';


-- ledger_credits_text(p_credits): credits as a person reads them in a
-- message: thousands separators, no trailing zeros ('1,500', '0.25').
create or replace function ledger_credits_text(p_credits numeric)
returns text
language sql
immutable
as $$
    select rtrim(rtrim(to_char(p_credits, 'FM999,999,999,999,990.999999'), '0'), '.');
$$;

comment on function ledger_credits_text(numeric) is
    'ledger_credits_text(p_credits): credits as a person reads them in a message: thousands separators, no '
    'trailing zeros (''1,500'', ''0.25'').';


-- request_credits(p_org_id, p_credits, p_note, p_actor_id): returns the new
-- request, pending. The acting user asks the admins of p_org_id, an
-- organization they are a member of, for p_credits more credits, with an
-- optional note (at most 500 characters, kept as plain text). One pending
-- request per member and organization. Not for a personal balance (it has no
-- admins to ask). Locks nothing (the unique index keeps one pending request).
-- Raises CB001 (amount), CB002, CB003 (not a member), CB008 (no acting
-- user), CB009 (note), CB010 (a request is already pending), CB011, CB012
-- (a personal balance).
create or replace function request_credits(p_org_id text, p_credits numeric, p_note text, p_actor_id text)
returns credit_requests
language plpgsql
as $$
declare
    v_request credit_requests;
    v_org organizations;
begin
    if p_actor_id is null then
        raise exception using errcode = 'CB008', message = 'No acting user: log in first.';
    end if;
    perform ledger_check_credits(p_credits, 'Credits to request');
    perform ledger_check_text(p_note, 'The note', 500, false);
    perform ledger_require_org(p_org_id, true);
    select * into v_org from organizations where id = p_org_id;
    if v_org.kind = 'personal' then
        raise exception using errcode = 'CB012',
            message = 'Your individual balance has no admins to ask: buy credits for it instead.';
    end if;
    perform ledger_require_member(p_org_id, p_actor_id);
    insert into credit_requests (org_id, user_id, credits, note)
    values (p_org_id, p_actor_id, p_credits, nullif(btrim(p_note), ''))
    on conflict (org_id, user_id) where status = 'pending' do nothing
    returning * into v_request;
    if not found then
        select * into v_request from credit_requests
         where org_id = p_org_id and user_id = p_actor_id and status = 'pending';
        raise exception using errcode = 'CB010',
            message = format('You already asked %s for %s credits and the admins have not answered yet: withdraw '
                             'that request first to ask for another amount.',
                             v_org.name, ledger_credits_text(v_request.credits));
    end if;
    perform ledger_audit(p_org_id, p_actor_id, 'credit_request.created', 'credit_request', v_request.id,
                         jsonb_build_object('credits', p_credits, 'has_note', v_request.note is not null));
    return v_request;
end;
$$;

comment on function request_credits(text, numeric, text, text) is
    'request_credits(p_org_id, p_credits, p_note, p_actor_id): returns the new request, pending. The acting user '
    'asks the admins of p_org_id, an organization they are a member of, for p_credits more credits, with an '
    'optional note (at most 500 characters, kept as plain text). One pending request per member and organization. '
    'Not for a personal balance (it has no admins to ask). Locks nothing (the unique index keeps one pending '
    'request). Raises CB001 (amount), CB002, CB003 (not a member), CB008 (no acting user), CB009 (note), CB010 (a '
    'request is already pending), CB011, CB012 (a personal balance).';


-- preview_credit_request(p_org_id, p_credits, p_note, p_actor_id): returns
-- what request_credits would return, writing nothing (made in a
-- subtransaction and rolled back): the screen's check before it asks to
-- confirm. Raises what request_credits would raise.
create or replace function preview_credit_request(p_org_id text, p_credits numeric, p_note text, p_actor_id text)
returns credit_requests
language plpgsql
as $$
declare
    v_request credit_requests;
begin
    begin
        v_request := request_credits(p_org_id, p_credits, p_note, p_actor_id);
        raise exception using errcode = 'CBPRV', message = 'preview: roll back';
    exception when sqlstate 'CBPRV' then
        null;
    end;
    return v_request;
end;
$$;

comment on function preview_credit_request(text, numeric, text, text) is
    'preview_credit_request(p_org_id, p_credits, p_note, p_actor_id): returns what request_credits would return, '
    'writing nothing (made in a subtransaction and rolled back): the screen''s check before it asks to confirm. '
    'Raises what request_credits would raise.';


-- withdraw_credit_request(p_org_id, p_request_id, p_actor_id): returns the
-- request, withdrawn. Only the member who asked may withdraw, and only while
-- it is pending. Locks the request. Raises CB002, CB008, CB012 (already
-- decided or withdrawn).
create or replace function withdraw_credit_request(p_org_id text, p_request_id text, p_actor_id text)
returns credit_requests
language plpgsql
as $$
declare
    v_request credit_requests;
begin
    perform ledger_require_org(p_org_id);
    v_request := ledger_credit_request_for_update(p_org_id, p_request_id);
    if p_actor_id is null or p_actor_id is distinct from v_request.user_id then
        raise exception using errcode = 'CB008', message = 'Only the member who asked can withdraw a credit request.';
    end if;
    perform ledger_require_pending_request(v_request);
    update credit_requests
       set status = 'withdrawn', decided_by = p_actor_id, decided_at = now()
     where org_id = p_org_id and id = p_request_id
    returning * into v_request;
    perform ledger_audit(p_org_id, p_actor_id, 'credit_request.withdrawn', 'credit_request', p_request_id,
                         jsonb_build_object('credits', v_request.credits));
    return v_request;
end;
$$;

comment on function withdraw_credit_request(text, text, text) is
    'withdraw_credit_request(p_org_id, p_request_id, p_actor_id): returns the request, withdrawn. Only the member '
    'who asked may withdraw, and only while it is pending. Locks the request. Raises CB002, CB008, CB012 (already '
    'decided or withdrawn).';


-- approve_credit_request(p_org_id, p_request_id, p_credits, p_actor_id):
-- returns the request, approved. Raises the member's allocation by p_credits
-- (null: the credits asked for) through allocate_credits_to_user, so the
-- pool's available credits must cover it. p_actor_id: an admin of the
-- organization or a system admin (null: the operator), never the member who
-- asked. Locks the pool row, then the request, then the allocation. Raises
-- what allocate_credits_to_user raises (CB001, CB003 for a member who has
-- left, CB004 when the pool is short, CB011), CB002, CB008, CB012 (already
-- decided or withdrawn).
create or replace function approve_credit_request(
    p_org_id text,
    p_request_id text,
    p_credits numeric,
    p_actor_id text
)
returns credit_requests
language plpgsql
as $$
declare
    v_request credit_requests;
    v_credits numeric;
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    perform ledger_lock_pool(p_org_id);
    v_request := ledger_credit_request_for_update(p_org_id, p_request_id);
    if p_actor_id is not null and p_actor_id = v_request.user_id then
        raise exception using errcode = 'CB008',
            message = 'You cannot approve your own request: another admin of the organization decides it.';
    end if;
    perform ledger_require_pending_request(v_request);
    v_credits := coalesce(p_credits, v_request.credits);
    perform allocate_credits_to_user(p_org_id, v_request.user_id, v_credits, p_actor_id);
    update credit_requests
       set status = 'approved', approved_credits = v_credits, decided_by = p_actor_id, decided_at = now()
     where org_id = p_org_id and id = p_request_id
    returning * into v_request;
    perform ledger_audit(p_org_id, p_actor_id, 'credit_request.approved', 'credit_request', p_request_id,
                         jsonb_build_object('user_id', v_request.user_id, 'requested', v_request.credits,
                                            'approved', v_credits));
    return v_request;
end;
$$;

comment on function approve_credit_request(text, text, numeric, text) is
    'approve_credit_request(p_org_id, p_request_id, p_credits, p_actor_id): returns the request, approved. Raises '
    'the member''s allocation by p_credits (null: the credits asked for) through allocate_credits_to_user, so the '
    'pool''s available credits must cover it. p_actor_id: an admin of the organization or a system admin (null: '
    'the operator), never the member who asked. Locks the pool row, then the request, then the allocation. Raises '
    'what allocate_credits_to_user raises (CB001, CB003 for a member who has left, CB004 when the pool is short, '
    'CB011), CB002, CB008, CB012 (already decided or withdrawn).';


-- preview_credit_request_approval(p_org_id, p_request_id, p_credits,
-- p_actor_id): one row: the credits the approval would allocate, the
-- member's allocated credits after it and the pool's available credits after
-- it, writing nothing (the approval is made in a subtransaction and rolled
-- back). Raises what approve_credit_request would raise.
create or replace function preview_credit_request_approval(
    p_org_id text,
    p_request_id text,
    p_credits numeric,
    p_actor_id text
)
returns table (credits numeric, allocated_after numeric, available_after numeric)
language plpgsql
as $$
declare
    v_request credit_requests;
begin
    begin
        v_request := approve_credit_request(p_org_id, p_request_id, p_credits, p_actor_id);
        select v_request.approved_credits, a.allocated_credits, p.total_credits - p.allocated_credits
          into credits, allocated_after, available_after
          from credit_pools p
          join user_credit_allocations a on a.org_id = p.org_id and a.user_id = v_request.user_id and a.is_active
         where p.org_id = p_org_id;
        raise exception using errcode = 'CBPRV', message = 'preview: roll back';
    exception when sqlstate 'CBPRV' then
        null;
    end;
    return next;
end;
$$;

comment on function preview_credit_request_approval(text, text, numeric, text) is
    'preview_credit_request_approval(p_org_id, p_request_id, p_credits, p_actor_id): one row: the credits the '
    'approval would allocate, the member''s allocated credits after it and the pool''s available credits after it, '
    'writing nothing (the approval is made in a subtransaction and rolled back). Raises what '
    'approve_credit_request would raise.';


-- decline_credit_request(p_org_id, p_request_id, p_reason, p_actor_id):
-- returns the request, declined, with the optional reason (at most 500
-- characters, plain text) the member will read. p_actor_id: an admin of the
-- organization or a system admin (null: the operator). Locks the request.
-- Raises CB002, CB008, CB009 (reason), CB012 (already decided or withdrawn).
create or replace function decline_credit_request(p_org_id text, p_request_id text, p_reason text, p_actor_id text)
returns credit_requests
language plpgsql
as $$
declare
    v_request credit_requests;
begin
    perform ledger_check_text(p_reason, 'The reason', 500, false);
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    v_request := ledger_credit_request_for_update(p_org_id, p_request_id);
    perform ledger_require_pending_request(v_request);
    update credit_requests
       set status = 'declined', decline_reason = nullif(btrim(p_reason), ''), decided_by = p_actor_id,
           decided_at = now()
     where org_id = p_org_id and id = p_request_id
    returning * into v_request;
    perform ledger_audit(p_org_id, p_actor_id, 'credit_request.declined', 'credit_request', p_request_id,
                         jsonb_build_object('user_id', v_request.user_id, 'credits', v_request.credits,
                                            'has_reason', v_request.decline_reason is not null));
    return v_request;
end;
$$;

comment on function decline_credit_request(text, text, text, text) is
    'decline_credit_request(p_org_id, p_request_id, p_reason, p_actor_id): returns the request, declined, with the '
    'optional reason (at most 500 characters, plain text) the member will read. p_actor_id: an admin of the '
    'organization or a system admin (null: the operator). Locks the request. Raises CB002, CB008, CB009 (reason), '
    'CB012 (already decided or withdrawn).';


-- my_credit_requests(p_actor_id, p_org_id): the acting user's own requests
-- in p_org_id (null: in all their organizations), newest first, at most 50:
-- request_id, org_id, org_name, credits, note, status, approved_credits,
-- decline_reason, decided_by (a name), decided_at, created_at. Raises CB002,
-- CB008 (no acting user, or not a member of p_org_id).
create or replace function my_credit_requests(p_actor_id text, p_org_id text)
returns table (
    request_id text, org_id text, org_name text, credits numeric, note text, status text, approved_credits numeric,
    decline_reason text, decided_by text, decided_at timestamptz, created_at timestamptz
)
language plpgsql
stable
as $$
begin
    if p_actor_id is null then
        raise exception using errcode = 'CB008', message = 'No acting user: log in first.';
    end if;
    perform ledger_require_actor(p_actor_id);  -- an empty one: no one logged in
    if p_org_id is not null then
        perform ledger_require_org(p_org_id);
        perform ledger_authorize(p_actor_id, p_org_id, 'member');
    end if;
    return query
        select r.id, r.org_id, o.name, r.credits, r.note, r.status, r.approved_credits, r.decline_reason,
               case when r.decided_at is null then null
                    else coalesce(u.display_name, u.email, 'the operator') end,
               r.decided_at, r.created_at
          from credit_requests r
          join organizations o on o.id = r.org_id
          left join users u on u.id = r.decided_by
         where r.user_id = p_actor_id and (p_org_id is null or r.org_id = p_org_id)
         order by r.created_at desc, r.id
         limit 50;
end;
$$;

comment on function my_credit_requests(text, text) is
    'my_credit_requests(p_actor_id, p_org_id): the acting user''s own requests in p_org_id (null: in all their '
    'organizations), newest first, at most 50: request_id, org_id, org_name, credits, note, status, '
    'approved_credits, decline_reason, decided_by (a name), decided_at, created_at. Raises CB002, CB008 (no acting '
    'user, or not a member of p_org_id).';


-- org_credit_requests(p_org_id, p_actor_id, p_include_decided): the
-- organization's requests for its admins (and system admins; null: the
-- operator): pending ones oldest first, then (when p_include_decided) the 100
-- latest decided ones, newest first: request_id, user_id, member (name),
-- email, credits, note, status, approved_credits, decline_reason, decided_by
-- (a name), decided_at, created_at, and the member's current allocation
-- (allocated_credits, used_credits, remaining_credits). Raises CB002, CB008.
create or replace function org_credit_requests(p_org_id text, p_actor_id text, p_include_decided boolean)
returns table (
    request_id text, user_id text, member text, email text, credits numeric, note text, status text,
    approved_credits numeric, decline_reason text, decided_by text, decided_at timestamptz, created_at timestamptz,
    allocated_credits numeric, used_credits numeric, remaining_credits numeric
)
language plpgsql
stable
as $$
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    return query
        select r.id, r.user_id, coalesce(m.display_name, m.email), m.email, r.credits, r.note, r.status,
               r.approved_credits, r.decline_reason,
               case when r.decided_at is null then null
                    else coalesce(d.display_name, d.email, 'the operator') end,
               r.decided_at, r.created_at,
               coalesce(a.allocated_credits, 0), coalesce(a.used_credits, 0), coalesce(a.remaining_credits, 0)
          from (
                (select * from credit_requests q
                  where q.org_id = p_org_id and q.status = 'pending')
                union all
                (select * from credit_requests q
                  where p_include_decided and q.org_id = p_org_id and q.status <> 'pending'
                  order by q.decided_at desc, q.id
                  limit 100)
               ) r
          join users m on m.id = r.user_id
          left join users d on d.id = r.decided_by
          left join user_credit_allocations a on a.org_id = r.org_id and a.user_id = r.user_id and a.is_active
         order by r.status <> 'pending', case when r.status = 'pending' then r.created_at end,
                  r.decided_at desc, r.id;
end;
$$;

comment on function org_credit_requests(text, text, boolean) is
    'org_credit_requests(p_org_id, p_actor_id, p_include_decided): the organization''s requests for its admins '
    '(and system admins; null: the operator): pending ones oldest first, then (when p_include_decided) the 100 '
    'latest decided ones, newest first: request_id, user_id, member (name), email, credits, note, status, '
    'approved_credits, decline_reason, decided_by (a name), decided_at, created_at, and the member''s current '
    'allocation (allocated_credits, used_credits, remaining_credits). Raises CB002, CB008.';
