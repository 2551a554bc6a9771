-- Wake-ups leave the writing transactions.
--
-- A NOTIFY in a transaction takes a cluster-wide lock that is held through the
-- commit's WAL flush, so every notifying commit waits for the one before it:
-- with the row triggers notifying `c_<customer>` and `staff`, concurrent writers
-- to live tables were serialised (see docs/architecture.md for the figures).
--
-- Now the triggers only append to `events`, and one relay per database (an
-- elected portal process, see actors/src/relay.rs) reads the outbox and sends one
-- notification per channel for what it found. While the relay is awake (polling),
-- writers notify nothing. While it sleeps, a writer wakes it through one channel,
-- `portal_events`; PostgreSQL collapses a transaction's identical notifications,
-- so that costs a writing transaction one NOTIFY however many rows it changes.

-- Whether the relay is polling (writers stay silent) or asleep (writers wake
-- it), and how far its notifications have reached: a relay that takes over
-- starts from here, so nothing committed while no relay ran is left unannounced.
CREATE TABLE live_relay (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    awake      boolean NOT NULL DEFAULT false,
    -- Every event from a transaction older than this (an xid8 as a number, like
    -- events.xid) has had its notifications sent.
    position   bigint NOT NULL DEFAULT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint)
);
INSERT INTO live_relay DEFAULT VALUES;
ALTER TABLE live_relay ENABLE ROW LEVEL SECURITY;
ALTER TABLE live_relay FORCE ROW LEVEL SECURITY;
-- The trigger function reads the flag with its owner's rights.
CREATE POLICY readable ON live_relay FOR SELECT TO portal_events USING (true);
-- The relay runs as the staff role (it reads every customer's events).
CREATE POLICY relay ON live_relay TO portal_staff USING (true) WITH CHECK (true);
GRANT SELECT ON live_relay TO portal_events;
GRANT SELECT, UPDATE ON live_relay TO portal_staff;

-- As in V2, except the last step: the event is written exactly as before, and
-- instead of notifying its channels the trigger wakes the relay if it sleeps.
CREATE OR REPLACE FUNCTION portal_emit_event() RETURNS trigger
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
    -- The relay sends `c_<customer>` for events with a customer_id and `staff`
    -- for every topic but notifications (V2's rules). An event that would have
    -- notified neither needs no relay either.
    --
    -- The flag is read after the row (and the event) is written, so this
    -- transaction already has its xid: the relay's sleep protocol depends on it.
    IF ((v_visible AND v_customer IS NOT NULL) OR TG_TABLE_NAME <> 'notifications')
       AND NOT coalesce((SELECT awake FROM live_relay), false) THEN
        PERFORM pg_notify('portal_events', '');
    END IF;
    RETURN NULL;
END
$$;
