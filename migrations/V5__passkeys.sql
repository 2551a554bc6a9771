-- Passkeys: WebAuthn credentials, the ceremonies that create and use them, the
-- "confirm it's you" window of a session, and the choices that make passkeys
-- the only way in (per user, and for all staff).
--
-- Ceremony state lives here rather than in a process, so a ceremony begun on
-- one process can finish on another, and it is taken by DELETE ... RETURNING,
-- so it can be used once.

-- A user who has a passkey may switch password sign-in off. Setting a new
-- password (a reset, or a change in Settings) switches it back on: the reset
-- email is how someone who lost every passkey gets back in.
ALTER TABLE users ADD COLUMN password_sign_in boolean NOT NULL DEFAULT true;

-- When the user last proved who they are in this session (sign-in, or the
-- confirmation page). Sensitive changes need it to be recent.
-- Sessions open when this migration runs have proven nothing recently.
ALTER TABLE sessions ADD COLUMN verified_at timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE sessions ALTER COLUMN verified_at SET DEFAULT now();

-- Settings of the whole portal that staff admins change. One row.
CREATE TABLE portal_settings (
    id                       boolean PRIMARY KEY DEFAULT true CHECK (id),
    staff_passkeys_required  boolean NOT NULL DEFAULT false,
    updated_at               timestamptz NOT NULL DEFAULT now()
);
INSERT INTO portal_settings DEFAULT VALUES;

CREATE TABLE passkeys (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    customer_id    uuid REFERENCES customers (id) ON DELETE CASCADE,
    credential_id  bytea NOT NULL UNIQUE CHECK (length(credential_id) BETWEEN 16 AND 1023),
    -- webauthn-rs's Passkey: public key, signature counter, backup flags.
    credential     jsonb NOT NULL,
    name           text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz,
    FOREIGN KEY (user_id, customer_id) REFERENCES users (id, customer_id)
);
CREATE INDEX passkeys_user_idx ON passkeys (user_id);

CREATE TABLE webauthn_ceremonies (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    purpose     text NOT NULL CHECK (purpose IN ('register', 'sign_in', 'confirm')),
    -- Registration and confirmation belong to the session that began them;
    -- sign-in ceremonies belong to whoever holds the token.
    session_id  uuid REFERENCES sessions (id) ON DELETE CASCADE,
    state       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CHECK ((purpose = 'sign_in') = (session_id IS NULL))
);
CREATE INDEX webauthn_ceremonies_expires_idx ON webauthn_ceremonies (expires_at);

ALTER TABLE passkeys ENABLE ROW LEVEL SECURITY;
ALTER TABLE passkeys FORCE ROW LEVEL SECURITY;
ALTER TABLE webauthn_ceremonies ENABLE ROW LEVEL SECURITY;
ALTER TABLE webauthn_ceremonies FORCE ROW LEVEL SECURITY;
ALTER TABLE portal_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE portal_settings FORCE ROW LEVEL SECURITY;

-- A user sees their own passkeys and nobody else's, staff included. Every
-- change goes through the functions below, which log it and tell the owner.
CREATE POLICY own_passkeys ON passkeys FOR SELECT TO portal_app, portal_staff USING (user_id = portal_user());
GRANT SELECT (id, user_id, customer_id, name, created_at, last_used_at) ON passkeys TO portal_app, portal_staff;
CREATE POLICY auth ON passkeys TO portal_auth USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON passkeys TO portal_auth;

CREATE POLICY auth ON webauthn_ceremonies TO portal_auth USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, DELETE ON webauthn_ceremonies TO portal_auth;

CREATE POLICY everyone_reads ON portal_settings FOR SELECT TO portal_staff, portal_auth USING (true);
CREATE POLICY auth ON portal_settings FOR UPDATE TO portal_auth USING (true) WITH CHECK (true);
GRANT SELECT ON portal_settings TO portal_staff;
GRANT SELECT, UPDATE ON portal_settings TO portal_auth;
-- The settings page shows whether password sign-in is on.
GRANT SELECT (password_sign_in) ON users TO portal_app;

-- Whether `p_user` may sign in with a password at all: their own choice, and
-- for staff who have a passkey, the staff requirement.
CREATE FUNCTION portal_password_allowed(p_user users)
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT p_user.password_sign_in
       AND NOT (p_user.role IN ('staff', 'staff_admin')
                AND (SELECT staff_passkeys_required FROM portal_settings)
                AND EXISTS (SELECT 1 FROM passkeys k WHERE k.user_id = p_user.id))
$$;

