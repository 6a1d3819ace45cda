-- Read models of the member, org admin and audit screens.
--
-- Each function reads; none locks or writes. Each takes the acting user and
-- authorizes it itself, with the errors writes raise (ledger_authorize: CB002
-- unknown actor or organization, CB008 lacking the role; a null actor is the
-- operator, accepted on the owner's connection only). Usage windows are the
-- last p_days days up to now.


-- member_cards(p_actor_id, p_days): one row per organization of the acting
-- user, default first: their allocation, the live subscription's plan, when
-- the organization's current billing period ends (allocations reset then),
-- their usage over the window, since when the allocation's used figure
-- counts (used_since: its period start; null without an allocation) and the
-- organization's kind ('personal': the user's individual balance). Only ever
-- the actor's own rows. Locks nothing. Raises CB002 (unknown actor), CB008
-- (an empty one: no one logged in).
create function member_cards(p_actor_id text, p_days integer)
returns table (
    org_id text, org_name text, org_status text, role text, is_default boolean,
    plan text, plan_name text, subscription_status text,
    allocated_credits numeric, used_credits numeric, remaining_credits numeric, usage_percent numeric,
    next_reset timestamptz, credits_used_window numeric, requests_window bigint,
    used_since timestamptz, org_kind text
)
language sql
stable
as $$
    select ledger_require_actor(p_actor_id);
    select m.org_id, m.org_name, m.org_status, m.role, m.is_default, s.plan, pl.name, s.status,
           m.allocated_credits, m.used_credits, m.remaining_credits, m.usage_percent,
           (select b.period_end from billing_current_period(m.org_id, p_actor_id) b),  -- a member: passes its check
           coalesce(w.credits, 0), coalesce(w.requests, 0), m.period_start, m.org_kind
      from user_multi_org_credits m
      left join organization_subscriptions s
             on s.org_id = m.org_id and s.status in ('trialing', 'active', 'past_due')
      left join plans pl on pl.code = s.plan
      left join lateral (
            select sum(c.credits_used) as credits, count(*) as requests
              from credit_usage_attribution c
             where c.org_id = m.org_id and c.user_id = m.user_id
               and c.created_at >= now() - make_interval(days => p_days)
           ) w on true
     where m.user_id = p_actor_id
     order by m.is_default desc, m.org_name, m.org_id;
$$;

comment on function member_cards(text, integer) is
    'member_cards(p_actor_id, p_days): one row per organization of the acting user, default first: their '
    'allocation, the live subscription''s plan, when the organization''s current billing period ends (allocations '
    'reset then), their usage over the window, since when the allocation''s used figure counts (used_since: its '
    'period start; null without an allocation) and the organization''s kind (''personal'': the user''s individual '
    'balance). Only ever the actor''s own rows. Locks nothing. Raises CB002 (unknown actor), CB008 (an empty one: '
    'no one logged in).';


-- org_overview(p_org_id, p_actor_id): the organization's header: pool
-- figures, member count and its subscription (the live one, else the
-- latest), with a plan change scheduled for its period end (scheduled_plan
-- null: none). p_actor_id: an admin of the organization, a system admin or
-- the operator. Locks nothing. Raises CB002, CB008.
create or replace function org_overview(p_org_id text, p_actor_id text)
returns table (
    org_id text, org_name text, org_status text, member_count bigint,
    total_credits numeric, allocated_credits numeric, used_credits numeric, available_credits numeric,
    monthly_refresh_amount numeric, plan text, plan_name text, subscription_status text,
    price_amount numeric, currency text, billing_cycle text, current_period_start timestamptz,
    current_period_end timestamptz, trial_ends_at timestamptz, cancel_at_period_end boolean,
    canceled_at timestamptz, scheduled_plan text, scheduled_plan_name text
)
language sql
stable
as $$
    select ledger_require_org(p_org_id);
    select ledger_authorize(p_actor_id, p_org_id, 'admin');
    select o.id, o.name, o.status,
           (select count(*) from organization_members m where m.org_id = o.id),
           coalesce(p.total_credits, 0), coalesce(p.allocated_credits, 0), coalesce(p.used_credits, 0),
           coalesce(p.available_credits, 0), coalesce(p.monthly_refresh_amount, 0),
           s.plan, pl.name, s.status, s.price_amount, s.currency, s.billing_cycle, s.current_period_start,
           s.current_period_end, s.trial_ends_at, s.cancel_at_period_end, s.canceled_at,
           s.scheduled_plan, sp.name
      from organizations o
      left join organization_credit_pools p on p.org_id = o.id
      left join lateral (
            select *
              from organization_subscriptions x
             where x.org_id = o.id
             order by (x.status in ('trialing', 'active', 'past_due')) desc, x.created_at desc, x.id
             limit 1
           ) s on true
      left join plans pl on pl.code = s.plan
      left join plans sp on sp.code = s.scheduled_plan
     where o.id = p_org_id;
