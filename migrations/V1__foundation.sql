-- Portal foundation schema.
--
-- Tenancy is enforced here, not in handlers: every customer-owned table has
-- row-level security enabled AND forced, and the application connects as
-- `portal_app`, a role that owns nothing and cannot bypass RLS. A request
-- sees rows only after its scope has set `portal.customer_id` for the current
-- transaction (customer users), or switched to `portal_staff` for it (back
-- office); with no scope, every policy is false and queries return nothing.

-- portal_app:   customer requests (the customer pool's connections run as it)
-- portal_staff: staff requests (the staff pool's connections run as it)
-- portal_auth:  owns the few sign-in functions that must look across customers
-- None can log in, own tables or bypass RLS. The migrating role becomes a
-- member of each so its connections can switch to them.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['portal_app', 'portal_staff', 'portal_auth'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOBYPASSRLS', r);
        END IF;
        IF NOT pg_has_role(current_user, r, 'MEMBER') THEN
            EXECUTE format('GRANT %I TO %I', r, current_user);
        END IF;
    END LOOP;
END
$$;
-- Never grant one of these roles to another: policies for portal_staff would
-- then apply to the member too.

-- The logins the portal's two connection pools use. Each is NOINHERIT, owns
-- nothing and may become exactly one role, so SQL run on a customer request's
-- connection can never turn into staff or owner rights. They get no password
-- here: the private cluster trusts local connections, and an operator of an
-- external server sets passwords and passes PORTAL_DATABASE_WEB_URL /
-- PORTAL_DATABASE_STAFF_URL.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portal_web') THEN
        CREATE ROLE portal_web LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portal_web_staff') THEN
        CREATE ROLE portal_web_staff LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
END
$$;
GRANT portal_app TO portal_web;
GRANT portal_staff TO portal_web_staff;

GRANT USAGE ON SCHEMA public TO portal_app, portal_staff, portal_auth;

-- Scope accessors used by every policy. STABLE so the planner evaluates them
-- once per statement and can still use customer_id indexes.
CREATE FUNCTION portal_customer() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('portal.customer_id', true), '')::uuid $$;

CREATE FUNCTION portal_user() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('portal.user_id', true), '')::uuid $$;

CREATE FUNCTION portal_touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Customers -----------------------------------------------------------------

CREATE TABLE customers (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Users: customer users belong to exactly one customer; staff to none.
CREATE TABLE users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id    uuid REFERENCES customers (id) ON DELETE CASCADE,
    email          text NOT NULL UNIQUE
                   CHECK (email = lower(email) AND email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    name           text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    role           text NOT NULL
                   CHECK (role IN ('customer_admin', 'customer_member', 'staff', 'staff_admin')),
    password_hash  text,
    disabled_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((customer_id IS NULL) = (role IN ('staff', 'staff_admin'))),
    UNIQUE (id, customer_id)
);
CREATE INDEX users_customer_idx ON users (customer_id);

-- Sessions: the cookie holds a random token, the database only its SHA-256.
CREATE TABLE sessions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    customer_id   uuid REFERENCES customers (id) ON DELETE CASCADE,
    csrf_token    text NOT NULL,
    remember      boolean NOT NULL DEFAULT false,
    idle_timeout  interval NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    ip            inet,
    user_agent    text,
    FOREIGN KEY (user_id, customer_id) REFERENCES users (id, customer_id)
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

-- Workflows: the business's named stages per kind of work -------------------

CREATE TABLE workflows (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workflow_stages (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_id      uuid NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    position         integer NOT NULL CHECK (position >= 0),
    name             text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    -- A stage that waits for the customer (e.g. artwork approval).
    awaits_customer  boolean NOT NULL DEFAULT false,
    -- Reaching a terminal stage completes the order.
    terminal         boolean NOT NULL DEFAULT false,
    UNIQUE (workflow_id, position) DEFERRABLE INITIALLY DEFERRED,
    UNIQUE (id, workflow_id)
);

-- Orders ---------------------------------------------------------------------

CREATE TABLE orders (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id      uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    number           text NOT NULL CHECK (length(number) BETWEEN 1 AND 40),
    title            text NOT NULL CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    reference        text CHECK (length(reference) <= 100),
    external_ref     text UNIQUE CHECK (length(external_ref) <= 100),
    workflow_id      uuid NOT NULL REFERENCES workflows (id),
    stage_id         uuid NOT NULL,
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'completed', 'cancelled')),
    expected_on      date,
    tracking_carrier text,
    tracking_number  text,
    tracking_url     text CHECK (tracking_url ~ '^https://'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, number),
    UNIQUE (id, customer_id),
    FOREIGN KEY (stage_id, workflow_id) REFERENCES workflow_stages (id, workflow_id)
);
CREATE INDEX orders_customer_updated_idx ON orders (customer_id, updated_at DESC, id);
CREATE INDEX orders_customer_status_idx ON orders (customer_id, status, updated_at DESC);
CREATE INDEX orders_stage_idx ON orders (stage_id);

-- Stage history keeps the stage's name as it was, so renaming a stage later
-- never rewrites what the customer was told.
CREATE TABLE order_stage_history (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id       uuid NOT NULL,
    customer_id    uuid NOT NULL,
    stage_id       uuid REFERENCES workflow_stages (id) ON DELETE SET NULL,
    stage_name     text NOT NULL,
    customer_note  text CHECK (length(customer_note) <= 2000),
    actor_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    reached_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (order_id, customer_id) REFERENCES orders (id, customer_id) ON DELETE CASCADE
);
CREATE INDEX order_stage_history_order_idx ON order_stage_history (order_id, reached_at, id);

-- Internal notes live in their own staff-only table, so no customer query,
-- page or push can ever select one, whatever a handler does.
CREATE TABLE order_internal_notes (
    history_id     uuid PRIMARY KEY REFERENCES order_stage_history (id) ON DELETE CASCADE,
    note           text NOT NULL CHECK (length(note) BETWEEN 1 AND 4000),
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Invoices ---------------------------------------------------------------------

CREATE TABLE invoices (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id  uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    order_id     uuid,
    number       text NOT NULL CHECK (length(number) BETWEEN 1 AND 40),
    currency     text NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('draft', 'open', 'paid', 'void')),
    issued_on    date NOT NULL,
    due_on       date NOT NULL CHECK (due_on >= issued_on),
    total_cents  bigint NOT NULL DEFAULT 0 CHECK (total_cents >= 0),
    paid_cents   bigint NOT NULL DEFAULT 0 CHECK (paid_cents >= 0),
    paid_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, number),
    UNIQUE (id, customer_id),
    FOREIGN KEY (order_id, customer_id) REFERENCES orders (id, customer_id)
);
CREATE INDEX invoices_customer_issued_idx ON invoices (customer_id, issued_on DESC, id);

