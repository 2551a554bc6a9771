-- Account lifecycle: invitations, self-registration, password resets, email
-- changes, and the email outbox they write to.
--
-- Every flow that starts before sign-in (or crosses customers, like "is this
-- address taken?") runs in a SECURITY DEFINER function owned by portal_auth,
-- in the caller's transaction, so the change, its activity-log entry and the
-- email it causes commit or vanish together.

-- Users -------------------------------------------------------------------------

-- NULL while an invited user has not accepted yet: they cannot sign in, reset a
-- password or be emailed anything but their invitation. Rows written without
-- it (the command line, the demo, the business's own SQL) count as verified.
ALTER TABLE users ADD COLUMN email_verified_at timestamptz DEFAULT now();
UPDATE users SET email_verified_at = created_at;
-- Reset links issued before this die with the password they were meant to replace.
ALTER TABLE users ADD COLUMN password_changed_at timestamptz;
GRANT SELECT (email_verified_at) ON users TO portal_app;

-- Email domains whose owners may register themselves as members of a customer.
CREATE TABLE customer_domains (
    domain       text PRIMARY KEY
                 CHECK (domain = lower(domain) AND length(domain) <= 253
                        AND domain ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$'),
    customer_id  uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customer_domains_customer_idx ON customer_domains (customer_id);

-- Single-use links sent by email. Only their SHA-256 is stored.
CREATE TABLE account_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    purpose      text NOT NULL CHECK (purpose IN ('invitation', 'registration', 'password_reset', 'email_change')),
    -- The account it acts on; NULL for a registration (the account does not exist yet).
    user_id      uuid REFERENCES users (id) ON DELETE CASCADE,
    customer_id  uuid REFERENCES customers (id) ON DELETE CASCADE,
    -- Where the link was sent: the invitee, the registrant, the account, or the new address.
    email        text NOT NULL CHECK (length(email) <= 254),
    name         text CHECK (length(name) <= 200),
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    CHECK ((purpose = 'registration') = (user_id IS NULL))
);
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expires_idx ON account_tokens (expires_at);

-- Email outbox ------------------------------------------------------------------
-- Written in the transaction of the change that causes the email; the mail
-- worker renders `template` with `params` and sends it, with retries. A param
-- named `link` is a path on this portal: the worker prefixes the configured
-- public URL (never a request's Host) and clears it once sent, so no working
-- token stays in the table.
CREATE TABLE outbox (
    id               bigserial PRIMARY KEY,
    to_address       text NOT NULL
                     CHECK (length(to_address) <= 254 AND to_address ~ '^[^@[:space:][:cntrl:]<>,;"]+@[^@[:space:][:cntrl:]<>,;"]+$'),
    to_name          text NOT NULL DEFAULT ''
                     CHECK (length(to_name) <= 200 AND to_name !~ '[[:cntrl:]]'),
    template         text NOT NULL CHECK (template ~ '^[a-z_]{1,50}$'),
    params           jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    sent_at          timestamptz,
    -- Given up after too many attempts; kept for the operator to see.
    failed_at        timestamptz
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at, id) WHERE sent_at IS NULL AND failed_at IS NULL;

-- Any process's mail worker wakes as soon as a queued email commits.
CREATE FUNCTION portal_outbox_wake() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('portal_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_wake AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION portal_outbox_wake();

-- Row-level security ------------------------------------------------------------

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customer_domains', 'account_tokens', 'outbox'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY staff ON %I TO portal_staff USING (true) WITH CHECK (true)', t);
        EXECUTE format('CREATE POLICY auth ON %I TO portal_auth USING (true) WITH CHECK (true)', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO portal_staff, portal_auth', t);
    END LOOP;
END
$$;
GRANT USAGE ON SEQUENCE outbox_id_seq TO portal_staff, portal_auth;

-- A company's admins see which domains let colleagues join.
CREATE POLICY tenant ON customer_domains FOR SELECT TO portal_app USING (customer_id = portal_customer());
GRANT SELECT ON customer_domains TO portal_app;

-- The account functions below change users and sessions.
CREATE POLICY auth_write ON users FOR UPDATE TO portal_auth USING (true) WITH CHECK (true);
CREATE POLICY auth_insert ON users FOR INSERT TO portal_auth WITH CHECK (true);
GRANT INSERT, UPDATE ON users TO portal_auth;

-- A user may end their own sessions (Settings → Security).
CREATE POLICY own_sessions_end ON sessions FOR DELETE TO portal_app
    USING (customer_id = portal_customer() AND user_id = portal_user());
GRANT DELETE ON sessions TO portal_app;

-- Account functions ----------------------------------------------------------------
-- Owned by portal_auth (set at the end). They take the link's token and store
-- only its SHA-256; the working link exists in the database only inside the
-- queued email's params, which the mail worker clears once it is sent.

-- Whether `p_actor` may manage the people of `p_customer`: staff for any
-- customer, a customer admin only for their own and only inside that
-- customer's scope. The one place this rule lives.
CREATE FUNCTION portal_may_manage(p_actor users, p_customer uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT p_actor.id IS NOT NULL AND p_actor.disabled_at IS NULL
       AND (p_actor.role IN ('staff', 'staff_admin')
            OR (p_actor.role = 'customer_admin' AND p_actor.customer_id = p_customer
                AND portal_customer() = p_customer))
$$;

-- Invites `p_email` to customer `p_customer` as `p_role`. The caller must be
-- staff, or an admin of that customer acting in its own scope. Answers:
--   'invited'  a new invitation was sent (or the pending one renewed)
--   'member'   the address already belongs to this customer's team
--   'noticed'  the address has an account elsewhere: its owner is told, the
--              inviter sees the same as 'invited' (no cross-customer leak)
CREATE FUNCTION portal_invite(p_customer uuid, p_email text, p_name text, p_role text, p_token text,
                              p_ttl_seconds integer, p_ip inet)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_actor users%ROWTYPE;
    v_customer customers%ROWTYPE;
    v_existing users%ROWTYPE;
    v_user uuid;
    v_email text := lower(btrim(p_email));
BEGIN
    SELECT * INTO v_actor FROM users WHERE id = portal_user() AND disabled_at IS NULL;
    IF NOT portal_may_manage(v_actor, p_customer) THEN
        RAISE EXCEPTION 'not allowed to invite to customer %', p_customer USING ERRCODE = '42501';
    END IF;
    IF p_role NOT IN ('customer_admin', 'customer_member') THEN
        RAISE EXCEPTION 'invalid role %', p_role USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_customer FROM customers WHERE id = p_customer AND active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'customer % is not active', p_customer USING ERRCODE = 'P0002';
    END IF;

    SELECT * INTO v_existing FROM users WHERE email = v_email;
    IF FOUND AND (v_existing.customer_id IS DISTINCT FROM p_customer OR v_existing.email_verified_at IS NOT NULL) THEN
        IF v_existing.customer_id = p_customer THEN
            RETURN 'member';
        END IF;
        INSERT INTO outbox (to_address, to_name, template, params)
        VALUES (v_existing.email, v_existing.name, 'account_exists', jsonb_build_object('link', '/login'));
        INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, ip, details)
        VALUES (p_customer, v_actor.id, v_actor.email, 'user.invited', 'user', p_ip,
                jsonb_build_object('email', v_email));
        RETURN 'noticed';
    END IF;

    IF FOUND THEN
        -- A pending invitation to this customer: renew it (new link, new role and name).
        UPDATE users SET name = btrim(p_name), role = p_role WHERE id = v_existing.id;
        v_user := v_existing.id;
        DELETE FROM account_tokens WHERE user_id = v_user AND purpose = 'invitation';
    ELSE
        INSERT INTO users (customer_id, email, name, role, email_verified_at)
        VALUES (p_customer, v_email, btrim(p_name), p_role, NULL)
        RETURNING id INTO v_user;
    END IF;
    INSERT INTO account_tokens (token_hash, purpose, user_id, customer_id, email, created_by, expires_at)
    VALUES (sha256(convert_to(p_token, 'UTF8')), 'invitation', v_user, p_customer, v_email, v_actor.id,
            now() + make_interval(secs => p_ttl_seconds));
    INSERT INTO outbox (to_address, to_name, template, params)
    VALUES (v_email, btrim(p_name), 'invitation',
            jsonb_build_object('inviter_name', v_actor.name, 'customer_name', v_customer.name,
                               'link', '/invitation/' || p_token,
                               'expires_hours', p_ttl_seconds / 3600));
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details)
    VALUES (p_customer, v_actor.id, v_actor.email, 'user.invited', 'user', v_user, p_ip,
            jsonb_build_object('email', v_email, 'role', p_role));
    RETURN 'invited';
END
$$;

-- What a link is for, while it still works: the invitation or registration page
-- shows who it is for before the user chooses a password.
CREATE FUNCTION portal_token_peek(p_purpose text, p_token text)
RETURNS TABLE (email text, name text, customer_name text, expires_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT t.email, coalesce(u.name, t.name), c.name, t.expires_at
    FROM account_tokens t
    LEFT JOIN users u ON u.id = t.user_id
    LEFT JOIN customers c ON c.id = coalesce(t.customer_id, u.customer_id)
    WHERE t.token_hash = sha256(convert_to(p_token, 'UTF8'))
      AND t.purpose = p_purpose
      AND t.used_at IS NULL
      AND t.expires_at > now()
      AND (u.id IS NULL OR u.disabled_at IS NULL)
      AND coalesce(c.active, true)
      AND (t.purpose <> 'password_reset' OR t.created_at > coalesce(u.password_changed_at, '-infinity'))
$$;

-- Spends a link: marks it used and returns it, or nothing if it is unknown,
-- used, expired, or for an account that can no longer use it.
CREATE FUNCTION portal_token_take(p_purpose text, p_token text)
RETURNS account_tokens
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_token account_tokens%ROWTYPE;
BEGIN
    UPDATE account_tokens t SET used_at = now()
    WHERE t.token_hash = sha256(convert_to(p_token, 'UTF8'))
      AND t.purpose = p_purpose
      AND t.used_at IS NULL
      AND t.expires_at > now()
      AND NOT EXISTS (
          SELECT 1 FROM users u LEFT JOIN customers c ON c.id = u.customer_id
          WHERE u.id = t.user_id
            AND (u.disabled_at IS NOT NULL OR NOT coalesce(c.active, true)
                 OR (t.purpose = 'password_reset' AND t.created_at <= coalesce(u.password_changed_at, '-infinity'))))
      AND NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = t.customer_id AND NOT c.active)
    RETURNING * INTO v_token;
    RETURN v_token;
END
$$;

-- Accepts an invitation: the invitee chooses their name and password. Returns
-- the user, or NULL when the link does not work (any reason).
CREATE FUNCTION portal_invitation_accept(p_token text, p_name text, p_password_hash text, p_ip inet)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_token account_tokens%ROWTYPE;
    v_user users%ROWTYPE;
BEGIN
    v_token := portal_token_take('invitation', p_token);
    IF v_token.id IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE users SET name = btrim(p_name), password_hash = p_password_hash, email_verified_at = now(),
                     password_changed_at = now()
    WHERE id = v_token.user_id AND email = v_token.email
    RETURNING * INTO v_user;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip)
    VALUES (v_user.customer_id, v_user.id, v_user.email, 'user.invitation_accepted', 'user', v_user.id, p_ip);
    RETURN v_user.id;
END
$$;

-- Self-registration. Whatever the address, the caller answers the same; what
-- the address receives differs:
--   it has an account            -> 'account_exists' (sign in or reset)
--   its domain is a customer's   -> 'registration' with a link to finish
--   anything else                -> 'registration_unavailable'
CREATE FUNCTION portal_register_request(p_email text, p_name text, p_token text, p_ttl_seconds integer, p_ip inet)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_email text := lower(btrim(p_email));
    v_existing users%ROWTYPE;
    v_customer customers%ROWTYPE;
BEGIN
    SELECT * INTO v_existing FROM users WHERE email = v_email;
    IF FOUND THEN
        INSERT INTO outbox (to_address, to_name, template, params)
        VALUES (v_existing.email, v_existing.name, 'account_exists', jsonb_build_object('link', '/login'));
        RETURN;
    END IF;
    SELECT c.* INTO v_customer FROM customer_domains d JOIN customers c ON c.id = d.customer_id
    WHERE d.domain = split_part(v_email, '@', 2) AND c.active;
    IF NOT FOUND THEN
        INSERT INTO outbox (to_address, to_name, template, params)
        VALUES (v_email, btrim(p_name), 'registration_unavailable', '{}');
        RETURN;
    END IF;
    -- One pending registration per address: the newest link is the one that works.
    DELETE FROM account_tokens WHERE purpose = 'registration' AND email = v_email AND used_at IS NULL;
    INSERT INTO account_tokens (token_hash, purpose, customer_id, email, name, expires_at)
    VALUES (sha256(convert_to(p_token, 'UTF8')), 'registration', v_customer.id, v_email, btrim(p_name),
            now() + make_interval(secs => p_ttl_seconds));
    INSERT INTO outbox (to_address, to_name, template, params)
    VALUES (v_email, btrim(p_name), 'registration',
            jsonb_build_object('customer_name', v_customer.name, 'link', '/register/' || p_token,
                               'expires_hours', p_ttl_seconds / 3600));
    INSERT INTO activity_log (customer_id, actor_label, action, subject_type, ip, details)
    VALUES (v_customer.id, v_email, 'user.registration_requested', 'user', p_ip, jsonb_build_object('email', v_email));
END
$$;

-- Finishes a registration: the address is proven, the account is created as a
-- member of the domain's customer. NULL when the link does not work or the
-- address got an account meanwhile.
CREATE FUNCTION portal_register_complete(p_token text, p_name text, p_password_hash text, p_ip inet)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_token account_tokens%ROWTYPE;
    v_user uuid;
BEGIN
    v_token := portal_token_take('registration', p_token);
    IF v_token.id IS NULL OR EXISTS (SELECT 1 FROM users WHERE email = v_token.email) THEN
        RETURN NULL;
    END IF;
    INSERT INTO users (customer_id, email, name, role, password_hash, email_verified_at, password_changed_at)
    VALUES (v_token.customer_id, v_token.email, btrim(p_name), 'customer_member', p_password_hash, now(), now())
    RETURNING id INTO v_user;
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip)
    VALUES (v_token.customer_id, v_user, v_token.email, 'user.registered', 'user', v_user, p_ip);
    RETURN v_user;
END
$$;

-- Forgot password: a link for an account that can sign in, nothing otherwise;
-- the caller answers the same either way.
CREATE FUNCTION portal_password_reset_request(p_email text, p_token text, p_ttl_seconds integer, p_ip inet)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_user users%ROWTYPE;
BEGIN
    SELECT u.* INTO v_user FROM users u LEFT JOIN customers c ON c.id = u.customer_id
    WHERE u.email = lower(btrim(p_email)) AND u.disabled_at IS NULL AND u.email_verified_at IS NOT NULL
      AND coalesce(c.active, true);
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO account_tokens (token_hash, purpose, user_id, customer_id, email, expires_at)
    VALUES (sha256(convert_to(p_token, 'UTF8')), 'password_reset', v_user.id, v_user.customer_id, v_user.email,
            now() + make_interval(secs => p_ttl_seconds));
    INSERT INTO outbox (to_address, to_name, template, params)
    VALUES (v_user.email, v_user.name, 'password_reset',
            jsonb_build_object('name', v_user.name, 'link', '/password/reset/' || p_token,
                               'expires_minutes', p_ttl_seconds / 60));
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip)
    VALUES (v_user.customer_id, NULL, v_user.email, 'auth.password_reset_requested', 'user', v_user.id, p_ip);
END
$$;

-- Sets a new password for `p_user`: every session but `p_keep_session` ends,
-- every outstanding reset link dies, and the owner is told by email.
CREATE FUNCTION portal_password_set(p_user uuid, p_password_hash text, p_keep_session uuid, p_action text, p_ip inet)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_user users%ROWTYPE;
BEGIN
    UPDATE users SET password_hash = p_password_hash, password_changed_at = clock_timestamp()
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

-- Finishes a reset from an emailed link. Returns the user, or NULL.
CREATE FUNCTION portal_password_reset_complete(p_token text, p_password_hash text, p_ip inet)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_token account_tokens%ROWTYPE;
BEGIN
    v_token := portal_token_take('password_reset', p_token);
    IF v_token.id IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM portal_password_set(v_token.user_id, p_password_hash, NULL, 'auth.password_reset', p_ip);
    RETURN v_token.user_id;
END
$$;

-- The signed-in user (the scope's) changes their own password; the caller has
-- checked the current one. Their other sessions end.
CREATE FUNCTION portal_password_change(p_password_hash text, p_keep_session uuid, p_ip inet)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF portal_user() IS NULL THEN
        RAISE EXCEPTION 'no user in scope' USING ERRCODE = '42501';
    END IF;
    PERFORM portal_password_set(portal_user(), p_password_hash, p_keep_session, 'auth.password_changed', p_ip);
END
$$;

-- The signed-in user asks to move their account to `p_new_email`; the new
-- address must confirm. If it already has an account its owner is told and
-- the caller answers the same.
CREATE FUNCTION portal_email_change_request(p_new_email text, p_token text, p_ttl_seconds integer, p_ip inet)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_user users%ROWTYPE;
    v_email text := lower(btrim(p_new_email));
    v_taken users%ROWTYPE;
BEGIN
    SELECT * INTO v_user FROM users WHERE id = portal_user() AND disabled_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no user in scope' USING ERRCODE = '42501';
    END IF;
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details)
    VALUES (v_user.customer_id, v_user.id, v_user.email, 'auth.email_change_requested', 'user', v_user.id, p_ip,
            jsonb_build_object('new_email', v_email));
    SELECT * INTO v_taken FROM users WHERE email = v_email;
    IF FOUND THEN
        IF v_taken.id <> v_user.id THEN
            INSERT INTO outbox (to_address, to_name, template, params)
            VALUES (v_taken.email, v_taken.name, 'account_exists', jsonb_build_object('link', '/login'));
        END IF;
        RETURN;
    END IF;
    DELETE FROM account_tokens WHERE user_id = v_user.id AND purpose = 'email_change' AND used_at IS NULL;
    INSERT INTO account_tokens (token_hash, purpose, user_id, customer_id, email, expires_at)
    VALUES (sha256(convert_to(p_token, 'UTF8')), 'email_change', v_user.id, v_user.customer_id, v_email,
            now() + make_interval(secs => p_ttl_seconds));
    INSERT INTO outbox (to_address, to_name, template, params)
    VALUES (v_email, v_user.name, 'email_change',
            jsonb_build_object('name', v_user.name, 'new_email', v_email, 'link', '/settings/email/' || p_token,
                               'expires_hours', p_ttl_seconds / 3600));
END
$$;

-- Confirms an email change from the link sent to the new address. Only the
-- account that asked may confirm it (the link opened in another account's
-- session does nothing). Returns the new address, or NULL.
CREATE FUNCTION portal_email_change_confirm(p_token text, p_ip inet)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_token account_tokens%ROWTYPE;
    v_old users%ROWTYPE;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM account_tokens t
                   WHERE t.token_hash = sha256(convert_to(p_token, 'UTF8')) AND t.user_id = portal_user()) THEN
        RETURN NULL;
    END IF;
    v_token := portal_token_take('email_change', p_token);
    IF v_token.id IS NULL OR EXISTS (SELECT 1 FROM users WHERE email = v_token.email) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_old FROM users WHERE id = v_token.user_id;
    UPDATE users SET email = v_token.email WHERE id = v_token.user_id;
    -- Links sent to the old address (resets) no longer name this account's address.
    DELETE FROM account_tokens WHERE user_id = v_token.user_id AND purpose = 'password_reset' AND used_at IS NULL;
    INSERT INTO outbox (to_address, to_name, template, params)
    VALUES (v_old.email, v_old.name, 'email_changed', jsonb_build_object('name', v_old.name, 'new_email', v_token.email));
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details)
    VALUES (v_old.customer_id, v_old.id, v_token.email, 'auth.email_changed', 'user', v_old.id, p_ip,
            jsonb_build_object('old_email', v_old.email, 'new_email', v_token.email));
    RETURN v_token.email;
