-- The subscription renewal engine: applies what falls due (trial end, a
-- pending cancel, a scheduled change, the move to the version in force, the
-- next period's invoice) and what a change now does to the period's included
-- credits. The rules and the lock order: the top of 068_subscription_terms.sql.


-- subscription_end_at(p_s, p_at, p_why, p_audit): returns the subscription
-- canceled at p_at (by the renewal: a pending cancel reached its date), with
-- its history row saying p_why and an audit row carrying p_audit. The caller
-- holds the locks. Raises nothing.
create or replace function subscription_end_at(
    p_s organization_subscriptions,
    p_at timestamptz,
    p_why text,
    p_audit jsonb
)
returns organization_subscriptions
language plpgsql
as $$
declare
    v_s organization_subscriptions;
begin
    update organization_subscriptions
       set status = 'canceled', canceled_at = p_at, status_changed_at = p_at,
           cancel_at_period_end = false, updated_at = now()
     where org_id = p_s.org_id and id = p_s.id
    returning * into v_s;
    perform ledger_subscription_event(v_s, p_s, 'subscription_canceled',
        format('Subscription to %s ended %s, as asked', (select name from plans where code = v_s.plan), p_why),
        null, p_at);
    perform ledger_audit(v_s.org_id, null, 'subscription.canceled', 'subscription', v_s.id,
                         jsonb_build_object('plan', v_s.plan, 'occurred_at', p_at) || p_audit);
    return v_s;
end;
$$;

comment on function subscription_end_at(organization_subscriptions, timestamptz, text, jsonb) is
    'subscription_end_at(p_s, p_at, p_why, p_audit): returns the subscription canceled at p_at (by the renewal: a '
    'pending cancel reached its date), with its history row saying p_why and an audit row carrying p_audit. The '
    'caller holds the locks. Raises nothing.';


-- subscription_trial_end_at(p_s, p_at): returns the trialing subscription
-- made active at p_at, with its history and audit rows (no invoice: the
-- caller writes it). The caller holds the locks. Raises nothing.
create or replace function subscription_trial_end_at(p_s organization_subscriptions, p_at timestamptz)
returns organization_subscriptions
language plpgsql
as $$
declare
    v_s organization_subscriptions;
begin
    update organization_subscriptions
       set status = 'active', status_changed_at = p_at, updated_at = now()
     where org_id = p_s.org_id and id = p_s.id
    returning * into v_s;
    perform ledger_subscription_event(v_s, p_s, 'subscription_trial_ended',
        format('Trial of %s ended: the subscription is active', (select name from plans where code = v_s.plan)),
        null, p_at);
    perform ledger_audit(v_s.org_id, null, 'subscription.trial_ended', 'subscription', v_s.id,
                         jsonb_build_object('plan', v_s.plan, 'occurred_at', p_at));
    return v_s;
end;
$$;

comment on function subscription_trial_end_at(organization_subscriptions, timestamptz) is
    'subscription_trial_end_at(p_s, p_at): returns the trialing subscription made active at p_at, with its '
    'history and audit rows (no invoice: the caller writes it). The caller holds the locks. Raises nothing.';


-- subscription_included_change(p_org_id, p_at, p_new_included, p_why):
-- returns (taken_back, overspent, granted): what a change now does to the
-- period's included credits (the rule, README "Included credits"). Included
-- credits are earned in proportion to the time on the plan: of a live
-- 'plan_included' lot granted for [start, end), the part (end - p_at) /
-- (end - start) is not earned at p_at (rounded down to 6 decimals). First the
-- organization's due period work up to p_at is done (the period job's own
-- billing_periods_process_org, so a late job cannot grant the old plan's
-- credits after the change) and its lots settled. Then, per live included
-- lot, the unearned part still unspent is taken back: from the pool's
-- unallocated credits first, then from members' unused allocations in
-- proportion (ledger_take_back_unused), written as a 'credit_expiry' history
-- row dated p_at (metadata.reason p_why, taken_back true; written also when
-- nothing could be taken, so that the lot counts as settled: it stopped
-- earning with its plan) and as the lot's expired credits; overspent is the
-- unearned part that could not be taken back (already spent, or held by
-- calls in flight). Then, outside the
-- baseline period, the new plan's p_new_included credits are granted pro
-- rata for the rest of the current period as a 'credit_grant' row (source
-- 'plan_included') dated p_at and expiring at the period end.
-- The caller holds the organization's row lock; this locks the pool, then
-- allocations in user id order, then lots. Raises XX000 (lots cannot cover
-- usage: see ledger_settle_lots).
create or replace function subscription_included_change(
    p_org_id text,
    p_at timestamptz,
    p_new_included numeric,
    p_why text
)
returns table (taken_back numeric, overspent numeric, granted numeric)
language plpgsql
as $$
declare
    v_lot record;
    v_unearned numeric;
    v_want numeric;
    v_unallocated numeric;
    v_from_members numeric;
    v_taken numeric;
    v_total numeric;
    v_period billing_periods;