CREATE TABLE invoice_lines (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    invoice_id        uuid NOT NULL,
    customer_id       uuid NOT NULL,
    position          integer NOT NULL CHECK (position >= 0),
    description       text NOT NULL CHECK (length(btrim(description)) BETWEEN 1 AND 500),
    quantity          numeric(12, 3) NOT NULL CHECK (quantity > 0),
    unit_price_cents  bigint NOT NULL CHECK (unit_price_cents >= 0),
    amount_cents      bigint NOT NULL CHECK (amount_cents >= 0),
    UNIQUE (invoice_id, position),
    FOREIGN KEY (invoice_id, customer_id) REFERENCES invoices (id, customer_id) ON DELETE CASCADE
);

-- Documents --------------------------------------------------------------------

CREATE TABLE documents (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id  uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    order_id     uuid,
    title        text NOT NULL CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    description  text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    doc_type     text NOT NULL CHECK (doc_type IN
                   ('contract', 'certificate', 'report', 'artwork', 'invoice_copy', 'purchase_order', 'other')),
    tags         text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, customer_id),
    FOREIGN KEY (order_id, customer_id) REFERENCES orders (id, customer_id)
);
CREATE INDEX documents_customer_updated_idx ON documents (customer_id, updated_at DESC, id);

CREATE TABLE document_versions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id   uuid NOT NULL,
    customer_id   uuid NOT NULL,
    version       integer NOT NULL CHECK (version >= 1),
    file_name     text NOT NULL CHECK (length(file_name) BETWEEN 1 AND 255),
    content_type  text NOT NULL,
    size_bytes    bigint NOT NULL CHECK (size_bytes >= 0),
    storage_key   text NOT NULL UNIQUE,
    sha256        text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    uploaded_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (document_id, version),
    FOREIGN KEY (document_id, customer_id) REFERENCES documents (id, customer_id) ON DELETE CASCADE
);

-- Tickets ----------------------------------------------------------------------

