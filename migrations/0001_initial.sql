-- Arrakis worker schema, first version (SIETCH.md §Data).
--
-- Tenancy: `communities` is the tenant registry (one row per Discord guild)
-- and has no RLS; the tenant role may only SELECT it, while the owner
-- connection creates communities and edits their settings. Every other
-- table carries `community_id`, has RLS enabled and forced, and one policy
-- comparing that column with app_community_id(), which raises when the
-- transaction never set `app.community_id` (fail closed). The tenant role
-- and its grants are created by `arrakis migrate` after the migrations,
-- because its name is configurable (ARRAKIS_DB_TENANT_ROLE).

-- '' is what a session reads once an earlier transaction's SET LOCAL ended,
-- so it must fail exactly like NULL.
CREATE FUNCTION app_community_id() RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    raw text := current_setting('app.community_id', true);
BEGIN
    IF raw IS NULL OR raw = '' THEN
        RAISE EXCEPTION 'app.community_id is not set'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN raw::bigint;
END
$$;

-- settings (jsonb) keys the worker reads:
--   chain_id    number   EVM chain id
--   rpc_urls    string[] optional; falls back to ARRAKIS_CHAIN_RPC_URLS
--   token       string   "0x…" ERC-20 contract address
--   start_block number   first block scanned for transfers
--   decimals    number   token decimals, default 18
--   roles       object   tier name | "naib" | "fedaykin" | "former_naib" | "taqwa" → Discord role id (string)
--   thresholds  object   tier name → minimum balance (number)
CREATE TABLE communities (
    id          bigserial PRIMARY KEY,
    guild_id    bigint NOT NULL UNIQUE,
    active      boolean NOT NULL DEFAULT true,
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    in_grace    boolean NOT NULL DEFAULT false,
    grace_until timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE profiles (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    user_id      bigint NOT NULL,
    nym          text,
    bio          text,
    joined_at    timestamptz,
    left_at      timestamptz,
    onboarded_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, user_id)
);
CREATE UNIQUE INDEX profiles_nym ON profiles (community_id, lower(nym)) WHERE nym IS NOT NULL;

-- Verified wallets only; pending proofs live in verification_sessions.
CREATE TABLE wallets (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    address      text NOT NULL CHECK (address = lower(address)),
    user_id      bigint NOT NULL,
    verified_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, address)
);
CREATE INDEX wallets_user ON wallets (community_id, user_id);

CREATE TABLE verification_sessions (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    session_id   text NOT NULL,
    user_id      bigint NOT NULL,
    nonce        text NOT NULL,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'completed', 'expired', 'failed')),
    address      text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    completed_at timestamptz,
    PRIMARY KEY (community_id, session_id)
);
CREATE INDEX verification_sessions_user ON verification_sessions (community_id, user_id, status);

CREATE TABLE eligibility_snapshots (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    id           bigserial,
    block_number bigint NOT NULL,
    holders      integer NOT NULL DEFAULT 0,
    entries      jsonb NOT NULL DEFAULT '[]'::jsonb,
    taken_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, id)
);
CREATE INDEX eligibility_snapshots_taken ON eligibility_snapshots (community_id, taken_at DESC);

-- Current eligibility, rewritten from the latest snapshot.
CREATE TABLE eligibility (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    address      text NOT NULL,
    balance      numeric(78, 0) NOT NULL,
    rank         integer,
    tier         text,
    snapshot_id  bigint,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, address),
    FOREIGN KEY (community_id, snapshot_id)
        REFERENCES eligibility_snapshots (community_id, id) ON DELETE SET NULL (snapshot_id)
);
CREATE INDEX eligibility_rank ON eligibility (community_id, rank);

CREATE TABLE overrides (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    id           bigserial,
    user_id      bigint,
    address      text,
    kind         text NOT NULL,
    value        jsonb NOT NULL DEFAULT '{}'::jsonb,
    reason       text,
    created_by   bigint,
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, id),
    CHECK (user_id IS NOT NULL OR address IS NOT NULL)
);
CREATE INDEX overrides_user ON overrides (community_id, user_id);
CREATE INDEX overrides_address ON overrides (community_id, address);

CREATE TABLE naib_seats (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    seat         integer NOT NULL CHECK (seat > 0),
    user_id      bigint NOT NULL,
    seated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, seat),
    UNIQUE (community_id, user_id)
);

CREATE TABLE waitlist (
    community_id  bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    user_id       bigint NOT NULL,
    address       text,
    registered_at timestamptz NOT NULL DEFAULT now(),
    notified_at   timestamptz,
    PRIMARY KEY (community_id, user_id)
);

CREATE TABLE badges (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    user_id      bigint NOT NULL,
    badge        text NOT NULL,
    awarded_by   bigint,
    awarded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, user_id, badge)
);
CREATE INDEX badges_badge ON badges (community_id, badge);

-- Grants form a tree through parent_id; revoking (deleting) a grant removes
-- every grant derived from it.
CREATE TABLE water_shares (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    id           bigserial,
    granter_id   bigint NOT NULL,
    grantee_id   bigint NOT NULL,
    parent_id    bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, id),
    FOREIGN KEY (community_id, parent_id)
        REFERENCES water_shares (community_id, id) ON DELETE CASCADE
);
CREATE INDEX water_shares_grantee ON water_shares (community_id, grantee_id);
CREATE INDEX water_shares_parent ON water_shares (community_id, parent_id);

CREATE TABLE notification_settings (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    user_id      bigint NOT NULL,
    settings     jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, user_id)
);

CREATE TABLE activity (
    community_id   bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    user_id        bigint NOT NULL,
    messages       bigint NOT NULL DEFAULT 0,
    points         bigint NOT NULL DEFAULT 0,
    last_active_at timestamptz,
    PRIMARY KEY (community_id, user_id)
);

CREATE TABLE audit_log (
    community_id   bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    id             bigserial,
    action         text NOT NULL,
    actor_id       bigint,
    subject_id     bigint,
    correlation_id text,
    details        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, id)
);
CREATE INDEX audit_log_created ON audit_log (community_id, created_at DESC);
CREATE INDEX audit_log_correlation ON audit_log (community_id, correlation_id);

-- Effect idempotency: written in the same transaction as the effect, so a
-- redelivered message finds its row and does nothing.
CREATE TABLE processed_messages (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    message_id   text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, message_id)
);
-- Pruning scans by age across all communities.
CREATE INDEX processed_messages_age ON processed_messages (processed_at);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'profiles', 'wallets', 'verification_sessions', 'eligibility_snapshots',
        'eligibility', 'overrides', 'naib_seats', 'waitlist', 'badges',
        'water_shares', 'notification_settings', 'activity', 'audit_log',
        'processed_messages'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (community_id = app_community_id()) '
            'WITH CHECK (community_id = app_community_id())', t);
    END LOOP;
END
$$;
