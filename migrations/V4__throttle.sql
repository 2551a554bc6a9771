-- Brute-force protection and rate limits. They live here, not in process
-- memory, so every process of the portal counts the same attempts.
--
-- Keys (addresses, networks, user ids) are stored as SHA-256 only: the email
-- box of a failed sign-in sometimes holds a password typed in the wrong field,
-- and the addresses of people with no account are personal data we have no use
-- for. These tables only ever need to recognise a key again, never show it.

-- Sign-in failures ---------------------------------------------------------------
-- One row per account key (the normalized email, whether or not an account has
-- it, so a lock never tells whether one exists) and one per client network (an
-- IPv4 address, an IPv6 /64).
CREATE TABLE sign_in_throttle (
    kind             text NOT NULL CHECK (kind IN ('account', 'ip')),
    key_hash         bytea NOT NULL CHECK (length(key_hash) = 32),
    -- Attempts counted against the key: reserved before the password is
    -- checked (so parallel guesses cannot slip past the limit) and given back
    -- when it was right.
    failures         integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_failure_at  timestamptz NOT NULL DEFAULT now(),
    -- When the current lock began; NULL until the counter reaches its threshold.
    throttled_at     timestamptz,
    -- When the account's owner was last emailed about an attack (survives resets).
    alerted_at       timestamptz,
    PRIMARY KEY (kind, key_hash)
);
CREATE INDEX sign_in_throttle_last_failure_idx ON sign_in_throttle (last_failure_at);

-- The network a client address counts against: the address itself for IPv4
-- (and IPv4-mapped IPv6), the /64 for IPv6 (one subscriber's allocation).
-- Must agree with `throttle::ip_key` in Rust.
CREATE FUNCTION portal_ip_key(p_ip inet) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_ip IS NULL THEN 'unknown'
        WHEN family(p_ip) = 4 THEN host(p_ip)
        WHEN p_ip << inet '::ffff:0.0.0.0/96' THEN host(inet '0.0.0.0' + (p_ip - inet '::ffff:0.0.0.0'))
        ELSE host(network(set_masklen(p_ip, 64))) || '/64'
    END
$$;

-- How long a key must wait after its last failure: nothing below the threshold
-- (5 for an account, 30 for a network), then 1 s, 2 s, 4 s ... capped at 15
-- minutes, so no number of failures locks anyone out for longer than that.
CREATE FUNCTION portal_sign_in_backoff(p_kind text, p_failures integer) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_failures < (CASE p_kind WHEN 'account' THEN 5 ELSE 30 END) THEN interval '0'
        ELSE make_interval(secs => least(power(2, least(p_failures - (CASE p_kind WHEN 'account' THEN 5 ELSE 30 END),
                                                         20)), 900))
    END
$$;

-- Locks a key's row (creating it if needed), first forgetting failures after a
-- quiet day. Internal to the functions below.
CREATE FUNCTION portal_sign_in_hold(p_kind text, p_key bytea) RETURNS sign_in_throttle
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO sign_in_throttle AS t (kind, key_hash) VALUES (p_kind, p_key)
    ON CONFLICT (kind, key_hash) DO UPDATE
    SET failures = CASE WHEN t.last_failure_at < now() - interval '24 hours' THEN 0 ELSE t.failures END,
        throttled_at = CASE WHEN t.last_failure_at < now() - interval '24 hours' THEN NULL ELSE t.throttled_at END
    RETURNING t.*
$$;

-- Called before a sign-in attempt checks any password. Answers 0 when the
-- attempt may go ahead (and counts it, as a failure until proven otherwise),
-- or the whole seconds to wait while the account or the network is locked; a
-- refused attempt is not counted and extends nothing.
CREATE FUNCTION portal_sign_in_begin(p_email text, p_ip inet)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_account bytea := sha256(convert_to(lower(btrim(p_email)), 'UTF8'));
    v_net bytea := sha256(convert_to(portal_ip_key(p_ip), 'UTF8'));
    v_acc_row sign_in_throttle%ROWTYPE;
    v_net_row sign_in_throttle%ROWTYPE;
    v_until timestamptz;
BEGIN
    -- A locked key answers from a plain read: hammering it writes nothing.
    SELECT max(t.last_failure_at + portal_sign_in_backoff(t.kind, t.failures)) INTO v_until
    FROM sign_in_throttle t
    WHERE (t.kind, t.key_hash) IN (('account', v_account), ('ip', v_net))
      AND t.last_failure_at >= now() - interval '24 hours';
    IF v_until > clock_timestamp() THEN
        RETURN ceil(extract(epoch FROM v_until - clock_timestamp()))::integer;
    END IF;
    -- Again under the rows' locks, account first and network second (every
    -- function here takes them in that order, so two calls never deadlock).
    v_acc_row := portal_sign_in_hold('account', v_account);
    v_net_row := portal_sign_in_hold('ip', v_net);
    v_until := greatest(v_acc_row.last_failure_at + portal_sign_in_backoff('account', v_acc_row.failures),
                        v_net_row.last_failure_at + portal_sign_in_backoff('ip', v_net_row.failures));
    IF v_until > clock_timestamp() THEN
        RETURN ceil(extract(epoch FROM v_until - clock_timestamp()))::integer;
    END IF;
    UPDATE sign_in_throttle SET failures = failures + 1, last_failure_at = clock_timestamp()
    WHERE kind = 'account' AND key_hash = v_account;
    UPDATE sign_in_throttle SET failures = failures + 1, last_failure_at = clock_timestamp()
    WHERE kind = 'ip' AND key_hash = v_net;
    RETURN 0;