begin
    taken_back := 0;
    overspent := 0;
    granted := 0;
    perform billing_periods_process_org(null, p_org_id, p_at);
    for v_lot in
        select l.id, l.credits, l.consumed_credits, l.expired_credits, l.expires_at,
               coalesce(h.created_at, l.granted_at) as lot_start  -- the grant row is dated its period's start
          from credit_lots l
          left join org_billing_history h on h.org_id = l.org_id and h.id = l.history_id
         where l.org_id = p_org_id and l.source = 'plan_included' and l.expired_at is null
           and l.expires_at > p_at
           -- a lot settled by an earlier change stopped earning then: nothing more to take back
           and not exists (select 1 from org_billing_history t
                            where t.org_id = l.org_id and t.event_type = 'credit_expiry'
                              and t.metadata ->> 'taken_back' = 'true'
                              and t.metadata ->> 'lot_id' = l.id::text)
         order by l.expires_at, l.id
    loop
        v_unearned := case when v_lot.lot_start >= p_at then v_lot.credits
                           else trunc(v_lot.credits * (extract(epoch from v_lot.expires_at) - extract(epoch from p_at))
                                      / (extract(epoch from v_lot.expires_at) - extract(epoch from v_lot.lot_start)), 6)
                      end;
        v_want := least(v_unearned, v_lot.credits - v_lot.consumed_credits - v_lot.expired_credits);
        v_taken := 0;
        v_from_members := 0;
        if v_want > 0 then
            select total_credits - allocated_credits into v_unallocated from credit_pools where org_id = p_org_id;
            v_taken := least(v_want, v_unallocated);
            if v_want > v_unallocated then
                v_from_members := ledger_take_back_unused(p_org_id, v_want - v_unallocated, v_lot.id);
                v_taken := v_unallocated + v_from_members;
            end if;
        end if;
        overspent := overspent + v_unearned - v_taken;
        continue when v_unearned <= 0;
        perform 1 from credit_lots where org_id = p_org_id and id = v_lot.id for update;
        update credit_pools
           set total_credits = total_credits - v_taken, updated_at = now()
         where org_id = p_org_id
        returning total_credits into v_total;
        insert into org_billing_history
            (org_id, event_type, credits, description, metadata, total_credits_after, created_at)
        values (p_org_id, 'credit_expiry', -v_taken,
                format('%s included credits not earned yet taken back (%s): of %s granted, %s are earned '
                       'by the time on the plan%s', ledger_amount_text(v_taken),
                       case p_why when 'cancel' then 'subscription canceled' else 'plan changed' end,
                       ledger_amount_text(v_lot.credits), ledger_amount_text(v_lot.credits - v_unearned),
                       case when v_unearned > v_taken
                            then format('; %s more were used already', ledger_amount_text(v_unearned - v_taken))
                            else '' end),
                jsonb_build_object('lot_id', v_lot.id, 'source', 'plan_included', 'reason', p_why,
                                   'taken_back', true, 'unearned', v_unearned, 'expires_at', v_lot.expires_at,
                                   'taken_from_members', v_from_members, 'overspent', v_unearned - v_taken),
                v_total, p_at);
        update credit_lots
           set expired_credits = expired_credits + v_taken
         where org_id = p_org_id and id = v_lot.id;
        perform ledger_audit(p_org_id, null, 'credits.included_taken_back', 'organization', p_org_id,
                             jsonb_build_object('lot_id', v_lot.id, 'credits', v_taken, 'unearned', v_unearned,
                                                'taken_from_members', v_from_members, 'reason', p_why));
        taken_back := taken_back + v_taken;
    end loop;

    select * into v_period from billing_periods where org_id = p_org_id order by period_start desc limit 1;
    if coalesce(p_new_included, 0) > 0 and found and not v_period.is_baseline
       and v_period.period_end > p_at then
        granted := trunc(p_new_included
                         * (extract(epoch from v_period.period_end) - extract(epoch from greatest(p_at, v_period.period_start)))
                         / (extract(epoch from v_period.period_end) - extract(epoch from v_period.period_start)), 6);
        if granted > 0 then
            update credit_pools
               set total_credits = total_credits + granted, updated_at = now()
             where org_id = p_org_id
            returning total_credits into v_total;
            insert into org_billing_history
                (org_id, event_type, credits, description, metadata, total_credits_after, credits_expire_at,
                 created_at)
            values (p_org_id, 'credit_grant', granted,
                    format('%s credits included in the new plan for the rest of the period (%s of %s)',
                           ledger_amount_text(granted), ledger_amount_text(granted),
                           ledger_amount_text(p_new_included)),
                    jsonb_build_object('source', 'plan_included', 'period_start', greatest(p_at, v_period.period_start),
                                       'period_end', v_period.period_end, 'full_period_start', v_period.period_start,
                                       'plan_included_credits', p_new_included, 'reason', p_why),
                    v_total, v_period.period_end, greatest(p_at, v_period.period_start));
        end if;
    end if;
    return next;