$$;

comment on function org_overview(text, text) is
    'org_overview(p_org_id, p_actor_id): the organization''s header: pool figures, member count and its '
    'subscription (the live one, else the latest), with a plan change scheduled for its period end (scheduled_plan '
    'null: none). p_actor_id: an admin of the organization, a system admin or the operator. Locks nothing. Raises '
    'CB002, CB008.';


-- org_allocations(p_org_id, p_actor_id): every member with their role,
-- current allocation and standing amount (what their allocation reopens at
-- each period; null: what they had in the closing period), most used first.
-- p_actor_id: an admin of the organization, a system admin or the operator.
-- Locks nothing. Raises CB002, CB008.
create or replace function org_allocations(p_org_id text, p_actor_id text)
returns table (
    user_id text, display_name text, email text, role text, allocated_credits numeric, used_credits numeric,
    remaining_credits numeric, usage_percent numeric, period_start timestamptz, joined_at timestamptz,
    standing_credits numeric
)
language sql
stable
as $$
    select ledger_require_org(p_org_id);
    select ledger_authorize(p_actor_id, p_org_id, 'admin');
    select v.user_id, v.display_name, v.email, v.role, v.allocated_credits, v.used_credits,
           v.remaining_credits, v.usage_percent, v.period_start, m.joined_at, m.standing_credits
      from user_multi_org_credits v
      join organization_members m on m.org_id = v.org_id and m.user_id = v.user_id
     where v.org_id = p_org_id
     order by v.used_credits desc, v.display_name, v.user_id;
$$;

comment on function org_allocations(text, text) is
    'org_allocations(p_org_id, p_actor_id): every member with their role, current allocation and standing amount '
    '(what their allocation reopens at each period; null: what they had in the closing period), most used first. '
    'p_actor_id: an admin of the organization, a system admin or the operator. Locks nothing. Raises CB002, CB008.';


-- org_billing_timeline(p_org_id, p_actor_id, p_limit): the organization's
-- newest p_limit billing history rows, with who recorded them. p_actor_id:
-- an admin of the organization, a system admin or the operator. Locks
-- nothing. Raises CB002, CB008.
create or replace function org_billing_timeline(p_org_id text, p_actor_id text, p_limit integer)
returns table (
    created_at timestamptz, event_type text, credits numeric, amount numeric, currency text,
    description text, total_credits_after numeric, created_by text, created_by_name text
)
language sql
stable
as $$
    select ledger_require_org(p_org_id);
    select ledger_authorize(p_actor_id, p_org_id, 'admin');
    select h.created_at, h.event_type, h.credits, h.amount, h.currency, h.description,
           h.total_credits_after, h.created_by, coalesce(u.display_name, u.email)
      from org_billing_history h
      left join users u on u.id = h.created_by
     where h.org_id = p_org_id
     order by h.created_at desc, h.id desc
     limit p_limit;
$$;

comment on function org_billing_timeline(text, text, integer) is
    'org_billing_timeline(p_org_id, p_actor_id, p_limit): the organization''s newest p_limit billing history rows, '
    'with who recorded them. p_actor_id: an admin of the organization, a system admin or the operator. Locks '
    'nothing. Raises CB002, CB008.';


