-- 0015: a member's requests for more credits, and 90% alerts that can come back.
--
-- credit_requests: a member asks the admins of one of their organizations for
-- more credits (sql/routines/048_credit_requests.sql). An admin approves it,
-- which raises the member's allocation through allocate_credits_to_user (the
-- pool's available credits pay for it: nothing is minted), or declines it
-- with an optional reason; the member may withdraw it while it is pending.
--
--   credits:           what the member asked for (> 0)
--   note:              the member's optional words to the admins (plain text)
--   approved_credits:  what the approval allocated (the request's credits, or
--                      the amount the admin chose); null unless approved
--   decided_by/at:     who approved or declined it and when (the member, for a
--                      withdrawal)
--   decline_reason:    the admin's optional words when declining
create table credit_requests (
    org_id text not null references organizations (id),
    id text not null default gen_random_uuid()::text,
    user_id text not null references users (id),
    credits numeric(20, 6) not null,
    note text,
    status text not null default 'pending',
    approved_credits numeric(20, 6),
    decided_by text references users (id),
    decided_at timestamptz,
    decline_reason text,
    created_at timestamptz not null default now(),
    primary key (org_id, id),
    constraint credit_requests_status_known check (status in ('pending', 'approved', 'declined', 'withdrawn')),
    constraint credit_requests_credits_valid check (credits > 0 and credits <> 'NaN'),
    constraint credit_requests_approved_credits
        check ((status = 'approved') = (approved_credits is not null) and (approved_credits is null or approved_credits > 0)),
    constraint credit_requests_decided check ((status = 'pending') = (decided_at is null)),
    constraint credit_requests_reason_when_declined check (decline_reason is null or status = 'declined')
);

-- at most one pending request per member and organization
create unique index credit_requests_one_pending on credit_requests (org_id, user_id) where status = 'pending';

-- a member's requests, newest first
create index credit_requests_by_user on credit_requests (user_id, org_id, created_at desc);

-- An allocation's 90% alert is resolved when a top-up brings the member back
-- under 90% (094_alerts.sql); crossing 90% again then opens a new one. So the
-- rule is one UNRESOLVED alert per allocation, not one alert ever.
drop index credit_alerts_once_per_allocation;

create unique index credit_alerts_one_open_per_allocation
    on credit_alerts (org_id, allocation_id) where kind = 'allocation_90' and status <> 'resolved';