END
$$;

-- Gives back the attempt portal_sign_in_begin counted: the password was right
-- (p_reset: the account's counter starts over; the network's keeps its other
-- failures), or it was never checked (the server was too busy).
CREATE FUNCTION portal_sign_in_release(p_email text, p_ip inet, p_reset boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE sign_in_throttle
    SET failures = CASE WHEN p_reset THEN 0 ELSE greatest(failures - 1, 0) END,
        throttled_at = CASE WHEN p_reset THEN NULL ELSE throttled_at END
    WHERE kind = 'account' AND key_hash = sha256(convert_to(lower(btrim(p_email)), 'UTF8'));
    UPDATE sign_in_throttle SET failures = greatest(failures - 1, 0)
    WHERE kind = 'ip' AND key_hash = sha256(convert_to(portal_ip_key(p_ip), 'UTF8'));
END
$$;

-- A failed sign-in (wrong password, unknown address, unusable account): the
-- owner of a named account sees it in their activity log; the lock counts from
-- now. When this failure starts the account's lock, that is logged once, and the
-- owner of a verified, enabled account is emailed (at most once an hour), in
-- this same transaction. Says nothing to the caller. Replaces the version of
-- V1 (same signature, so grants and callers stay).
CREATE OR REPLACE FUNCTION portal_sign_in_failed(p_email text, p_ip inet)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_email text := lower(btrim(p_email));
    v_user users%ROWTYPE;
    v_row sign_in_throttle%ROWTYPE;
    v_begins boolean;
    v_alert boolean;
BEGIN
    SELECT * INTO v_user FROM users WHERE email = v_email;
    IF FOUND THEN
        INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip)
        VALUES (v_user.customer_id, NULL, v_user.email, 'auth.sign_in_failed', 'user', v_user.id, p_ip);
    END IF;

    SELECT * INTO v_row FROM sign_in_throttle
    WHERE kind = 'account' AND key_hash = sha256(convert_to(v_email, 'UTF8'))
    FOR UPDATE;
    IF FOUND THEN
        v_begins := v_row.throttled_at IS NULL AND portal_sign_in_backoff('account', v_row.failures) > interval '0';
        v_alert := v_begins AND v_user.id IS NOT NULL AND v_user.email_verified_at IS NOT NULL
                   AND v_user.disabled_at IS NULL
                   AND (v_row.alerted_at IS NULL OR v_row.alerted_at <= now() - interval '1 hour');
        UPDATE sign_in_throttle
        SET last_failure_at = greatest(last_failure_at, clock_timestamp()),
            throttled_at = CASE WHEN v_begins THEN clock_timestamp() ELSE throttled_at END,
            alerted_at = CASE WHEN v_alert THEN clock_timestamp() ELSE alerted_at END
        WHERE kind = v_row.kind AND key_hash = v_row.key_hash;
        IF v_begins AND v_user.id IS NOT NULL THEN
            INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip,
                                      details)
            VALUES (v_user.customer_id, NULL, v_user.email, 'auth.sign_in_throttled', 'user', v_user.id, p_ip,
                    jsonb_build_object('failures', v_row.failures));
        END IF;
        IF v_alert THEN
            INSERT INTO outbox (to_address, to_name, template, params)
            VALUES (v_user.email, v_user.name, 'sign_in_attack',
                    jsonb_build_object('name', v_user.name, 'failures', v_row.failures, 'ip', host(p_ip)));
        END IF;
    END IF;

    UPDATE sign_in_throttle
    SET last_failure_at = greatest(last_failure_at, clock_timestamp()),
        throttled_at = CASE WHEN throttled_at IS NULL AND portal_sign_in_backoff('ip', failures) > interval '0'
                            THEN clock_timestamp() ELSE throttled_at END
    WHERE kind = 'ip' AND key_hash = sha256(convert_to(portal_ip_key(p_ip), 'UTF8'));
END
$$;

-- A new password (a reset, a change, an operator) ends the account's lock: "reset
-- your password" is the way in that the lock page offers.
CREATE FUNCTION portal_sign_in_throttle_forget() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE sign_in_throttle SET failures = 0, throttled_at = NULL
    WHERE kind = 'account' AND key_hash = sha256(convert_to(NEW.email, 'UTF8'));
    RETURN NULL;
END
$$;
CREATE TRIGGER users_password_ends_lock AFTER UPDATE OF password_hash ON users
    FOR EACH ROW WHEN (NEW.password_hash IS DISTINCT FROM OLD.password_hash)
    EXECUTE FUNCTION portal_sign_in_throttle_forget();