CREATE TABLE tickets (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id  uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    number       text NOT NULL CHECK (length(number) BETWEEN 1 AND 40),
    subject      text NOT NULL CHECK (length(btrim(subject)) BETWEEN 1 AND 200),
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'answered', 'closed')),
    order_id     uuid,
    invoice_id   uuid,
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, number),
    UNIQUE (id, customer_id),
    FOREIGN KEY (order_id, customer_id) REFERENCES orders (id, customer_id),
    FOREIGN KEY (invoice_id, customer_id) REFERENCES invoices (id, customer_id)
);
CREATE INDEX tickets_customer_updated_idx ON tickets (customer_id, updated_at DESC, id);

CREATE TABLE ticket_messages (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ticket_id    uuid NOT NULL,
    customer_id  uuid NOT NULL,
    author_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    from_staff   boolean NOT NULL,
    body         text NOT NULL CHECK (length(btrim(body)) BETWEEN 1 AND 20000),
    created_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (ticket_id, customer_id) REFERENCES tickets (id, customer_id) ON DELETE CASCADE
);
CREATE INDEX ticket_messages_ticket_idx ON ticket_messages (ticket_id, created_at, id);

-- Notifications (per user) -----------------------------------------------------

CREATE TABLE notifications (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id  uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL,
    kind         text NOT NULL CHECK (length(kind) BETWEEN 1 AND 50),
    title        text NOT NULL CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    body         text NOT NULL DEFAULT '',
    -- A path on this portal: browsers drop tabs and newlines, so `/<tab>/evil` would leave the site.
    link         text CHECK (link ~ '^/[^/\\]' AND link !~ '[[:space:][:cntrl:]\\]'),
    read_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (user_id, customer_id) REFERENCES users (id, customer_id) ON DELETE CASCADE
);
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC);

-- Activity log (append-only) ---------------------------------------------------

