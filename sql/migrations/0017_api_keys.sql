-- 0017: API keys (issue 10) and the windows that count their requests.
--
-- api_keys: a key acts as the user who created it (created_by). The token
-- itself is never stored: only its public prefix (shown to recognize a key)
-- and the sha256 digest of the whole token, checked on every request
-- (sql/routines/140_api_keys.sql).
--   kind 'organization': made by an admin of org_id, acts within org_id only.
--   kind 'service':      made by a system admin, charges for users of any
--                        organization (no row in api_key_organizations) or of
--                        its listed organizations only; system_scope lets it
--                        read the System endpoints and act on every
--                        organization's endpoints.
--   limits (per key; null: the kind's default, see ledger_api_key_limits):
--     reads_per_minute, writes_per_minute, subscription_changes_per_hour,
--     charges_per_second (service keys only).
--   last_used_at: refreshed at most once a minute (no hot row per request).
create table api_keys (
    key_id text primary key,
    prefix text not null,
    digest bytea not null,
    name text not null,
    kind text not null,
    org_id text references organizations (id),
    system_scope boolean not null default false,
    created_by text not null references users (id),
    created_at timestamptz not null default now(),
    revoked_at timestamptz,
    revoked_by text references users (id),
    last_used_at timestamptz,
    reads_per_minute integer,
    writes_per_minute integer,
    subscription_changes_per_hour integer,
    charges_per_second integer,
    constraint api_keys_prefix_unique unique (prefix),
    constraint api_keys_digest_unique unique (digest),
    constraint api_keys_kind_known check (kind in ('service', 'organization')),
    constraint api_keys_scope check (
        (kind = 'organization' and org_id is not null and not system_scope and charges_per_second is null)
        or (kind = 'service' and org_id is null)),
    constraint api_keys_digest_is_sha256 check (octet_length(digest) = 32),
    constraint api_keys_revoked check ((revoked_at is null) = (revoked_by is null)),
    constraint api_keys_limits_positive check (
        coalesce(reads_per_minute, 1) > 0 and coalesce(writes_per_minute, 1) > 0
        and coalesce(subscription_changes_per_hour, 1) > 0 and coalesce(charges_per_second, 1) > 0)
);

-- an organization's keys, newest first
create index api_keys_by_org on api_keys (org_id, created_at desc);

-- api_key_organizations: the organizations a service key is limited to
-- (none: platform-wide).
create table api_key_organizations (
    key_id text not null references api_keys (key_id),
    org_id text not null references organizations (id),
    primary key (key_id, org_id)
);

-- api_key_rate_windows: the requests counted per key, class of use and
-- shard in the current window (window_start). Per-minute and per-hour
-- classes use shard 0 only (one row per key and class: exact across
-- processes, the row lock orders them); the per-second charge class spreads
-- over 16 shards (the connection's backend pid % 16), summed, so that a
-- service key's many connections do not queue on one row. UNLOGGED: the
-- counters may be lost in a crash, which at worst forgets one window.
create unlogged table api_key_rate_windows (
    key_id text not null,
    class text not null,
    shard smallint not null,
    window_start timestamptz not null,
    requests integer not null,
    primary key (key_id, class, shard)
);
