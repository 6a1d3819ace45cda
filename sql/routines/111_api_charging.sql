-- The charging entry points the HTTP API needs beside 110_charging.sql's:
-- a fixed credit amount that says whether it was a replay (charge_credits,
-- over deduct_credits), and many metered events in one call
-- (charge_usage_batch, POST /api/v1/charges/batch: one database round trip
-- for up to 1,000 events). Callers are metered services, as for
-- charge_usage: no acting user.


-- charge_credits(p_org_id, p_user_id, p_credits, p_service_type,
--                p_service_name, p_request_id, p_metadata, p_occurred_at):
-- returns (org_id, credits, remaining, replayed). Charges a fixed number of
-- credits with deduct_credits, to p_org_id or (null) charging_org_for's
-- organization, and says whether the request id had already been charged
-- (replayed true: deduct_credits answered as the first call did, charging
-- nothing more). Locks the member's allocation row before it looks for the
-- request id, as charge_usage does, so a retry that queued behind its first
-- call answers replayed. Raises what deduct_credits and charging_org_for
-- raise.
create or replace function charge_credits(
    p_org_id text,
    p_user_id text,
    p_credits numeric,
    p_service_type text,
    p_service_name text,
    p_request_id text default null,
    p_metadata jsonb default '{}',
    p_occurred_at timestamptz default null
)
returns table (org_id text, credits numeric, remaining numeric, replayed boolean)
language plpgsql
as $$
begin
    org_id := charging_org_for(p_user_id, p_org_id);
    replayed := false;
    if p_request_id is not null then
        perform 1 from user_credit_allocations a
         where a.org_id = charge_credits.org_id and a.user_id = p_user_id and a.is_active
           for update;
        replayed := exists (select 1 from credit_usage_attribution c
                             where c.org_id = charge_credits.org_id and c.request_id = p_request_id);
    end if;
    remaining := deduct_credits(org_id, p_user_id, p_credits, p_service_type, p_service_name, p_request_id,
                                coalesce(p_metadata, '{}'), p_occurred_at);
    credits := p_credits;
    return next;
end;
$$;

comment on function charge_credits(text, text, numeric, text, text, text, jsonb, timestamptz) is
    'charge_credits(p_org_id, p_user_id, p_credits, p_service_type, p_service_name, p_request_id, p_metadata, '
    'p_occurred_at): returns (org_id, credits, remaining, replayed). Charges a fixed number of credits with '
    'deduct_credits, to p_org_id or (null) charging_org_for''s organization, and says whether the request id had '
    'already been charged (replayed true: deduct_credits answered as the first call did, charging nothing more). '
    'Locks the member''s allocation row before it looks for the request id, as charge_usage does. Raises what '
    'deduct_credits and charging_org_for raise.';


-- charge_usage_batch(p_events jsonb, p_allowed_orgs text[]): returns one
-- row per event, in the order given: (position, org_id, credits, remaining,
-- explanation, replayed, code, message). p_events is a JSON array of 1 to
-- 1,000 objects, each with user_id, service_type and service_name, and
-- optionally org_id, input_tokens, output_tokens, images, requests (JSON
-- strings or numbers), byok, request_id, metadata (an object) and
-- occurred_at, meaning what charge_usage's parameters of the same names
-- mean. p_allowed_orgs null: any organization may be charged; else an event
-- whose organization (named, or charging_org_for's) is not listed is
-- refused with CB008. A charged event has code null; a refused one its
-- SQLSTATE (CB001..CB0NN, or 22xxx for a value PostgreSQL cannot read) and
-- the message, and changed nothing. Locks what charge_usage locks, one event
-- at a time, in the order given. Raises CB009 (not an array, empty, more than
-- 1,000 events); any error other than a refusal (a deadlock, say) aborts
-- the whole batch.
create or replace function charge_usage_batch(p_events jsonb, p_allowed_orgs text[] default null)
returns table (
    "position" integer, org_id text, credits numeric, remaining numeric, explanation jsonb, replayed boolean,
    code text, message text
)
language plpgsql
as $$
declare
    v_event jsonb;
    v_charge record;
    v_org text;
begin
    if p_events is null or jsonb_typeof(p_events) <> 'array' then
        raise exception using errcode = 'CB009',
            message = 'A batch is a JSON array of events: send "events": [{...}, ...].';
    end if;
    if jsonb_array_length(p_events) = 0 or jsonb_array_length(p_events) > 1000 then
        raise exception using errcode = 'CB009',
            message = format('A batch holds 1 to 1,000 events (got %s): split it into batches of at most 1,000.',
                             jsonb_array_length(p_events));
    end if;
    for v_event, "position" in
        select e.value, e.ordinality::integer - 1 from jsonb_array_elements(p_events) with ordinality e
    loop
        v_org := null; org_id := null; credits := null; remaining := null; explanation := null; replayed := null;
        code := null; message := null;
        begin
            if jsonb_typeof(v_event) <> 'object' then
                raise exception using errcode = 'CB009', message = 'Each event of a batch is a JSON object.';
            end if;
            v_org := charging_org_for(v_event ->> 'user_id', v_event ->> 'org_id');
            if p_allowed_orgs is not null and not (v_org = any(p_allowed_orgs)) then
                raise exception using errcode = 'CB008',
                    message = format('This API key may not charge organization %L: it is limited to its listed '
                                     'organizations.', v_org);
            end if;
            select * into v_charge
              from charge_usage(v_org, v_event ->> 'user_id', v_event ->> 'service_type',
                                v_event ->> 'service_name',
                                coalesce((v_event ->> 'input_tokens')::numeric, 0),
                                coalesce((v_event ->> 'output_tokens')::numeric, 0),
                                coalesce((v_event ->> 'images')::numeric, 0),
                                coalesce((v_event ->> 'requests')::numeric, 1),
                                coalesce((v_event ->> 'byok')::boolean, false),
                                v_event ->> 'request_id',
                                coalesce(v_event -> 'metadata', '{}'),
                                (v_event ->> 'occurred_at')::timestamptz);
            org_id := v_charge.org_id;
            credits := v_charge.credits;
            remaining := v_charge.remaining;
            explanation := v_charge.explanation;
            replayed := v_charge.replayed;
        exception when others then
            if left(sqlstate, 2) not in ('CB', '22') then
                raise;  -- not a refusal: the batch fails as a whole
            end if;
            org_id := v_org;
            code := sqlstate;
            message := sqlerrm;
        end;
        return next;
    end loop;
end;
$$;

comment on function charge_usage_batch(jsonb, text[]) is
    'charge_usage_batch(p_events jsonb, p_allowed_orgs text[]): returns one row per event, in the order given: '
    '(position, org_id, credits, remaining, explanation, replayed, code, message). p_events is a JSON array of 1 to '
    '1,000 objects, each with user_id, service_type and service_name, and optionally org_id, input_tokens, '
    'output_tokens, images, requests, byok, request_id, metadata (an object) and occurred_at, meaning what '
    'charge_usage''s parameters of the same names mean. p_allowed_orgs null: any organization may be charged; else '
    'an event whose organization is not listed is refused with CB008. A charged event has code null; a refused one '
    'its SQLSTATE (CB001..CB0NN, or 22xxx for a value PostgreSQL cannot read) and the message, and changed nothing. '
    'Locks what charge_usage locks, one event at a time, in the order given. Raises CB009 (not an array, empty, more '
    'than 1,000 events); any error other than a refusal aborts the whole batch.';
