-- The ledger's invariants (DESIGN.md, "The database is the ledger"), as one
-- query over the whole database. `billing verify` and the tests call it.


-- ledger_violations(p_org_id): one row per broken invariant, none when the
-- ledger is sound. p_org_id null checks every organization. Takes no lock;
-- run it in one snapshot (it is one statement) so that figures agree.
-- Raises CB002 for an unknown p_org_id.
create or replace function ledger_violations(p_org_id text default null)
returns table (invariant text, org_id text, subject text, detail text)
language plpgsql
stable
as $$
#variable_conflict use_column
begin
    if p_org_id is not null then
        perform ledger_require_org(p_org_id);
    end if;
    return query
    with pools as (
        select p.*
          from credit_pools p
         where p_org_id is null or p.org_id = p_org_id
    ),
    allocations as (
        select a.*
          from user_credit_allocations a
         where p_org_id is null or a.org_id = p_org_id
    ),
    allocation_sums as (
        select a.org_id,
               sum(a.allocated_credits) filter (where a.is_active) as active_allocated,
               sum(a.used_credits) as used_all,
               sum(a.used_credits) filter (where not a.is_active) as used_closed
          from allocations a
         group by a.org_id
    ),
    attribution_by_allocation as (
        select c.org_id, c.allocation_id, sum(c.credits_used) as credits, count(*) as rows,
               count(*) filter (where c.user_id <> a.user_id) as foreign_rows
          from credit_usage_attribution c
          left join user_credit_allocations a on a.org_id = c.org_id and a.id = c.allocation_id
         where p_org_id is null or c.org_id = p_org_id
         group by c.org_id, c.allocation_id
    ),
    attribution_by_org as (
        select org_id, sum(credits) as credits
          from attribution_by_allocation
         group by org_id
    ),
    events_by_allocation as (
        select e.org_id, e.allocation_id, sum(e.credits) as credits
          from credit_allocation_events e
         where p_org_id is null or e.org_id = p_org_id
         group by e.org_id, e.allocation_id
    ),
    open_holds_by_allocation as (
        select h.org_id, h.allocation_id, sum(h.credits) as credits
          from credit_holds h
         where h.status = 'open' and (p_org_id is null or h.org_id = p_org_id)
         group by h.org_id, h.allocation_id
    ),
    history_by_org as (
        select h.org_id, sum(h.credits) as credits,
               sum(-h.credits) filter (where h.event_type = 'credit_expiry') as expired
          from org_billing_history h
         where p_org_id is null or h.org_id = p_org_id
         group by h.org_id
    ),
    lots as (
        select l.*
          from credit_lots l
         where p_org_id is null or l.org_id = p_org_id
    ),
    lots_by_org as (
        select l.org_id, sum(l.credits - l.expired_credits) as held, sum(l.consumed_credits) as consumed,
               sum(l.expired_credits) as expired
          from lots l
         group by l.org_id
    ),
    -- what the analytics count as sold (credits in for money: 080_analytics.sql)
    sold_rows as (
        select h.*
          from org_billing_history h
         where (p_org_id is null or h.org_id = p_org_id)
           and ((h.credits > 0 and h.amount > 0) or h.event_type = 'credit_purchase')
    ),
    paid_orders as (
        select o.*
          from credit_orders o
         where o.status = 'paid' and (p_org_id is null or o.org_id = p_org_id)
    ),
    settled_usage as (
        select p.org_id, coalesce(sum(c.credits_used), 0) as credits
          from pools p
          left join credit_usage_attribution c on c.org_id = p.org_id and c.id <= p.lots_settled_id
         group by p.org_id
    )
    -- pool.allocated_credits = sum of its active allocations' allocated_credits
    select 'pool_allocated_matches_allocations', p.org_id, 'pool',
           format('pool allocated %s, active allocations hold %s',
                  p.allocated_credits, coalesce(s.active_allocated, 0))
      from pools p left join allocation_sums s on s.org_id = p.org_id
     where p.allocated_credits <> coalesce(s.active_allocated, 0)
    union all
    -- 0 <= used <= allocated for every allocation
    select 'allocation_used_within_allocated', a.org_id, a.id,
           format('user %s: allocated %s, used %s', a.user_id, a.allocated_credits, a.used_credits)
      from allocations a
     where a.used_credits < 0 or a.used_credits > a.allocated_credits
        or a.used_credits = 'NaN' or a.allocated_credits = 'NaN'
    union all
    -- available = total - allocated >= 0
    select 'pool_available_not_negative', p.org_id, 'pool',
           format('total %s, allocated %s', p.total_credits, p.allocated_credits)
      from pools p
     where p.total_credits - p.allocated_credits < 0 or p.total_credits = 'NaN'
    union all
    -- pool used = sum of used over all its allocations (closed ones included)
    select 'pool_used_matches_allocations', p.org_id, 'pool',
           format('closed allocations used %s, pool records %s',
                  coalesce(s.used_closed, 0), p.closed_used_credits)
      from pools p left join allocation_sums s on s.org_id = p.org_id
     where p.closed_used_credits <> coalesce(s.used_closed, 0)
    union all
    -- ... = the sum of its attribution rows' credits
    select 'pool_used_matches_attribution', coalesce(s.org_id, t.org_id), 'pool',
           format('allocations used %s, attribution rows sum to %s',
                  coalesce(s.used_all, 0), coalesce(t.credits, 0))
      from allocation_sums s full join attribution_by_org t on t.org_id = s.org_id
     where coalesce(s.used_all, 0) <> coalesce(t.credits, 0)
    union all
    -- each allocation's used_credits = its own attribution rows
    select 'allocation_used_matches_attribution', a.org_id, a.id,
           format('user %s: used %s, attribution rows sum to %s',
                  a.user_id, a.used_credits, coalesce(t.credits, 0))
      from allocations a
      left join attribution_by_allocation t on t.org_id = a.org_id and t.allocation_id = a.id
     where a.used_credits <> coalesce(t.credits, 0)
    union all
    -- attribution rows name the allocation's own user
    select 'attribution_user_matches_allocation', t.org_id, t.allocation_id,
           format('%s attribution rows name another user than the allocation''s', t.foreign_rows)
      from attribution_by_allocation t
     where t.foreign_rows > 0
    union all
    -- each allocation's allocated_credits = the sum of its allocation events
    select 'allocation_matches_events', a.org_id, a.id,
           format('user %s: allocated %s, events sum to %s',
                  a.user_id, a.allocated_credits, coalesce(e.credits, 0))
      from allocations a
      left join events_by_allocation e on e.org_id = a.org_id and e.allocation_id = a.id
     where a.allocated_credits <> coalesce(e.credits, 0)
    union all
    -- pool total = the sum of its billing history's credit movements
    select 'pool_total_matches_history', p.org_id, 'pool',
           format('pool total %s, billing history sums to %s', p.total_credits, coalesce(h.credits, 0))
      from pools p left join history_by_org h on h.org_id = p.org_id
     where p.total_credits <> coalesce(h.credits, 0)
    union all
    -- credits moved in history belong to an existing pool
    select 'history_without_pool', h.org_id, 'pool',
           format('billing history moves %s credits but the organization has no pool', h.credits)
      from history_by_org h
     where h.credits <> 0 and not exists (select 1 from credit_pools p where p.org_id = h.org_id)
    union all
    -- an active allocation belongs to a current member
    select 'active_allocation_of_non_member', a.org_id, a.id,
           format('user %s holds an active allocation but is not a member', a.user_id)
      from allocations a
     where a.is_active
       and not exists (select 1 from organization_members m
                        where m.org_id = a.org_id and m.user_id = a.user_id)
    union all
    -- a closed allocation holds no unused credits (they went back to the pool)
    select 'closed_allocation_holds_credits', a.org_id, a.id,
           format('user %s: closed allocation still holds %s unused credits',
                  a.user_id, a.remaining_credits)
      from allocations a
     where not a.is_active and a.remaining_credits <> 0
    union all
    -- credit lots (092_lots.sql): what entered the pool minus what expired
    -- = what it holds plus what closed allocations used
    select 'lots_match_pool', p.org_id, 'pool',
           format('lots hold %s (granted - expired), pool total + closed used is %s',
                  coalesce(l.held, 0), p.total_credits + p.closed_used_credits)
      from pools p left join lots_by_org l on l.org_id = p.org_id
     where p.total_credits + p.closed_used_credits <> coalesce(l.held, 0)
    union all
    -- each lot: consumed and expired within its amount
    select 'lot_within_amount', l.org_id, 'lot ' || l.id,
           format('granted %s, consumed %s, expired %s', l.credits, l.consumed_credits, l.expired_credits)
      from lots l
     where l.consumed_credits < 0 or l.expired_credits < 0
        or l.consumed_credits + l.expired_credits > l.credits
    union all
    -- usage settled against lots = the lots' consumption = the attribution up to the watermark
    select 'lots_settled_match_usage', p.org_id, 'pool',
           format('settled %s, lots consumed %s, attribution up to row %s sums to %s',
                  p.lots_settled_credits, coalesce(l.consumed, 0), p.lots_settled_id, u.credits)
      from pools p
      left join lots_by_org l on l.org_id = p.org_id
      join settled_usage u on u.org_id = p.org_id
     where p.lots_settled_credits <> coalesce(l.consumed, 0) or p.lots_settled_credits <> u.credits
    union all
    -- every history row that brought credits in has its lot, of the same credits
    select 'history_credits_without_lot', h.org_id, 'history ' || h.id,
           format('%s brought %s credits; its lot holds %s', h.event_type, h.credits, l.credits)
      from org_billing_history h
      left join credit_lots l on l.org_id = h.org_id and l.history_id = h.id
     where (p_org_id is null or h.org_id = p_org_id) and h.credits > 0
       and l.credits is distinct from h.credits
    union all
    -- what lots expired = the 'credit_expiry' history rows
    select 'lots_expired_match_history', coalesce(l.org_id, h.org_id), 'pool',
           format('lots expired %s, credit_expiry rows sum to %s', coalesce(l.expired, 0), coalesce(h.expired, 0))
      from lots_by_org l full join history_by_org h on h.org_id = l.org_id
     where coalesce(l.expired, 0) <> coalesce(h.expired, 0)
    union all
    -- used + held <= allocated: held credits are never spendable twice
    select 'allocation_held_within_allocated', a.org_id, a.id,
           format('user %s: allocated %s, used %s, held %s',
                  a.user_id, a.allocated_credits, a.used_credits, a.held_credits)
      from allocations a
     where a.held_credits < 0 or a.used_credits + a.held_credits > a.allocated_credits
    union all
    -- each allocation's held_credits = the credits of its open holds
    select 'allocation_held_matches_holds', a.org_id, a.id,
           format('user %s: held %s, open holds sum to %s', a.user_id, a.held_credits, coalesce(h.credits, 0))
      from allocations a
      left join open_holds_by_allocation h on h.org_id = a.org_id and h.allocation_id = a.id
     where a.held_credits <> coalesce(h.credits, 0)
    union all
    -- an open hold sits on an active allocation of its own user
    select 'open_hold_on_closed_allocation', h.org_id, h.request_id,
           format('open hold of %s credits on allocation %s, which is closed or another user''s',
                  h.credits, h.allocation_id)
      from credit_holds h
      join user_credit_allocations a on a.org_id = h.org_id and a.id = h.allocation_id
     where h.status = 'open' and (not a.is_active or a.user_id <> h.user_id)
       and (p_org_id is null or h.org_id = p_org_id)
    union all
    -- a settled hold charged exactly once: one attribution row with its request id and figure
    select 'settled_hold_matches_attribution', h.org_id, h.request_id,
           format('hold settled for %s credits, attribution row holds %s',
                  h.settled_credits, coalesce(c.credits_used::text, 'nothing'))
      from credit_holds h
      left join credit_usage_attribution c on c.org_id = h.org_id and c.request_id = h.request_id
     where h.status = 'settled' and (p_org_id is null or h.org_id = p_org_id)
       and coalesce(c.credits_used, 0) <> h.settled_credits
    union all
    -- money comes in through paid orders: every row counted as sold is the
    -- purchase row of one paid order of the same organization, credits and price
    select 'purchase_without_paid_order', h.org_id, 'history ' || h.id,
           format('%s of %s credits for $%s: %s', h.event_type, h.credits, h.amount,
                  case when h.credit_order_id is null then 'names no order'
                       when o.id is null then format('order %s does not exist', h.credit_order_id)
                       when o.status <> 'paid' then format('order %s is %s', o.id, o.status)
                       else format('order %s is for %s credits at $%s', o.id, o.credits, o.price) end)
      from sold_rows h
      left join credit_orders o on o.org_id = h.org_id and o.id = h.credit_order_id
     where h.event_type <> 'credit_purchase' or o.id is null or o.status <> 'paid'
        or o.credits <> h.credits or o.price <> h.amount
    union all
    -- ... and every paid order brought its credits in
    select 'paid_order_without_purchase', o.org_id, 'order ' || o.id,
           format('order paid (reference %s) for %s credits but no purchase row names it',
                  coalesce(o.payment_reference, 'none'), o.credits)
      from paid_orders o
     where not exists (select 1 from org_billing_history h
                        where h.org_id = o.org_id and h.credit_order_id = o.id and h.event_type = 'credit_purchase')
    union all
    -- revenue in the analytics (history rows sold for money) = the paid orders' prices
    select 'revenue_matches_paid_orders', coalesce(r.org_id, q.org_id), 'revenue',
           format('analytics revenue $%s, paid orders $%s', coalesce(r.revenue, 0), coalesce(q.paid, 0))
      from (select h.org_id, sum(h.amount) as revenue from sold_rows h
             where h.credits > 0 and h.amount > 0 group by h.org_id) r
      full join (select o.org_id, sum(o.price) as paid from paid_orders o group by o.org_id) q
        on q.org_id = r.org_id
     where coalesce(r.revenue, 0) <> coalesce(q.paid, 0)
    union all
    -- no credits enter a pool but through a paid order or a grant: a system
    -- admin's or the operator's with a reason (metadata source 'grant'), or
    -- the period job's (no actor, metadata naming its source); rows recorded
    -- before the rule existed (0010_credit_orders.sql) are not judged
    select 'credits_without_order_or_grant', h.org_id, 'history ' || h.id,
           format('%s brought %s credits ($%s) by %s without %s', h.event_type, h.credits, h.amount,
                  coalesce(h.created_by, 'the operator'),
                  case when h.event_type = 'credit_grant' then 'a system admin''s grant with a reason'
                       else 'a paid order or a grant' end)
      from org_billing_history h
     where (p_org_id is null or h.org_id = p_org_id) and h.credits > 0
       and h.recorded_at >= coalesce((select r.since from ledger_rules_since r
                                       where r.rule = 'credits_enter_through_orders_or_grants'), '-infinity')
       and not (h.event_type = 'credit_purchase' and h.amount > 0 and h.credit_order_id is not null)
       and not (h.event_type = 'credit_grant' and h.amount = 0
                and ((h.metadata ->> 'source' = 'grant'
                      and coalesce(btrim(h.metadata ->> 'reason'), '') <> ''
                      and h.metadata ->> 'granted_as' in ('system_admin', 'operator')
                      and (h.created_by is null) = (h.metadata ->> 'granted_as' = 'operator'))
                     or (h.created_by is null and coalesce(h.metadata ->> 'source', 'grant') <> 'grant')))
    union all
    -- a personal balance has its owner as its only member, an admin
    select 'personal_organization_members', o.id, 'members',
           format('personal balance of %s has members %s', o.personal_user_id,
                  coalesce((select string_agg(m.user_id || ':' || m.role, ', ' order by m.user_id)
                              from organization_members m where m.org_id = o.id), 'none'))
      from organizations o
     where o.kind = 'personal' and (p_org_id is null or o.id = p_org_id)
       and (select array_agg(m.user_id || ':' || m.role) from organization_members m where m.org_id = o.id)
           is distinct from array[o.personal_user_id || ':admin']
    union all
    -- subscription history tells the truth: the latest row's MRR is what the subscriptions pay now
    -- (the live one's monthly amount while active or past due, else 0); the analytics rely on it
    select 'subscription_history_matches_mrr', o.id, 'subscription history',
           format('latest history row (%s) says MRR %s; the subscription pays %s',
                  last.event_type, last.mrr_after, coalesce(live.mrr, 0))
      from organizations o
      join lateral (
            select h.event_type, (h.metadata ->> 'mrr_after')::numeric as mrr_after
              from org_billing_history h
             where h.org_id = o.id and h.metadata ? 'mrr_after'
             order by h.created_at desc, h.id desc
             limit 1
           ) last on true
      left join lateral (
            select round(case when s.billing_cycle = 'yearly' then s.price_amount / 12 else s.price_amount end, 4)
                   as mrr
              from organization_subscriptions s
             where s.org_id = o.id and s.status in ('active', 'past_due')
           ) live on true
     where (p_org_id is null or o.id = p_org_id)
       and last.mrr_after <> coalesce(live.mrr, 0)
    union all
    -- a live subscription has its history: the row that created it
    select 'subscription_without_history', s.org_id, s.id,
           format('%s subscription on %s has no subscription_created history row', s.status, s.plan)
      from organization_subscriptions s
     where (p_org_id is null or s.org_id = p_org_id)
       and not exists (select 1 from org_billing_history h
                        where h.org_id = s.org_id and h.event_type = 'subscription_created'
                          and h.metadata ->> 'subscription_id' = s.id);
end;
$$;

comment on function ledger_violations(text) is
    'ledger_violations(p_org_id): one row per broken invariant, none when the ledger is sound. p_org_id null '
    'checks every organization. Takes no lock; run it in one snapshot (it is one statement) so that figures '
    'agree. Raises CB002 for an unknown p_org_id.';