CREATE TABLE activity_log (
    id             bigserial PRIMARY KEY,
    customer_id    uuid REFERENCES customers (id) ON DELETE CASCADE,
    actor_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    actor_label    text NOT NULL,
    action         text NOT NULL CHECK (action ~ '^[a-z_.]+$'),
    subject_type   text,
    subject_id     uuid,
    ip             inet,
    details        jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activity_log_customer_idx ON activity_log (customer_id, id DESC);

-- Events outbox: written in the same transaction as the change it describes
-- (the live-layer migration adds the triggers that fill it and NOTIFY).
CREATE TABLE events (
    id             bigserial PRIMARY KEY,
    customer_id    uuid REFERENCES customers (id) ON DELETE CASCADE,
    topic          text NOT NULL,
    subject_id     uuid,
    actor_user_id  uuid,
    data           jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_customer_idx ON events (customer_id, id);
CREATE INDEX events_created_idx ON events (created_at);

-- updated_at maintenance -------------------------------------------------------

CREATE TRIGGER customers_touch BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION portal_touch_updated_at();
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION portal_touch_updated_at();
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION portal_touch_updated_at();
CREATE TRIGGER invoices_touch BEFORE UPDATE ON invoices FOR EACH ROW EXECUTE FUNCTION portal_touch_updated_at();
CREATE TRIGGER documents_touch BEFORE UPDATE ON documents FOR EACH ROW EXECUTE FUNCTION portal_touch_updated_at();
CREATE TRIGGER tickets_touch BEFORE UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION portal_touch_updated_at();

-- Row-level security ------------------------------------------------------------
-- Policies are per role, so each one is a plain comparison the planner can
-- serve from an index: customers (portal_app) see `customer_id =
-- portal_customer()`, staff (portal_staff, the staff pool's role) see everything, and portal_auth sees only what the sign-in
-- functions below need.

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customers', 'users', 'sessions', 'workflows', 'workflow_stages', 'orders',
                             'order_stage_history', 'order_internal_notes', 'invoices', 'invoice_lines',
                             'documents', 'document_versions', 'tickets', 'ticket_messages', 'notifications',
                             'activity_log', 'events']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY staff ON %I TO portal_staff USING (true) WITH CHECK (true)', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['users', 'sessions', 'orders', 'order_stage_history', 'invoices', 'invoice_lines',
                             'documents', 'document_versions', 'tickets', 'ticket_messages']
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO portal_staff', t);
    END LOOP;
    -- Owned by one customer, read-only for its users: what a customer may change
    -- is granted table by table, when a feature needs it, with a WITH CHECK on
    -- who writes what.
    FOREACH t IN ARRAY ARRAY['orders', 'order_stage_history', 'documents', 'document_versions', 'tickets',
                             'ticket_messages']
    LOOP
        EXECUTE format('CREATE POLICY tenant ON %I FOR SELECT TO portal_app USING (customer_id = portal_customer())', t);
        EXECUTE format('GRANT SELECT ON %I TO portal_app', t);
    END LOOP;
END
$$;

-- Colleagues, but never their password hashes.
CREATE POLICY tenant ON users FOR SELECT TO portal_app USING (customer_id = portal_customer());
GRANT SELECT (id, customer_id, email, name, role, disabled_at, created_at, updated_at) ON users TO portal_app;

-- A user's own sessions, without the token hash or CSRF token.
CREATE POLICY own_sessions ON sessions FOR SELECT TO portal_app
    USING (customer_id = portal_customer() AND user_id = portal_user());
GRANT SELECT (id, user_id, customer_id, remember, idle_timeout, created_at, last_seen_at, expires_at, ip, user_agent)
    ON sessions TO portal_app;

-- Draft invoices are the business's work in progress: customers never see them or their lines.
CREATE POLICY tenant ON invoices FOR SELECT TO portal_app
    USING (customer_id = portal_customer() AND status <> 'draft');
CREATE POLICY tenant ON invoice_lines FOR SELECT TO portal_app
    USING (customer_id = portal_customer()
           AND EXISTS (SELECT 1 FROM invoices i WHERE i.id = invoice_id AND i.status <> 'draft'));
GRANT SELECT ON invoices, invoice_lines TO portal_app;

CREATE POLICY own_customer ON customers FOR SELECT TO portal_app USING (id = portal_customer());
GRANT SELECT ON customers TO portal_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON customers TO portal_staff;

-- Workflows are the business's: readable from any customer scope, changed by staff.
CREATE POLICY scoped_read ON workflows FOR SELECT TO portal_app USING (portal_customer() IS NOT NULL);
CREATE POLICY scoped_read ON workflow_stages FOR SELECT TO portal_app USING (portal_customer() IS NOT NULL);
GRANT SELECT ON workflows, workflow_stages TO portal_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON workflows, workflow_stages TO portal_staff;

-- Internal notes: no customer query, page or push can select one, whatever a
-- handler does; portal_app has no privilege on the table at all.
GRANT SELECT, INSERT, UPDATE, DELETE ON order_internal_notes TO portal_staff;

-- Notifications are private to their user, even within one customer.
-- The only thing a user changes about one is whether it has been read.
CREATE POLICY own_user ON notifications TO portal_app
    USING (customer_id = portal_customer() AND user_id = portal_user())
    WITH CHECK (customer_id = portal_customer() AND user_id = portal_user());
GRANT SELECT, UPDATE (read_at) ON notifications TO portal_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON notifications TO portal_staff;

-- The activity log and the events outbox are append-only.
CREATE POLICY tenant_read ON activity_log FOR SELECT TO portal_app USING (customer_id = portal_customer());
CREATE POLICY tenant_append ON activity_log FOR INSERT TO portal_app
    WITH CHECK (customer_id = portal_customer() AND actor_user_id IS NOT DISTINCT FROM portal_user());
CREATE POLICY tenant_read ON events FOR SELECT TO portal_app USING (customer_id = portal_customer());
CREATE POLICY tenant_append ON events FOR INSERT TO portal_app
    WITH CHECK (customer_id = portal_customer() AND actor_user_id IS NOT DISTINCT FROM portal_user());
GRANT SELECT, INSERT ON activity_log, events TO portal_app, portal_staff;
GRANT USAGE ON SEQUENCE activity_log_id_seq, events_id_seq TO portal_app, portal_staff;

-- What the sign-in functions may touch.
CREATE POLICY auth ON users FOR SELECT TO portal_auth USING (true);
CREATE POLICY auth ON customers FOR SELECT TO portal_auth USING (true);
CREATE POLICY auth ON sessions TO portal_auth USING (true) WITH CHECK (true);
CREATE POLICY auth ON activity_log FOR INSERT TO portal_auth WITH CHECK (true);
GRANT SELECT ON users, customers TO portal_auth;
GRANT SELECT, INSERT, UPDATE, DELETE ON sessions TO portal_auth;
GRANT INSERT ON activity_log TO portal_auth;
GRANT USAGE ON SEQUENCE activity_log_id_seq TO portal_auth;

-- Authentication entry points ---------------------------------------------------
-- Before a request is authenticated it has no scope, so these few SECURITY
-- DEFINER functions, owned by portal_auth, do the narrow things sign-in needs.
-- Nothing else in the application can read across customers without a staff
-- scope.

CREATE FUNCTION portal_login_lookup(p_email text)
RETURNS TABLE (user_id uuid, customer_id uuid, role text, password_hash text, usable boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT u.id, u.customer_id, u.role, u.password_hash,
           u.disabled_at IS NULL AND coalesce(c.active, true)
    FROM users u
    LEFT JOIN customers c ON c.id = u.customer_id
    WHERE u.email = lower(p_email)
$$;

CREATE FUNCTION portal_session_create(
    p_user_id uuid, p_token_hash bytea, p_csrf_token text, p_remember boolean,
    p_idle_seconds integer, p_absolute_seconds integer, p_ip inet, p_user_agent text)
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
            jsonb_build_object('remember', p_remember));
    RETURN v_session;
END
$$;

-- Resolves a session token; refreshes last_seen_at at most once a minute so
-- a busy page does not write on every request.
CREATE FUNCTION portal_session_resolve(p_token_hash bytea)
RETURNS TABLE (session_id uuid, user_id uuid, customer_id uuid, role text, email text, name text,
               customer_name text, csrf_token text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE sessions s SET last_seen_at = now()
    WHERE s.token_hash = p_token_hash
      AND s.last_seen_at < now() - interval '1 minute'
      AND s.expires_at > now()
      AND s.last_seen_at > now() - s.idle_timeout;
    RETURN QUERY
    SELECT s.id, u.id, u.customer_id, u.role, u.email, u.name, c.name, s.csrf_token
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

CREATE FUNCTION portal_session_end(p_token_hash bytea, p_ip inet)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_session sessions%ROWTYPE;
    v_email text;
BEGIN
    DELETE FROM sessions WHERE token_hash = p_token_hash RETURNING * INTO v_session;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT email INTO v_email FROM users WHERE id = v_session.user_id;
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip)
    VALUES (v_session.customer_id, v_session.user_id, v_email, 'auth.sign_out', 'session', v_session.id, p_ip);
    RETURN true;
END
$$;

-- Records a failed sign-in against the account it names, if there is one, so
-- its owner can see it in their activity log. Says nothing to the caller.
CREATE FUNCTION portal_sign_in_failed(p_email text, p_ip inet)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip)
    SELECT u.customer_id, NULL, u.email, 'auth.sign_in_failed', 'user', u.id, p_ip
    FROM users u WHERE u.email = lower(p_email)