end;
$$;

comment on function subscription_included_change(text, timestamptz, numeric, text) is
    'subscription_included_change(p_org_id, p_at, p_new_included, p_why): returns (taken_back, overspent, '
    'granted): what a change now does to the period''s included credits (the rule, README "Included credits"). '
    'Included credits are earned in proportion to the time on the plan: of a live ''plan_included'' lot granted '
    'for [start, end), the part (end - p_at) / (end - start) is not earned at p_at (rounded down to 6 decimals). '
    'First the organization''s due period work up to p_at is done (the period job''s own '
    'billing_periods_process_org, so a late job cannot grant the old plan''s credits after the change) and its '
    'lots settled. Then, per live included lot, the unearned part still unspent is taken back: from the pool''s '
    'unallocated credits first, then from members'' unused allocations in proportion (ledger_take_back_unused), '
    'written as a ''credit_expiry'' history row dated p_at (metadata.reason p_why, taken_back true; written also '
    'when nothing could be taken, so that the lot counts as settled: it stopped earning with its plan) and as the '
    'lot''s expired credits; overspent is the unearned part that could not be taken back (already spent, or held '
    'by calls in flight). Then, outside the baseline period, the new plan''s p_new_included credits are granted '
    'pro rata for the rest of the current period as a ''credit_grant'' row (source ''plan_included'') dated p_at '
    'and expiring at the period end. The caller holds the organization''s row lock; this locks the pool, then '
    'allocations in user id order, then lots. Raises XX000 (lots cannot cover usage: see ledger_settle_lots).';


-- subscription_advance(p_org_id, p_until): returns how many history rows it
-- wrote. Applies to the organization's live subscription everything due up
-- to p_until, in time order (see the top of 068_subscription_terms.sql): trial end, then at
-- each period boundary a pending cancel, a scheduled change or the move to
-- the version in force, and the next period with its invoice. The caller
-- holds the organization's row lock; this locks the subscription row.
-- Raises nothing of its own.
create or replace function subscription_advance(p_org_id text, p_until timestamptz)
returns integer
language plpgsql
as $$
declare
    v_s organization_subscriptions;
    v_before organization_subscriptions;
    v_at timestamptz;
    v_version integer;
    v_price numeric;
    v_full_start timestamptz;
    v_end timestamptz;
    v_rows integer := 0;
    v_plan_name text;