CREATE OR REPLACE FUNCTION portal_login_lookup(p_email text)
RETURNS TABLE (user_id uuid, customer_id uuid, role text, password_hash text, usable boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT u.id, u.customer_id, u.role, u.password_hash,
           u.disabled_at IS NULL AND u.email_verified_at IS NOT NULL AND coalesce(c.active, true)
           AND portal_password_allowed(u)
    FROM users u
    LEFT JOIN customers c ON c.id = u.customer_id
    WHERE u.email = lower(p_email)
$$;

-- Sessions say how they began; the activity entry is the same for every method.
DROP FUNCTION portal_session_create(uuid, bytea, text, boolean, integer, integer, inet, text);
CREATE FUNCTION portal_session_create(
    p_user_id uuid, p_token_hash bytea, p_csrf_token text, p_remember boolean,
    p_idle_seconds integer, p_absolute_seconds integer, p_ip inet, p_user_agent text,
    p_method text DEFAULT 'password')
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_session uuid;
    v_user users%ROWTYPE;
BEGIN
    SELECT * INTO v_user FROM users WHERE id = p_user_id AND disabled_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user % cannot sign in', p_user_id USING ERRCODE = 'P0002';
    END IF;
    INSERT INTO sessions (token_hash, user_id, customer_id, csrf_token, remember, idle_timeout,
                          expires_at, ip, user_agent)
    VALUES (p_token_hash, v_user.id, v_user.customer_id, p_csrf_token, p_remember,
            make_interval(secs => p_idle_seconds), now() + make_interval(secs => p_absolute_seconds),
            p_ip, left(p_user_agent, 400))
    RETURNING id INTO v_session;
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip,
                              details)
    VALUES (v_user.customer_id, v_user.id, v_user.email, 'auth.sign_in', 'session', v_session, p_ip,
            jsonb_build_object('remember', p_remember, 'method', p_method));
    RETURN v_session;
END
$$;

