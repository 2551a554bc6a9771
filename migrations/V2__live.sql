-- The live layer: every change to a table a page shows appends an event and
-- wakes the processes that serve that customer, in the same transaction.
--
-- A change made by any writer (our handlers, staff, the business's ERP writing
-- plain SQL) goes through these triggers, so every writer is live.

-- Owns the trigger functions that write `events`, so a writer needs no
-- privilege on the outbox and cannot forge an event of its own.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portal_events') THEN
        CREATE ROLE portal_events NOLOGIN NOBYPASSRLS;
    END IF;
    IF NOT pg_has_role(current_user, 'portal_events', 'MEMBER') THEN
        EXECUTE format('GRANT portal_events TO %I', current_user);
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO portal_events;

-- Events now come only from triggers. They outlive what they describe (a
-- deleted customer's last events are written while its rows cascade away).
ALTER TABLE events DROP CONSTRAINT events_customer_id_fkey;
DROP POLICY tenant_append ON events;
REVOKE INSERT ON events FROM portal_app, portal_staff;

-- The transaction that wrote the event. Event ids are taken when a row is
-- written, not when it commits, so id order is not commit order; a reader that
-- remembers the oldest transaction still running when it last looked
-- (`pg_snapshot_xmin`) and next asks for `xid >= that` can never miss an event
-- that committed late. Stored as bigint (xid8 as a number) for clients.
ALTER TABLE events ADD COLUMN xid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX events_xid_idx ON events (xid);

-- Events older than the retention period are pruned; a page whose cursor is
-- older than what was pruned is re-rendered whole instead of caught up.
CREATE TABLE events_horizon (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pruned_below  bigint NOT NULL DEFAULT 0
);
INSERT INTO events_horizon DEFAULT VALUES;
ALTER TABLE events_horizon ENABLE ROW LEVEL SECURITY;
ALTER TABLE events_horizon FORCE ROW LEVEL SECURITY;
CREATE POLICY readable ON events_horizon FOR SELECT TO portal_app, portal_staff USING (true);
CREATE POLICY prune ON events_horizon TO portal_events USING (true) WITH CHECK (true);
GRANT SELECT ON events_horizon TO portal_app, portal_staff;
GRANT SELECT, UPDATE ON events_horizon TO portal_events;

CREATE POLICY emit ON events TO portal_events USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, DELETE ON events TO portal_events;
GRANT USAGE ON SEQUENCE events_id_seq TO portal_events;

-- One trigger function for every live table. The event names the rows a page
-- might show (order, ticket, document, invoice, user) and nothing else: pages
-- re-read the current state through the viewer's own scope.
--
-- Channels: `c_<customer id>` for what the customer's users may see, `staff`
-- for the back office. Rows customers never see (draft invoices, internal
-- notes) produce staff-only events (customer_id NULL).
CREATE FUNCTION portal_emit_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_row       jsonb;
    v_customer  uuid;
    v_visible   boolean := true;
    v_id        bigint;
    v_subject   uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN
        v_row := to_jsonb(OLD);
    ELSE
        v_row := to_jsonb(NEW);
    END IF;
    v_customer := (v_row->>'customer_id')::uuid;
    IF TG_TABLE_NAME = 'invoices' THEN
        v_visible := v_row->>'status' <> 'draft'
                     OR (TG_OP = 'UPDATE' AND to_jsonb(OLD)->>'status' <> 'draft');
    ELSIF TG_TABLE_NAME = 'order_internal_notes' THEN
        v_visible := false;
        SELECT h.customer_id, h.order_id INTO v_customer, v_subject
        FROM order_stage_history h WHERE h.id = (v_row->>'history_id')::uuid;
        v_row := v_row || jsonb_build_object('order_id', v_subject);
    END IF;
    IF TG_TABLE_NAME <> 'activity_log' THEN
        v_subject := (v_row->>'id')::uuid;
    END IF;
    v_id := nextval('events_id_seq');
    INSERT INTO events (id, customer_id, topic, subject_id, actor_user_id, data)
    VALUES (v_id, CASE WHEN v_visible THEN v_customer END, TG_TABLE_NAME, v_subject, portal_user(),
            jsonb_strip_nulls(jsonb_build_object(
                'op', lower(TG_OP),
                'customer_id', v_customer,
                'order_id', CASE TG_TABLE_NAME WHEN 'orders' THEN v_row->'id' ELSE v_row->'order_id' END,
                'ticket_id', CASE TG_TABLE_NAME WHEN 'tickets' THEN v_row->'id' ELSE v_row->'ticket_id' END,
                'document_id', CASE TG_TABLE_NAME WHEN 'documents' THEN v_row->'id' ELSE v_row->'document_id' END,
                'invoice_id', CASE TG_TABLE_NAME WHEN 'invoices' THEN v_row->'id' ELSE v_row->'invoice_id' END,
                'user_id', v_row->'user_id')));
    IF v_visible AND v_customer IS NOT NULL THEN
        PERFORM pg_notify('c_' || v_customer::text, v_id::text);
    END IF;
    -- Notifications are private to their user; the back office has no page for them.
    IF TG_TABLE_NAME <> 'notifications' THEN
        PERFORM pg_notify('staff', v_id::text);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION portal_emit_event() FROM PUBLIC;
ALTER FUNCTION portal_emit_event() OWNER TO portal_events;
-- Trigger functions run with the definer's rights whoever fires them; it needs
-- to read the stage history for internal notes.
GRANT SELECT ON order_stage_history TO portal_events;
CREATE POLICY emit ON order_stage_history FOR SELECT TO portal_events USING (true);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['orders', 'order_stage_history', 'order_internal_notes', 'invoices', 'documents',
                             'document_versions', 'tickets', 'ticket_messages', 'notifications', 'activity_log']
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION portal_emit_event()', t || '_live', t);
    END LOOP;
END
$$;

-- Revocation is live too: a session that ends (sign-out, expiry sweep, a
-- disabled user or customer) closes its open sockets at once.
CREATE FUNCTION portal_session_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('portal_revoked', OLD.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER sessions_revoked AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION portal_session_ended();

-- Disabling a user, or a customer, ends their sessions (and so their sockets).
CREATE FUNCTION portal_end_sessions_of_disabled() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        DELETE FROM sessions WHERE user_id = NEW.id;
    ELSE
        DELETE FROM sessions WHERE customer_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION portal_end_sessions_of_disabled() FROM PUBLIC;
ALTER FUNCTION portal_end_sessions_of_disabled() OWNER TO portal_auth;
CREATE TRIGGER users_disabled AFTER UPDATE OF disabled_at ON users
    FOR EACH ROW WHEN (NEW.disabled_at IS NOT NULL AND OLD.disabled_at IS NULL)
    EXECUTE FUNCTION portal_end_sessions_of_disabled();
CREATE TRIGGER customers_deactivated AFTER UPDATE OF active ON customers
    FOR EACH ROW WHEN (NOT NEW.active AND OLD.active)
    EXECUTE FUNCTION portal_end_sessions_of_disabled();

-- Which of these sessions may still receive pushes, and as which role. The
-- same conditions as portal_session_resolve, without touching last_seen_at:
-- an open socket is not activity.
CREATE FUNCTION portal_sessions_alive(p_ids uuid[])
RETURNS TABLE (session_id uuid, role text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT s.id, u.role
    FROM sessions s
    JOIN users u ON u.id = s.user_id
    LEFT JOIN customers c ON c.id = u.customer_id
    WHERE s.id = ANY(p_ids)
      AND s.expires_at > now()
      AND s.last_seen_at > now() - s.idle_timeout
      AND u.disabled_at IS NULL
      AND coalesce(c.active, true)
$$;
REVOKE ALL ON FUNCTION portal_sessions_alive(uuid[]) FROM PUBLIC;
ALTER FUNCTION portal_sessions_alive(uuid[]) OWNER TO portal_auth;
GRANT EXECUTE ON FUNCTION portal_sessions_alive(uuid[]) TO portal_staff;

-- Drops events older than `p_keep` and remembers how far that reached.
CREATE FUNCTION portal_events_prune(p_keep interval)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_count integer;
    v_max bigint;
BEGIN
    WITH gone AS (DELETE FROM events WHERE created_at < now() - p_keep RETURNING xid)
    SELECT count(*), max(xid) INTO v_count, v_max FROM gone;
    IF v_max IS NOT NULL THEN
        UPDATE events_horizon SET pruned_below = greatest(pruned_below, v_max + 1);
    END IF;
    RETURN v_count;
END
$$;
REVOKE ALL ON FUNCTION portal_events_prune(interval) FROM PUBLIC;
ALTER FUNCTION portal_events_prune(interval) OWNER TO portal_events;
GRANT EXECUTE ON FUNCTION portal_events_prune(interval) TO portal_staff;
