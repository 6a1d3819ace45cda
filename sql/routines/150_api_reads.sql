-- Reads the HTTP API needs that the screens do not: one member's balance,
-- and usage grouped by day, user, service or model, paged. Each takes the
-- acting user (the API key's user) and authorizes it itself, like every
-- read of 121_usage_reads.sql. None locks or writes.


-- member_balance(p_actor_id, p_org_id, p_user_id): returns (org_id,
-- user_id, allocated, used, held, remaining): the member's active
-- allocation (zeros when they have none) in p_org_id, or with p_org_id null
-- in the organization their calls are charged to (charging_org_for).
-- remaining is what they can spend now, net of held credits. A member reads
-- their own; the organization's admins and system admins anyone's
-- (usage_authorize). Raises CB002 (unknown organization, user or actor),
-- CB003 (not a member), CB008. Takes no lock.
create or replace function member_balance(p_actor_id text, p_org_id text, p_user_id text)
returns table (org_id text, user_id text, allocated numeric, used numeric, held numeric, remaining numeric)
language plpgsql
stable
as $$
begin
    perform ledger_require_user(p_user_id);
    org_id := coalesce(p_org_id, charging_org_for(p_user_id, null));
    perform usage_authorize(p_actor_id, org_id, p_user_id);
    perform ledger_require_member(org_id, p_user_id);
    user_id := p_user_id;
    select a.allocated_credits, a.used_credits, a.held_credits, a.remaining_credits - a.held_credits
      into allocated, used, held, remaining
      from user_credit_allocations a
     where a.org_id = member_balance.org_id and a.user_id = p_user_id and a.is_active;
    allocated := coalesce(allocated, 0);
    used := coalesce(used, 0);
    held := coalesce(held, 0);
    remaining := coalesce(remaining, 0);
    return next;
end;
$$;

comment on function member_balance(text, text, text) is
    'member_balance(p_actor_id, p_org_id, p_user_id): returns (org_id, user_id, allocated, used, held, remaining): '
    'the member''s active allocation (zeros when they have none) in p_org_id, or with p_org_id null in the '
    'organization their calls are charged to (charging_org_for). remaining is what they can spend now, net of held '
    'credits. A member reads their own; the organization''s admins and system admins anyone''s (usage_authorize). '
    'Raises CB002 (unknown organization, user or actor), CB003 (not a member), CB008. Takes no lock.';


-- usage_groups(p_actor_id, p_org_id, p_user_id, p_from, p_to, p_group,
--              p_limit, p_offset): returns (key, credits_used, requests,
-- total_groups): the organization's usage over the days p_from to p_to (its
-- time zone, usage_window), one row per group: p_group 'day' (key: the
-- date, YYYY-MM-DD, in day order), 'user' (the user id), 'service' (the
-- service type) or 'model' (the service name: the model of model calls),
-- the last three largest first. One user (p_user_id) or the whole
-- organization (null). Paged: p_limit (1 to 1,000) rows from p_offset;
-- total_groups counts every group of the range. Authorized by
-- usage_authorize. Raises CB002, CB008, CB009 (an unknown group, a bad page
-- or what usage_window refuses).
create or replace function usage_groups(
    p_actor_id text,
    p_org_id text,
    p_user_id text,
    p_from date,
    p_to date,
    p_group text,
    p_limit integer default 100,
    p_offset integer default 0
)
returns table (key text, credits_used numeric, requests bigint, total_groups bigint)
language plpgsql
stable
as $$
declare
    w record;
begin
    perform usage_authorize(p_actor_id, p_org_id, p_user_id);
    if p_group is null or p_group not in ('day', 'user', 'service', 'model') then
        raise exception using errcode = 'CB009',
            message = format('Group usage by day, user, service or model (got %L).', p_group);
    end if;
    if p_limit is null or p_limit < 1 or p_limit > 1000 or p_offset is null or p_offset < 0 then
        raise exception using errcode = 'CB009',
            message = format('A page holds 1 to 1,000 rows from an offset of 0 or more (got %s rows from %s).',
                             coalesce(p_limit::text, 'no number of'), coalesce(p_offset::text, 'no offset'));
    end if;
    select * into w from usage_window(p_org_id, p_from, p_to);
    return query
        with grouped as (
            select case p_group
                       when 'day' then to_char((c.created_at at time zone w.time_zone)::date, 'YYYY-MM-DD')
                       when 'user' then c.user_id
                       when 'service' then c.service_type
                       else c.service_name
                   end as key,
                   sum(c.credits_used) as credits_used, count(*) as requests
              from credit_usage_attribution c
             where c.org_id = p_org_id and c.created_at >= w.starts_at and c.created_at < w.ends_at
               and (p_user_id is null or c.user_id = p_user_id)
             group by 1
        )
        select g.key, g.credits_used, g.requests, count(*) over ()
          from grouped g
         order by case when p_group = 'day' then g.key end, g.credits_used desc, g.key
         limit p_limit offset p_offset;
end;
$$;

comment on function usage_groups(text, text, text, date, date, text, integer, integer) is
    'usage_groups(p_actor_id, p_org_id, p_user_id, p_from, p_to, p_group, p_limit, p_offset): returns (key, '
    'credits_used, requests, total_groups): the organization''s usage over the days p_from to p_to (its time zone, '
    'usage_window), one row per group: p_group ''day'' (key: the date, YYYY-MM-DD, in day order), ''user'' (the '
    'user id), ''service'' (the service type) or ''model'' (the service name: the model of model calls), the last '
    'three largest first. One user (p_user_id) or the whole organization (null). Paged: p_limit (1 to 1,000) rows '
    'from p_offset; total_groups counts every group of the range. Authorized by usage_authorize. Raises CB002, '
    'CB008, CB009 (an unknown group, a bad page or what usage_window refuses).';