-- The session resolver also says whether a staff member must add a passkey
-- before anything else (the staff requirement is on and they have none).
DROP FUNCTION portal_session_resolve(bytea);
CREATE FUNCTION portal_session_resolve(p_token_hash bytea)
RETURNS TABLE (session_id uuid, user_id uuid, customer_id uuid, role text, email text, name text,
               customer_name text, csrf_token text, verified_at timestamptz, needs_passkey boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE sessions s SET last_seen_at = now()
    WHERE s.token_hash = p_token_hash
      AND s.last_seen_at < now() - interval '1 minute'
      AND s.expires_at > now()
      AND s.last_seen_at > now() - s.idle_timeout;
    RETURN QUERY
    SELECT s.id, u.id, u.customer_id, u.role, u.email, u.name, c.name, s.csrf_token, s.verified_at,
           u.role IN ('staff', 'staff_admin')
               AND (SELECT staff_passkeys_required FROM portal_settings)
               AND NOT EXISTS (SELECT 1 FROM passkeys k WHERE k.user_id = u.id)
    FROM sessions s
    JOIN users u ON u.id = s.user_id
    LEFT JOIN customers c ON c.id = u.customer_id
    WHERE s.token_hash = p_token_hash
      AND s.expires_at > now()
      AND s.last_seen_at > now() - s.idle_timeout
      AND u.disabled_at IS NULL
      AND coalesce(c.active, true);
END
$$;

-- Setting a password switches password sign-in back on (see above).
CREATE OR REPLACE FUNCTION portal_password_set(p_user uuid, p_password_hash text, p_keep_session uuid, p_action text,
                                               p_ip inet)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_user users%ROWTYPE;
BEGIN
    UPDATE users SET password_hash = p_password_hash, password_changed_at = clock_timestamp(),
                     password_sign_in = true
    WHERE id = p_user RETURNING * INTO v_user;
    DELETE FROM sessions WHERE user_id = p_user AND id IS DISTINCT FROM p_keep_session;
    DELETE FROM account_tokens WHERE user_id = p_user AND purpose = 'password_reset' AND used_at IS NULL;
    INSERT INTO outbox (to_address, to_name, template, params)
    VALUES (v_user.email, v_user.name, 'password_changed',
            jsonb_build_object('name', v_user.name, 'at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                               'ip', host(p_ip), 'link', '/password/forgot'));
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip)
    VALUES (v_user.customer_id, v_user.id, v_user.email, p_action, 'user', v_user.id, p_ip);
END
$$;

-- Ceremonies ----------------------------------------------------------------------
-- Registration and confirmation run in the user's scope: the session named
-- must be one of portal_user()'s. Sign-in ceremonies are anonymous.
CREATE FUNCTION portal_ceremony_put(p_token text, p_purpose text, p_session uuid, p_state jsonb, p_ttl_seconds integer)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF p_session IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM sessions WHERE id = p_session AND user_id = portal_user()) THEN
        RAISE EXCEPTION 'session % is not the current user''s', p_session USING ERRCODE = '42501';
    END IF;
    INSERT INTO webauthn_ceremonies (token_hash, purpose, session_id, state, expires_at)
    VALUES (sha256(convert_to(p_token, 'UTF8')), p_purpose, p_session, p_state,
            now() + make_interval(secs => p_ttl_seconds));
END
$$;

-- The ceremony's state, once: a second take, an expired ceremony, another
-- purpose or another session all find nothing.
CREATE FUNCTION portal_ceremony_take(p_token text, p_purpose text, p_session uuid)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DELETE FROM webauthn_ceremonies
    WHERE token_hash = sha256(convert_to(p_token, 'UTF8'))
      AND purpose = p_purpose
      AND session_id IS NOT DISTINCT FROM p_session
      AND (p_session IS NULL OR EXISTS (SELECT 1 FROM sessions WHERE id = p_session AND user_id = portal_user()))
    RETURNING CASE WHEN expires_at > now() THEN state END
$$;

-- Passkeys ------------------------------------------------------------------------
-- The credentials a sign-in may use: one by its id, with whether its owner may sign in.
CREATE FUNCTION portal_passkey_lookup(p_credential_id bytea)
RETURNS TABLE (passkey_id uuid, user_id uuid, role text, credential jsonb, usable boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT k.id, u.id, u.role, k.credential,
           u.disabled_at IS NULL AND u.email_verified_at IS NOT NULL AND coalesce(c.active, true)
    FROM passkeys k
    JOIN users u ON u.id = k.user_id
    LEFT JOIN customers c ON c.id = u.customer_id
    WHERE k.credential_id = p_credential_id
$$;

-- The current user's credentials, for a confirmation ceremony.
CREATE FUNCTION portal_passkeys_mine()
RETURNS TABLE (id uuid, credential jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT k.id, k.credential FROM passkeys k WHERE k.user_id = portal_user() ORDER BY k.created_at
$$;

-- Records a successful use: the updated counter and backup flags, and when.
-- In a user's scope only their own keys; the stored counter never goes back
-- (two sign-ins at once must not lower it).
CREATE FUNCTION portal_passkey_used(p_passkey uuid, p_credential jsonb)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE passkeys
    SET credential = CASE
            WHEN p_credential IS NOT NULL
             AND coalesce((p_credential #>> '{cred,counter}')::bigint, 0)
                 >= coalesce((credential #>> '{cred,counter}')::bigint, 0)
            THEN p_credential ELSE credential END,
        last_used_at = now()
    WHERE id = p_passkey AND (portal_user() IS NULL OR user_id = portal_user())
$$;

-- A signature counter that went backwards: the credential may have been copied.
CREATE FUNCTION portal_passkey_clone_suspected(p_passkey uuid, p_ip inet)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details)
    SELECT u.customer_id, NULL, u.email, 'auth.passkey_clone_suspected', 'passkey', k.id, p_ip,
           jsonb_build_object('name', k.name)
    FROM passkeys k JOIN users u ON u.id = k.user_id
    WHERE k.id = p_passkey AND (portal_user() IS NULL OR k.user_id = portal_user())
$$;

-- Tells the owner that the keys to their account changed.
CREATE FUNCTION portal_passkey_notice(p_user users, p_change text, p_name text, p_ip inet)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO outbox (to_address, to_name, template, params)
    VALUES (p_user.email, p_user.name, 'passkey_changed',
            jsonb_build_object('name', p_user.name, 'change', p_change, 'passkey_name', p_name,
                               'at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                               'ip', host(p_ip)))
$$;

-- Adds a passkey to the current user: a new way into the account, so it
-- needs a recent confirmation (a stolen session must not plant its own key).
-- Returns 'added', 'unconfirmed', or 'duplicate' when the credential is
-- already registered (to anyone: one authenticator key belongs to one account).
CREATE FUNCTION portal_passkey_add(p_session uuid, p_window_seconds integer, p_credential_id bytea, p_credential jsonb,
                                   p_name text, p_ip inet)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_user users%ROWTYPE;
    v_id uuid;
BEGIN
    SELECT * INTO v_user FROM users WHERE id = portal_user() AND disabled_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no current user' USING ERRCODE = '42501';
    END IF;
    IF NOT portal_session_recently_verified(p_session, p_window_seconds) THEN
        RETURN 'unconfirmed';
    END IF;
    INSERT INTO passkeys (user_id, customer_id, credential_id, credential, name)
    VALUES (v_user.id, v_user.customer_id, p_credential_id, p_credential, btrim(p_name))
    ON CONFLICT (credential_id) DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        RETURN 'duplicate';
    END IF;
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details)
    VALUES (v_user.customer_id, v_user.id, v_user.email, 'auth.passkey_added', 'passkey', v_id, p_ip,
            jsonb_build_object('name', btrim(p_name)));
    PERFORM portal_passkey_notice(v_user, 'added', btrim(p_name), p_ip);
    RETURN 'added';
END
$$;

CREATE FUNCTION portal_passkey_rename(p_passkey uuid, p_name text, p_ip inet)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_email text;
BEGIN
    UPDATE passkeys SET name = btrim(p_name) WHERE id = p_passkey AND user_id = portal_user();
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT email INTO v_email FROM users WHERE id = portal_user();
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details)
    VALUES (portal_customer(), portal_user(), v_email, 'auth.passkey_renamed', 'passkey', p_passkey, p_ip,
            jsonb_build_object('name', btrim(p_name)));
    RETURN true;
END
$$;

-- Whether the session proved its user within the last `p_window_seconds`.
CREATE FUNCTION portal_session_recently_verified(p_session uuid, p_window_seconds integer)
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM sessions
                   WHERE id = p_session AND user_id = portal_user()
                     AND verified_at > now() - make_interval(secs => p_window_seconds))
$$;

-- Removes one of the current user's passkeys. The database itself insists on a
-- recent confirmation, and refuses to remove the last passkey of an account
-- that has no other way in. Returns 'removed', 'not_found', 'unconfirmed' or 'last'.
CREATE FUNCTION portal_passkey_remove(p_passkey uuid, p_session uuid, p_window_seconds integer, p_ip inet)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_user users%ROWTYPE;
    v_key passkeys%ROWTYPE;
BEGIN
    SELECT * INTO v_user FROM users WHERE id = portal_user() FOR UPDATE;
    SELECT * INTO v_key FROM passkeys WHERE id = p_passkey AND user_id = v_user.id;
    IF NOT FOUND THEN
        RETURN 'not_found';
    END IF;
    IF NOT portal_session_recently_verified(p_session, p_window_seconds) THEN
        RETURN 'unconfirmed';
    END IF;
    IF NOT v_user.password_sign_in
       AND NOT EXISTS (SELECT 1 FROM passkeys WHERE user_id = v_user.id AND id <> p_passkey) THEN
        RETURN 'last';
    END IF;
    DELETE FROM passkeys WHERE id = p_passkey;
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details)
    VALUES (v_user.customer_id, v_user.id, v_user.email, 'auth.passkey_removed', 'passkey', p_passkey, p_ip,
            jsonb_build_object('name', v_key.name));
    PERFORM portal_passkey_notice(v_user, 'removed', v_key.name, p_ip);
    RETURN 'removed';
END
$$;

-- Switches password sign-in on or off for the current user. Off needs a
-- passkey and a recent confirmation. Returns 'done', 'unconfirmed' or 'no_passkey'.
CREATE FUNCTION portal_password_sign_in_set(p_enabled boolean, p_session uuid, p_window_seconds integer, p_ip inet)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_user users%ROWTYPE;
BEGIN
    SELECT * INTO v_user FROM users WHERE id = portal_user() FOR UPDATE;
    IF NOT portal_session_recently_verified(p_session, p_window_seconds) THEN
        RETURN 'unconfirmed';
    END IF;
    IF NOT p_enabled AND NOT EXISTS (SELECT 1 FROM passkeys WHERE user_id = v_user.id) THEN
        RETURN 'no_passkey';
    END IF;
    IF NOT p_enabled AND v_user.password_sign_in IS DISTINCT FROM p_enabled THEN
        -- Nobody signs in with the password any more: reset links in flight die with it, and
        -- so does every other session, which may have been opened with a leaked password.
        DELETE FROM account_tokens WHERE user_id = v_user.id AND purpose = 'password_reset' AND used_at IS NULL;
        DELETE FROM sessions WHERE user_id = v_user.id AND id <> p_session;
    END IF;
    UPDATE users SET password_sign_in = p_enabled WHERE id = v_user.id;
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip)
    VALUES (v_user.customer_id, v_user.id, v_user.email,
            CASE WHEN p_enabled THEN 'auth.password_sign_in_on' ELSE 'auth.password_sign_in_off' END,
            'user', v_user.id, p_ip);
    RETURN 'done';
END
$$;

-- Marks the session as having just proven its user (password or passkey).
CREATE FUNCTION portal_session_verify(p_session uuid, p_method text, p_ip inet)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_email text;
BEGIN
    UPDATE sessions SET verified_at = now() WHERE id = p_session AND user_id = portal_user();
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT email INTO v_email FROM users WHERE id = portal_user();
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details)
    VALUES (portal_customer(), portal_user(), v_email, 'auth.confirmed', 'session', p_session, p_ip,
            jsonb_build_object('method', p_method));
    RETURN true;
END
$$;

-- The staff requirement, changed by staff admins only.
CREATE FUNCTION portal_staff_passkeys_require(p_required boolean, p_ip inet)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_actor users%ROWTYPE;
BEGIN
    SELECT * INTO v_actor FROM users WHERE id = portal_user() AND role = 'staff_admin' AND disabled_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE portal_settings SET staff_passkeys_required = p_required, updated_at = now();
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, ip)
    VALUES (NULL, v_actor.id, v_actor.email,
            CASE WHEN p_required THEN 'staff.passkeys_required' ELSE 'staff.passkeys_optional' END, 'settings', p_ip);
    RETURN true;
END
$$;

-- How many passkeys each staff member has (the staff security page); never the keys themselves.
CREATE FUNCTION portal_staff_passkey_counts()
RETURNS TABLE (user_id uuid, passkeys bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT k.user_id, count(*) FROM passkeys k JOIN users u ON u.id = k.user_id
    WHERE u.customer_id IS NULL
      AND EXISTS (SELECT 1 FROM users me WHERE me.id = portal_user() AND me.customer_id IS NULL)
    GROUP BY k.user_id
$$;

CREATE FUNCTION portal_ceremonies_sweep()
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH gone AS (DELETE FROM webauthn_ceremonies WHERE expires_at <= now() RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'portal_password_allowed(users)',
        'portal_session_create(uuid, bytea, text, boolean, integer, integer, inet, text, text)',
        'portal_session_resolve(bytea)',
        'portal_ceremony_put(text, text, uuid, jsonb, integer)',
        'portal_ceremony_take(text, text, uuid)',
        'portal_passkey_lookup(bytea)',
        'portal_passkeys_mine()',
        'portal_passkey_used(uuid, jsonb)',
        'portal_passkey_clone_suspected(uuid, inet)',
        'portal_passkey_notice(users, text, text, inet)',
        'portal_passkey_add(uuid, integer, bytea, jsonb, text, inet)',
        'portal_passkey_rename(uuid, text, inet)',
        'portal_session_recently_verified(uuid, integer)',
        'portal_passkey_remove(uuid, uuid, integer, inet)',
        'portal_password_sign_in_set(boolean, uuid, integer, inet)',
        'portal_session_verify(uuid, text, inet)',
        'portal_staff_passkeys_require(boolean, inet)',
        'portal_staff_passkey_counts()',
        'portal_ceremonies_sweep()']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('ALTER FUNCTION %s OWNER TO portal_auth', f);
    END LOOP;
    -- Sign-in runs on the customer pool before anyone is known: portal_app only.
    FOREACH f IN ARRAY ARRAY[
        'portal_session_create(uuid, bytea, text, boolean, integer, integer, inet, text, text)',
        'portal_session_resolve(bytea)',
        'portal_passkey_lookup(bytea)']
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO portal_app', f);
    END LOOP;
    -- Entry points of both sides; the helpers (password_allowed, passkey_notice) stay internal.
    FOREACH f IN ARRAY ARRAY[
        'portal_ceremony_put(text, text, uuid, jsonb, integer)',
        'portal_ceremony_take(text, text, uuid)',
        'portal_passkeys_mine()',
        'portal_passkey_used(uuid, jsonb)',
        'portal_passkey_clone_suspected(uuid, inet)',
        'portal_passkey_add(uuid, integer, bytea, jsonb, text, inet)',
        'portal_passkey_rename(uuid, text, inet)',
        'portal_session_recently_verified(uuid, integer)',
        'portal_passkey_remove(uuid, uuid, integer, inet)',
        'portal_password_sign_in_set(boolean, uuid, integer, inet)',
        'portal_session_verify(uuid, text, inet)',
        'portal_staff_passkeys_require(boolean, inet)',
        'portal_staff_passkey_counts()',
        'portal_ceremonies_sweep()']
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO portal_app, portal_staff', f);
    END LOOP;
END
$$;