END
$$;

-- Disables or re-enables a user of a customer. Staff may for any customer user;
-- a customer admin for other users of their own customer. Disabling ends every
-- session (the users_disabled trigger) and with them every live connection.
-- Returns false when the user is not one the caller may change.
CREATE FUNCTION portal_user_set_disabled(p_user uuid, p_disabled boolean, p_ip inet)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_actor users%ROWTYPE;
    v_user users%ROWTYPE;
BEGIN
    SELECT * INTO v_actor FROM users WHERE id = portal_user() AND disabled_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT * INTO v_user FROM users WHERE id = p_user AND customer_id IS NOT NULL;
    IF NOT FOUND OR v_user.id = v_actor.id
       OR NOT portal_may_manage(v_actor, v_user.customer_id) THEN
        RETURN false;
    END IF;
    IF (v_user.disabled_at IS NOT NULL) = p_disabled THEN
        RETURN true;
    END IF;
    UPDATE users SET disabled_at = CASE WHEN p_disabled THEN now() END WHERE id = p_user;
    -- A disabled invitee's link dies with the account.
    IF p_disabled THEN
        DELETE FROM account_tokens WHERE user_id = p_user AND used_at IS NULL;
    END IF;
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details)
    VALUES (v_user.customer_id, v_actor.id, v_actor.email,
            CASE WHEN p_disabled THEN 'user.disabled' ELSE 'user.enabled' END, 'user', v_user.id, p_ip,
            jsonb_build_object('email', v_user.email));
    RETURN true;