-- Rate limits for endpoints that send email -----------------------------------------
-- A sliding window per (bucket, key): `spent_at` holds the times of the spends
-- still inside the window (at most the budget's count of them), so the limit is
-- exact, never "twice the budget across a window boundary".
CREATE TABLE rate_limits (
    bucket      text NOT NULL CHECK (bucket ~ '^[a-z_]{1,40}$'),
    key_hash    bytea NOT NULL CHECK (length(key_hash) = 32),
    spent_at    timestamptz[] NOT NULL,
    -- When the newest spend leaves the window: the row means nothing after that.
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (bucket, key_hash)
);
CREATE INDEX rate_limits_expires_idx ON rate_limits (expires_at);

-- The times in `p_stamps` after `p_since`, oldest first.
CREATE FUNCTION portal_stamps_since(p_stamps timestamptz[], p_since timestamptz) RETURNS timestamptz[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(s ORDER BY s), '{}') FROM unnest(p_stamps) s WHERE s > p_since
$$;

-- Spends one unit of `p_bucket`'s budget for `p_key` (`p_budget` per
-- `p_window_seconds`). Answers 0 when spent, otherwise the milliseconds until a
-- unit comes free; a refused call spends nothing. One upsert, so concurrent
-- callers are serialized on the row and never overspend. Times are read with
-- clock_timestamp() once the row is locked (not now(), the transaction's start,
-- which for a caller that waited for the lock is older than its predecessor's spend).
CREATE FUNCTION portal_rate_limit_spend(p_bucket text, p_key text, p_budget integer, p_window_seconds integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_key bytea := sha256(convert_to(p_key, 'UTF8'));
    v_window interval := make_interval(secs => p_window_seconds);
    v_live timestamptz[];
    v_now timestamptz;
BEGIN
    IF p_budget NOT BETWEEN 1 AND 10000 OR p_window_seconds NOT BETWEEN 1 AND 604800 THEN
        RAISE EXCEPTION 'invalid budget % per % s', p_budget, p_window_seconds USING ERRCODE = '22023';
    END IF;
    INSERT INTO rate_limits AS r (bucket, key_hash, spent_at, expires_at)
    VALUES (p_bucket, v_key, ARRAY[clock_timestamp()], clock_timestamp() + v_window)
    ON CONFLICT (bucket, key_hash) DO UPDATE
    SET spent_at = portal_stamps_since(r.spent_at, clock_timestamp() - v_window) || clock_timestamp(),
        expires_at = clock_timestamp() + v_window
    WHERE cardinality(portal_stamps_since(r.spent_at, clock_timestamp() - v_window)) < p_budget;
    IF FOUND THEN
        RETURN 0;
    END IF;
    -- Refused: the upsert still locked the row, so this reads what it saw.
    v_now := clock_timestamp();
    SELECT portal_stamps_since(r.spent_at, v_now - v_window) INTO v_live
    FROM rate_limits r WHERE r.bucket = p_bucket AND r.key_hash = v_key;
    RETURN least(p_window_seconds::bigint * 1000, greatest(1, coalesce(
        ceil(extract(epoch FROM v_live[cardinality(v_live) - p_budget + 1] + v_window - v_now) * 1000)::bigint,
        p_window_seconds::bigint * 1000)));
END
$$;

-- Sweeping ----------------------------------------------------------------------------

-- Forgets sign-in failures after a quiet day and rate-limit windows that have
-- passed. Returns how many rows went.
CREATE FUNCTION portal_throttle_sweep()
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH failures AS (
        DELETE FROM sign_in_throttle WHERE last_failure_at < now() - interval '24 hours' RETURNING 1
    ), limits AS (
        DELETE FROM rate_limits WHERE expires_at <= now() RETURNING 1
    )
    SELECT ((SELECT count(*) FROM failures) + (SELECT count(*) FROM limits))::integer
$$;

-- Row-level security and privileges -----------------------------------------------------
-- Only the functions above (owned by portal_auth) touch these tables.

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sign_in_throttle', 'rate_limits'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY auth ON %I TO portal_auth USING (true) WITH CHECK (true)', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO portal_auth', t);
    END LOOP;
END
$$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'portal_sign_in_hold(text, bytea)',
        'portal_sign_in_begin(text, inet)',
        'portal_sign_in_release(text, inet, boolean)',
        'portal_sign_in_throttle_forget()',
        'portal_rate_limit_spend(text, text, integer, integer)',
        'portal_throttle_sweep()']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('ALTER FUNCTION %s OWNER TO portal_auth', f);
    END LOOP;
END
$$;
-- portal_sign_in_failed keeps its V1 owner (portal_auth) and grant (portal_app).
GRANT EXECUTE ON FUNCTION portal_sign_in_begin(text, inet) TO portal_app;
GRANT EXECUTE ON FUNCTION portal_sign_in_release(text, inet, boolean) TO portal_app;
GRANT EXECUTE ON FUNCTION portal_rate_limit_spend(text, text, integer, integer) TO portal_app, portal_staff;
GRANT EXECUTE ON FUNCTION portal_throttle_sweep() TO portal_app;
