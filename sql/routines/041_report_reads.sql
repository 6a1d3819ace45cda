-- The reads of the read models (040_views.sql) that billing_core.reports
-- runs: each takes the acting user and authorizes it here, with the same
-- errors as the writes (ledger_authorize: CB002 unknown actor, CB008 lacking
-- the role; a null actor is the operator, accepted on the owner's connection
-- only), so Python passes parameters and decides nothing. The views stay the
-- place where the figures are defined; the app gets no SELECT on them.


-- organization_pool(p_org_id, p_actor_id): the organization's pool, no row
-- when it has none yet. p_actor_id: an admin of the organization, a system
-- admin or the operator. Locks nothing. Raises CB002, CB008.
create or replace function organization_pool(p_org_id text, p_actor_id text)
returns table (org_id text, total_credits numeric, allocated_credits numeric, used_credits numeric,
               available_credits numeric, monthly_refresh_amount numeric)
language plpgsql
stable
as $$
#variable_conflict use_column
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    return query
        select p.org_id, p.total_credits, p.allocated_credits, p.used_credits, p.available_credits,
               p.monthly_refresh_amount
          from organization_credit_pools p
         where p.org_id = p_org_id;
end;
$$;

comment on function organization_pool(text, text) is
    'organization_pool(p_org_id, p_actor_id): the organization''s pool, no row when it has none yet. p_actor_id: '
    'an admin of the organization, a system admin or the operator. Locks nothing. Raises CB002, CB008.';


-- org_billing_summaries(p_actor_id): every organization's billing summary
-- (org_billing_summary), by name. System admins and the operator only.
-- Locks nothing. Raises CB002, CB008.
create or replace function org_billing_summaries(p_actor_id text)
returns setof org_billing_summary
language plpgsql
stable
as $$
begin
    perform ledger_authorize(p_actor_id, null, 'system_admin');
    return query select * from org_billing_summary s order by s.org_name, s.org_id;
end;
$$;

comment on function org_billing_summaries(text) is
    'org_billing_summaries(p_actor_id): every organization''s billing summary (org_billing_summary), by name. '
    'System admins and the operator only. Locks nothing. Raises CB002, CB008.';


-- org_billing_summary_of(p_org_id, p_actor_id): one organization's billing
-- summary. p_actor_id: an admin of it, a system admin or the operator.
-- Locks nothing. Raises CB002 (unknown organization or actor), CB008.
create or replace function org_billing_summary_of(p_org_id text, p_actor_id text)
returns setof org_billing_summary
language plpgsql
stable
as $$
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    return query select * from org_billing_summary s where s.org_id = p_org_id;
end;
$$;

comment on function org_billing_summary_of(text, text) is
    'org_billing_summary_of(p_org_id, p_actor_id): one organization''s billing summary. p_actor_id: an admin of '
    'it, a system admin or the operator. Locks nothing. Raises CB002 (unknown organization or actor), CB008.';


-- my_credits(p_actor_id): the acting user's allocation in each of their
-- organizations (user_multi_org_credits), default first. Only ever the
-- actor's own rows. Locks nothing. Raises CB002 (unknown actor), CB008 (an
-- empty one: no one logged in).
create or replace function my_credits(p_actor_id text)
returns table (org_id text, org_name text, org_status text, role text, is_default boolean,
               allocated_credits numeric, used_credits numeric, remaining_credits numeric, usage_percent numeric,
               period_start timestamptz, period_end timestamptz)
language plpgsql
stable
as $$
#variable_conflict use_column
begin
    perform ledger_require_actor(p_actor_id);
    return query
        select c.org_id, c.org_name, c.org_status, c.role, c.is_default, c.allocated_credits, c.used_credits,
               c.remaining_credits, c.usage_percent, c.period_start, c.period_end
          from user_multi_org_credits c
         where c.user_id = p_actor_id
         order by c.is_default desc, c.org_name, c.org_id;
end;
$$;

comment on function my_credits(text) is
    'my_credits(p_actor_id): the acting user''s allocation in each of their organizations '
    '(user_multi_org_credits), default first. Only ever the actor''s own rows. Locks nothing. Raises CB002 '
    '(unknown actor), CB008 (an empty one: no one logged in).';


-- org_billing_metrics_of(p_org_id, p_actor_id): the organization's 30-day
-- usage against the previous 30 days (org_billing_metrics). p_actor_id: an
-- admin of it, a system admin or the operator. Locks nothing. Raises CB002,
-- CB008.
create or replace function org_billing_metrics_of(p_org_id text, p_actor_id text)
returns setof org_billing_metrics
language plpgsql
stable
as $$
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    return query select * from org_billing_metrics m where m.org_id = p_org_id;
end;
$$;

comment on function org_billing_metrics_of(text, text) is
    'org_billing_metrics_of(p_org_id, p_actor_id): the organization''s 30-day usage against the previous 30 days '
    '(org_billing_metrics). p_actor_id: an admin of it, a system admin or the operator. Locks nothing. Raises '
    'CB002, CB008.';


-- org_billing_history_of(p_org_id, p_actor_id, p_limit): the organization's
-- billing history, newest first, at most p_limit rows. p_actor_id: an admin
-- of it, a system admin or the operator. Locks nothing. Raises CB002, CB008.
create or replace function org_billing_history_of(p_org_id text, p_actor_id text, p_limit integer default 200)
returns table (created_at timestamptz, event_type text, credits numeric, amount numeric, currency text,
               description text, total_credits_after numeric)
language plpgsql
stable
as $$
#variable_conflict use_column
begin
    perform ledger_require_org(p_org_id);
    perform ledger_authorize(p_actor_id, p_org_id, 'admin');
    return query
        select h.created_at, h.event_type, h.credits, h.amount, h.currency, h.description, h.total_credits_after
          from org_billing_history h
         where h.org_id = p_org_id
         order by h.created_at desc, h.id desc
         limit p_limit;
end;
$$;

comment on function org_billing_history_of(text, text, integer) is
    'org_billing_history_of(p_org_id, p_actor_id, p_limit): the organization''s billing history, newest first, at '
    'most p_limit rows. p_actor_id: an admin of it, a system admin or the operator. Locks nothing. Raises CB002, '
    'CB008.';