$$;

-- Expired sessions are removed by a periodic sweep.
CREATE FUNCTION portal_sessions_sweep()
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH gone AS (
        DELETE FROM sessions WHERE expires_at <= now() OR last_seen_at <= now() - idle_timeout RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;

REVOKE ALL ON FUNCTION portal_login_lookup(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION portal_session_create(uuid, bytea, text, boolean, integer, integer, inet, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION portal_session_resolve(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION portal_session_end(bytea, inet) FROM PUBLIC;
REVOKE ALL ON FUNCTION portal_sign_in_failed(text, inet) FROM PUBLIC;
REVOKE ALL ON FUNCTION portal_sessions_sweep() FROM PUBLIC;
ALTER FUNCTION portal_login_lookup(text) OWNER TO portal_auth;
ALTER FUNCTION portal_session_create(uuid, bytea, text, boolean, integer, integer, inet, text) OWNER TO portal_auth;
ALTER FUNCTION portal_session_resolve(bytea) OWNER TO portal_auth;
ALTER FUNCTION portal_session_end(bytea, inet) OWNER TO portal_auth;
ALTER FUNCTION portal_sign_in_failed(text, inet) OWNER TO portal_auth;
ALTER FUNCTION portal_sessions_sweep() OWNER TO portal_auth;
GRANT EXECUTE ON FUNCTION portal_login_lookup(text) TO portal_app;
GRANT EXECUTE ON FUNCTION portal_session_create(uuid, bytea, text, boolean, integer, integer, inet, text) TO portal_app;
GRANT EXECUTE ON FUNCTION portal_session_resolve(bytea) TO portal_app;
GRANT EXECUTE ON FUNCTION portal_session_end(bytea, inet) TO portal_app;
GRANT EXECUTE ON FUNCTION portal_sign_in_failed(text, inet) TO portal_app;
GRANT EXECUTE ON FUNCTION portal_sessions_sweep() TO portal_app;