-- audit_entries(p_actor_id, p_org_id, p_by_actor, p_actions, p_start, p_end,
-- p_limit, p_offset): audit entries newest first, filtered: one
-- organization's (p_org_id) or all (null); one acting user's; the listed
-- actions (empty: all); written in [p_start, p_end) (null: open); p_limit of
-- them (null: all) after skipping the newest p_offset (a page). actor_name is
-- null for entries written without a user (a job or the CLI). matching counts
-- all filtered entries, not only the page returned. Authorized by
-- ledger_authorize_scope (one organization: its admins; all: system
-- admins). Locks nothing. Raises CB002, CB008.
create or replace function audit_entries(
    p_actor_id text,
    p_org_id text,
    p_by_actor text,
    p_actions text[],
    p_start timestamptz,
    p_end timestamptz,
    p_limit integer,
    p_offset integer default 0
)
returns table (
    created_at timestamptz, org_id text, org_name text, actor_id text, actor_name text, action text,
    target_type text, target_id text, details text, id bigint, matching bigint
)
language sql
stable
as $$
    select ledger_authorize_scope(p_actor_id, p_org_id);
    select a.created_at, a.org_id, o.name, a.actor_id,
           case when a.actor_id is not null then coalesce(u.display_name, u.email, a.actor_id) end,
           a.action, a.target_type, a.target_id, a.details::text, a.id, count(*) over ()
      from audit_log a
      left join organizations o on o.id = a.org_id
      left join users u on u.id = a.actor_id
     where (p_org_id is null or a.org_id = p_org_id)
       and (p_by_actor is null or a.actor_id = p_by_actor)
       and (cardinality(p_actions) = 0 or a.action = any (p_actions))
       and (p_start is null or a.created_at >= p_start)
       and (p_end is null or a.created_at < p_end)
     order by a.created_at desc, a.id desc
     limit p_limit offset greatest(coalesce(p_offset, 0), 0);
$$;

comment on function audit_entries(text, text, text, text[], timestamptz, timestamptz, integer, integer) is
    'audit_entries(p_actor_id, p_org_id, p_by_actor, p_actions, p_start, p_end, p_limit, p_offset): audit entries '
    'newest first, filtered: one organization''s (p_org_id) or all (null); one acting user''s; the listed actions '
    '(empty: all); written in [p_start, p_end) (null: open); p_limit of them (null: all) after skipping the newest '
    'p_offset (a page). actor_name is null for entries written without a user (a job or the CLI). matching counts '
    'all filtered entries, not only the page returned. Authorized by ledger_authorize_scope (one organization: its '
    'admins; all: system admins). Locks nothing. Raises CB002, CB008.';


-- audit_actions(p_actor_id, p_org_id): the actions present in the log of one
-- organization (or all, null), in name order. Authorized as audit_entries.
-- Locks nothing. Raises CB002, CB008.
create or replace function audit_actions(p_actor_id text, p_org_id text)
returns table (action text)
language sql
stable
as $$
    select ledger_authorize_scope(p_actor_id, p_org_id);
    select distinct a.action
      from audit_log a
     where p_org_id is null or a.org_id = p_org_id
     order by 1;
$$;

comment on function audit_actions(text, text) is
    'audit_actions(p_actor_id, p_org_id): the actions present in the log of one organization (or all, null), in '
    'name order. Authorized as audit_entries. Locks nothing. Raises CB002, CB008.';


-- audit_actors(p_actor_id, p_org_id): the users present as actors in the log
-- of one organization (or all, null), with their names, in name order.
-- Authorized as audit_entries. Locks nothing. Raises CB002, CB008.
create or replace function audit_actors(p_actor_id text, p_org_id text)
returns table (actor_id text, actor_name text)
language sql
stable
as $$
    select ledger_authorize_scope(p_actor_id, p_org_id);
    select a.actor_id, coalesce(u.display_name, u.email, a.actor_id)
      from (select distinct l.actor_id
              from audit_log l
             where l.actor_id is not null and (p_org_id is null or l.org_id = p_org_id)) a
      left join users u on u.id = a.actor_id
     order by 2, 1;
$$;

comment on function audit_actors(text, text) is
    'audit_actors(p_actor_id, p_org_id): the users present as actors in the log of one organization (or all, '
    'null), with their names, in name order. Authorized as audit_entries. Locks nothing. Raises CB002, CB008.';