END
$$;

-- Withdraws a pending invitation (the invitee's row goes with it). Same callers as portal_invite.
CREATE FUNCTION portal_invitation_revoke(p_user uuid, p_ip inet)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_actor users%ROWTYPE;
    v_user users%ROWTYPE;
BEGIN
    SELECT * INTO v_actor FROM users WHERE id = portal_user() AND disabled_at IS NULL;
    SELECT * INTO v_user FROM users WHERE id = p_user AND email_verified_at IS NULL AND customer_id IS NOT NULL;
    IF v_actor.id IS NULL OR v_user.id IS NULL
       OR NOT portal_may_manage(v_actor, v_user.customer_id) THEN
        RETURN false;
    END IF;
    DELETE FROM users WHERE id = p_user;
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, ip, details)
    VALUES (v_user.customer_id, v_actor.id, v_actor.email, 'user.invitation_revoked', 'user', p_ip,
            jsonb_build_object('email', v_user.email));
    RETURN true;
END
$$;

-- Sign-in needs a verified address: an invitee has no password until they accept.
CREATE OR REPLACE FUNCTION portal_login_lookup(p_email text)
RETURNS TABLE (user_id uuid, customer_id uuid, role text, password_hash text, usable boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT u.id, u.customer_id, u.role, u.password_hash,
           u.disabled_at IS NULL AND u.email_verified_at IS NOT NULL AND coalesce(c.active, true)
    FROM users u
    LEFT JOIN customers c ON c.id = u.customer_id
    WHERE u.email = lower(p_email)
$$;

-- Used links and expired ones are of no use to anyone after a day.
CREATE FUNCTION portal_account_tokens_sweep()
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH gone AS (
        DELETE FROM account_tokens
        WHERE (used_at IS NOT NULL OR expires_at <= now()) AND created_at < now() - interval '1 day'
          -- A pending invitee keeps their row (shown as an expired invitation to resend).
        RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'portal_may_manage(users, uuid)',
        'portal_invite(uuid, text, text, text, text, integer, inet)',
        'portal_token_peek(text, text)',
        'portal_token_take(text, text)',
        'portal_invitation_accept(text, text, text, inet)',
        'portal_register_request(text, text, text, integer, inet)',
        'portal_register_complete(text, text, text, inet)',
        'portal_password_reset_request(text, text, integer, inet)',
        'portal_password_set(uuid, text, uuid, text, inet)',
        'portal_password_reset_complete(text, text, inet)',
        'portal_password_change(text, uuid, inet)',
        'portal_email_change_request(text, text, integer, inet)',
        'portal_email_change_confirm(text, inet)',
        'portal_user_set_disabled(uuid, boolean, inet)',
        'portal_invitation_revoke(uuid, inet)',
        'portal_account_tokens_sweep()']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('ALTER FUNCTION %s OWNER TO portal_auth', f);
    END LOOP;
    -- Entry points; the two helpers (token_take, password_set) stay internal.
    FOREACH f IN ARRAY ARRAY[
        'portal_invite(uuid, text, text, text, text, integer, inet)',
        'portal_token_peek(text, text)',
        'portal_invitation_accept(text, text, text, inet)',
        'portal_register_request(text, text, text, integer, inet)',
        'portal_register_complete(text, text, text, inet)',
        'portal_password_reset_request(text, text, integer, inet)',
        'portal_password_reset_complete(text, text, inet)',
        'portal_password_change(text, uuid, inet)',
        'portal_email_change_request(text, text, integer, inet)',
        'portal_email_change_confirm(text, inet)',
        'portal_user_set_disabled(uuid, boolean, inet)',
        'portal_invitation_revoke(uuid, inet)',
        'portal_account_tokens_sweep()']
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO portal_app, portal_staff', f);
    END LOOP;
END
$$;
GRANT DELETE ON users TO portal_auth;
CREATE POLICY auth_delete ON users FOR DELETE TO portal_auth USING (true);
