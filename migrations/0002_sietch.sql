-- Sietch on the workers (SIETCH.md): what the eligibility sync, role
-- management, verification and activity need beyond the first schema.

-- Sync bookkeeping (owner-written, like the rest of `communities`).
ALTER TABLE communities
    ADD COLUMN last_synced_at      timestamptz,
    ADD COLUMN last_sync_attempt_at timestamptz,
    ADD COLUMN last_sync_error     text;

-- Former Naib is a standing title: kept until the member is seated again.
ALTER TABLE profiles ADD COLUMN former_naib boolean NOT NULL DEFAULT false;

-- Wrong signatures count against the session (3 attempts).
ALTER TABLE verification_sessions ADD COLUMN attempts integer NOT NULL DEFAULT 0;

-- Activity points in hundredths, so +0.5 and +0.25 and the 10 % decay
-- stay exact integers.
COMMENT ON COLUMN activity.points IS 'activity score × 100';

-- Every address that ever received the token, scanned incrementally from
-- the Transfer logs: the sync reads balances of exactly these.
CREATE TABLE holders (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    address      text NOT NULL CHECK (address = lower(address)),
    first_block  bigint NOT NULL,
    burned       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (community_id, address)
);

-- How far the Transfer logs of the community's token were scanned.
CREATE TABLE chain_cursors (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    token        text NOT NULL,
    next_block   bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id)
);

-- The managed roles the bot last applied to each member: the sync sends
-- only the difference between these and what the member should have.
CREATE TABLE member_roles (
    community_id bigint NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    user_id      bigint NOT NULL,
    roles        bigint[] NOT NULL DEFAULT '{}',
    tier         text,
    best_rank    integer,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, user_id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['holders', 'chain_cursors', 'member_roles'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (community_id = app_community_id()) '
            'WITH CHECK (community_id = app_community_id())', t);
    END LOOP;
END
$$;