begin
    select * into v_s from organization_subscriptions
     where org_id = p_org_id and status in ('trialing', 'active', 'past_due')
       for update;
    if not found then
        return 0;
    end if;
    loop
        v_before := v_s;
        v_plan_name := (select name from plans where code = v_s.plan);
        if v_s.status = 'trialing' and v_s.trial_ends_at < v_s.current_period_end
           and v_s.trial_ends_at <= p_until then
            -- the trial ends inside the current period
            v_at := v_s.trial_ends_at;
            if v_s.cancel_at_period_end then
                perform subscription_end_at(v_s, v_at, 'with its trial', '{"at_trial_end": true}');
                return v_rows + 1;
            end if;
            v_s := subscription_trial_end_at(v_s, v_at);
            perform subscription_invoice(v_s, v_at);
            v_rows := v_rows + 2;
            continue;
        end if;
        exit when v_s.current_period_end > p_until;

        -- the boundary at the end of the current period
        v_at := v_s.current_period_end;
        if v_s.cancel_at_period_end then
            perform subscription_end_at(v_s, v_at, 'at its period end', '{"at_period_end": true}');
            return v_rows + 1;
        end if;
        if v_s.scheduled_plan is not null then
            select c.version, c.price into v_version, v_price
              from subscription_cycle_price(v_s.scheduled_plan, v_at, v_s.billing_cycle) c;
            update organization_subscriptions
               set plan = scheduled_plan, plan_version = v_version, price_amount = v_price,
                   scheduled_plan = null, scheduled_by = null, scheduled_at = null, updated_at = now()
             where org_id = p_org_id and id = v_s.id
            returning * into v_s;
            perform ledger_subscription_event(v_s, v_before, 'subscription_plan_changed',
                format('Plan changed from %s to %s at the period end, as scheduled', v_plan_name,
                       (select name from plans where code = v_s.plan)),
                null, v_at, 0, null,
                jsonb_build_object('scheduled', true, 'scheduled_by', v_before.scheduled_by));
            perform ledger_audit(p_org_id, null, 'subscription.plan_changed', 'subscription', v_s.id,
                                 jsonb_build_object('from', v_before.plan, 'to', v_s.plan, 'scheduled', true,
                                                    'occurred_at', v_at));
            v_rows := v_rows + 1;
        else
            select c.version, c.price into v_version, v_price
              from subscription_cycle_price(v_s.plan, v_at, v_s.billing_cycle) c;
            if v_version > v_s.plan_version then
                update organization_subscriptions
                   set plan_version = v_version, price_amount = v_price, updated_at = now()
                 where org_id = p_org_id and id = v_s.id
                returning * into v_s;
                perform ledger_subscription_event(v_s, v_before, 'subscription_plan_version_changed',
                    format('%s moved to its version %s: $%s instead of $%s', v_plan_name, v_version,
                           trim_scale(v_price), trim_scale(v_before.price_amount)),
                    null, v_at);
                perform ledger_audit(p_org_id, null, 'subscription.plan_version_changed', 'subscription', v_s.id,
                                     jsonb_build_object('plan', v_s.plan, 'from_version', v_before.plan_version,
                                                        'to_version', v_version, 'occurred_at', v_at));
                v_rows := v_rows + 1;
            end if;
        end if;
        if v_s.status = 'trialing' and v_s.trial_ends_at <= v_at then
            v_s := subscription_trial_end_at(v_s, v_at);
            v_rows := v_rows + 1;
        end if;
        select p.full_start, p.period_end into v_full_start, v_end
          from subscription_period_at(p_org_id, v_s.billing_cycle, v_at) p;
        update organization_subscriptions
           set current_period_start = v_at, current_period_full_start = v_full_start,
               current_period_end = v_end, updated_at = now()
         where org_id = p_org_id and id = v_s.id
        returning * into v_s;
        if v_s.status in ('active', 'past_due') then
            perform subscription_invoice(v_s, v_at);
            v_rows := v_rows + 1;
        end if;
    end loop;
    return v_rows;
end;
$$;

comment on function subscription_advance(text, timestamptz) is
    'subscription_advance(p_org_id, p_until): returns how many history rows it wrote. Applies to the '
    'organization''s live subscription everything due up to p_until, in time order (see the top of '
    '068_subscription_terms.sql): trial end, then at each period boundary a pending cancel, a scheduled change or '
    'the move to the version in force, and the next period with its invoice. The caller holds the organization''s '
    'row lock; this locks the subscription row. Raises nothing of its own.';


-- renew_subscription(p_org_id, p_until, p_actor_id): returns how many
-- history rows it wrote (0: nothing was due). Applies to the organization's
-- live subscription everything due up to p_until (default now): trial end,
-- pending cancel, scheduled change, move to the plan version in force, next
-- periods with one invoice each, catching up every missed period. Running it
-- again, or later, writes nothing twice. Also refreshes plans' copy of the
-- versions in force.
-- p_actor_id must be a system admin (null: the period job).
-- Locks the organization's row, then the subscription. Raises CB002 (unknown
-- organization or actor), CB008, CB009 (p_until in the future or more than
-- 400 days ago).
create or replace function renew_subscription(
    p_org_id text,
    p_until timestamptz default null,
    p_actor_id text default null
)
returns integer
language plpgsql
as $$
begin
    perform ledger_check_occurred_at(p_until, 'Renew up to');
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'system_admin');
    perform plan_catalogue_refresh();
    perform 1 from organizations where id = p_org_id for no key update;
    return subscription_advance(p_org_id, coalesce(p_until, now()));
end;
$$;

comment on function renew_subscription(text, timestamptz, text) is
    'renew_subscription(p_org_id, p_until, p_actor_id): returns how many history rows it wrote (0: nothing was '
    'due). Applies to the organization''s live subscription everything due up to p_until (default now): trial '
    'end, pending cancel, scheduled change, move to the plan version in force, next periods with one invoice '
    'each, catching up every missed period. Running it again, or later, writes nothing twice. Also refreshes '
    'plans'' copy of the versions in force. p_actor_id must be a system admin (null: the period job). Locks the '
    'organization''s row, then the subscription. Raises CB002 (unknown organization or actor), CB008, CB009 '
    '(p_until in the future or more than 400 days ago).';
