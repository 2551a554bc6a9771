-- Orders at scale, customers' answers to a waiting stage, and the integration
-- tokens other systems use to keep orders in sync through the JSON API.

-- Search --------------------------------------------------------------------------
-- "Order number, title or your reference" is a substring search; trigram
-- indexes serve `ILIKE '%…%'` without reading a customer's every order.
-- pg_trgm is a trusted extension: a database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE FUNCTION portal_order_search_text(p_number text, p_title text, p_reference text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_number || ' ' || p_title || ' ' || coalesce(p_reference, '')
$$;
CREATE INDEX orders_search_idx ON orders USING gin (portal_order_search_text(number, title, reference) gin_trgm_ops);

-- Row-level security must not let a leaky operator see rows before the policy
-- has, and ILIKE is not LEAKPROOF: under a customer's policy the planner may not
-- use the trigram index and reads every order of the customer instead (130 ms
-- at 100,000 orders). This function searches as the staff role, whose policy
-- is no barrier, with the customer condition written into it: the caller's own
-- customer (portal_customer()) and nothing else. It stops after `p_limit` ids:
-- a search that matches thousands is served better by reading the list in order
-- and filtering as it goes. Staff search the table directly.
CREATE FUNCTION portal_order_search(p_pattern text, p_limit integer) RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp ROWS 200 AS $$
    SELECT id FROM orders
    WHERE customer_id = portal_customer() AND portal_order_search_text(number, title, reference) ILIKE p_pattern
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION portal_order_search(text, integer) FROM PUBLIC;
ALTER FUNCTION portal_order_search(text, integer) OWNER TO portal_staff;
GRANT EXECUTE ON FUNCTION portal_order_search(text, integer) TO portal_app;

-- Keyset pagination ----------------------------------------------------------------
-- Each sort the lists offer reads an index in order and stops after a page,
-- however many orders the customer has: (key, id) with id as the tie-break.
DROP INDEX orders_customer_updated_idx;
DROP INDEX orders_customer_status_idx;
CREATE INDEX orders_customer_updated_idx ON orders (customer_id, updated_at, id);
CREATE INDEX orders_customer_status_idx ON orders (customer_id, status, updated_at, id);
CREATE INDEX orders_customer_stage_idx ON orders (customer_id, stage_id, updated_at, id);
CREATE INDEX orders_customer_expected_idx ON orders (customer_id, (coalesce(expected_on, 'infinity'::date)), id);
-- The back office lists every customer's orders.
CREATE INDEX orders_updated_idx ON orders (updated_at, id);
CREATE INDEX orders_workflow_idx ON orders (workflow_id);
-- "Since your last visit": a customer's newest timeline entries, and the sign-in before this one.
CREATE INDEX order_stage_history_customer_idx ON order_stage_history (customer_id, reached_at);
CREATE INDEX activity_log_actor_idx ON activity_log (actor_user_id, action, id);

-- A customer's answer to a stage that waits for them ----------------------------
-- Customers cannot change orders; this one function may, and only for an order
-- of the caller's own customer (portal_customer()) that waits for them. Approval
-- moves the order to the next stage; a change request sends it back to the
-- stage before, with the customer's words on the timeline. It runs with the
-- staff role's rights, so it writes the same rows a staff move writes, and the
-- live triggers tell staff and the customer's other users at once.
CREATE FUNCTION portal_order_respond(p_order uuid, p_approve boolean, p_note text, p_ip inet)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_actor   users%ROWTYPE;
    v_order   orders%ROWTYPE;
    v_stage   workflow_stages%ROWTYPE;
    v_target  workflow_stages%ROWTYPE;
    v_note    text := nullif(btrim(p_note), '');
BEGIN
    SELECT * INTO v_actor FROM users
    WHERE id = portal_user() AND customer_id = portal_customer() AND disabled_at IS NULL;
    IF NOT FOUND THEN
        RETURN 'not_found';
    END IF;
    SELECT * INTO v_order FROM orders WHERE id = p_order AND customer_id = v_actor.customer_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'not_found';
    END IF;
    SELECT * INTO v_stage FROM workflow_stages WHERE id = v_order.stage_id;
    IF v_order.status <> 'open' OR NOT v_stage.awaits_customer THEN
        RETURN 'not_waiting';
    END IF;
    IF NOT p_approve AND v_note IS NULL THEN
        RETURN 'note_required';
    END IF;
    IF p_approve THEN
        SELECT * INTO v_target FROM workflow_stages
        WHERE workflow_id = v_order.workflow_id AND position > v_stage.position ORDER BY position LIMIT 1;
    ELSE
        SELECT * INTO v_target FROM workflow_stages
        WHERE workflow_id = v_order.workflow_id AND position < v_stage.position ORDER BY position DESC LIMIT 1;
    END IF;
    IF NOT FOUND THEN
        -- A waiting stage at either end of its workflow: the answer is recorded, the order stays.
        v_target := v_stage;
    END IF;
    UPDATE orders SET stage_id = v_target.id,
                      status = CASE WHEN v_target.terminal THEN 'completed' ELSE 'open' END
    WHERE id = v_order.id;
    INSERT INTO order_stage_history (order_id, customer_id, stage_id, stage_name, customer_note, actor_user_id)
    VALUES (v_order.id, v_order.customer_id, v_target.id, v_target.name,
            CASE WHEN p_approve THEN coalesce('Approved by ' || v_actor.name || ': ' || v_note,
                                              'Approved by ' || v_actor.name)
                 ELSE 'Changes requested by ' || v_actor.name || ': ' || v_note END,
            v_actor.id);
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details)
    VALUES (v_order.customer_id, v_actor.id, v_actor.email,
            CASE WHEN p_approve THEN 'order.approved' ELSE 'order.changes_requested' END,
            'order', v_order.id, p_ip,
            jsonb_strip_nulls(jsonb_build_object('number', v_order.number, 'from', v_stage.name,
                                                 'to', v_target.name, 'note', v_note)));
    RETURN CASE WHEN p_approve THEN 'approved' ELSE 'changes_requested' END;
END
$$;
REVOKE ALL ON FUNCTION portal_order_respond(uuid, boolean, text, inet) FROM PUBLIC;
ALTER FUNCTION portal_order_respond(uuid, boolean, text, inet) OWNER TO portal_staff;
GRANT EXECUTE ON FUNCTION portal_order_respond(uuid, boolean, text, inet) TO portal_app;
-- The note is bounded like a staff note to the customer.
ALTER TABLE order_stage_history DROP CONSTRAINT order_stage_history_customer_note_check;
ALTER TABLE order_stage_history ADD CONSTRAINT order_stage_history_customer_note_check
    CHECK (length(customer_note) <= 2300);

-- Integration users and their API tokens -----------------------------------------
-- An integration (the ERP, the shop system) acts as a staff user of its own, so
-- the activity log and the timelines say which system did what. It has no
-- password and no verified email, so it can never sign in or reset one.
ALTER TABLE users ADD COLUMN integration boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD CONSTRAINT users_integration_check
    CHECK (NOT integration OR (role = 'staff' AND password_hash IS NULL AND email_verified_at IS NULL));
GRANT SELECT (integration) ON users TO portal_app;

-- The bearer token is shown once; only its SHA-256 is kept.
CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    -- The token's first characters, so a leaked one can be recognised in the list.
    prefix        text NOT NULL CHECK (length(prefix) BETWEEN 4 AND 16),
    created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);
ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY staff ON api_tokens FOR SELECT TO portal_staff USING (true);
GRANT SELECT (id, user_id, prefix, created_by, created_at, last_used_at, revoked_at) ON api_tokens TO portal_staff;
CREATE POLICY auth ON api_tokens TO portal_auth USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE ON api_tokens TO portal_auth;

-- Creates an integration user and its first token. Staff admins only.
CREATE FUNCTION portal_integration_create(p_name text, p_token_hash bytea, p_prefix text, p_ip inet)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_actor  users%ROWTYPE;
    v_user   uuid := gen_random_uuid();
BEGIN
    SELECT * INTO v_actor FROM users WHERE id = portal_user() AND role = 'staff_admin' AND disabled_at IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO users (id, customer_id, email, name, role, password_hash, email_verified_at, integration)
    VALUES (v_user, NULL, 'integration-' || v_user::text || '@integrations.invalid', btrim(p_name), 'staff',
            NULL, NULL, true);
    INSERT INTO api_tokens (user_id, token_hash, prefix, created_by) VALUES (v_user, p_token_hash, p_prefix, v_actor.id);
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details)
    VALUES (NULL, v_actor.id, v_actor.email, 'integration.created', 'user', v_user, p_ip,
            jsonb_build_object('name', btrim(p_name)));
    RETURN v_user;
END
$$;

-- A new token for an existing integration (rotation); the old ones stay valid until revoked.
CREATE FUNCTION portal_integration_token_add(p_user uuid, p_token_hash bytea, p_prefix text, p_ip inet)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_actor  users%ROWTYPE;
BEGIN
    SELECT * INTO v_actor FROM users WHERE id = portal_user() AND role = 'staff_admin' AND disabled_at IS NULL;
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM users WHERE id = p_user AND integration AND disabled_at IS NULL) THEN
        RETURN false;
    END IF;
    INSERT INTO api_tokens (user_id, token_hash, prefix, created_by) VALUES (p_user, p_token_hash, p_prefix, v_actor.id);
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details)
    VALUES (NULL, v_actor.id, v_actor.email, 'integration.token_created', 'user', p_user, p_ip,
            jsonb_build_object('prefix', p_prefix));
    RETURN true;
END
$$;

CREATE FUNCTION portal_integration_token_revoke(p_token uuid, p_ip inet)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_actor  users%ROWTYPE;
    v_token  api_tokens%ROWTYPE;
BEGIN
    SELECT * INTO v_actor FROM users WHERE id = portal_user() AND role = 'staff_admin' AND disabled_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE api_tokens SET revoked_at = now() WHERE id = p_token AND revoked_at IS NULL RETURNING * INTO v_token;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details)
    VALUES (NULL, v_actor.id, v_actor.email, 'integration.token_revoked', 'user', v_token.user_id, p_ip,
            jsonb_build_object('prefix', v_token.prefix));
    RETURN true;
END
$$;

-- Who a bearer token acts as: a live token of an enabled integration user, or nothing.
CREATE FUNCTION portal_api_token_resolve(p_token_hash bytea)
RETURNS TABLE (token_id uuid, user_id uuid, name text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    RETURN QUERY
    UPDATE api_tokens t SET last_used_at = now()
    FROM users u
    WHERE t.token_hash = p_token_hash AND t.revoked_at IS NULL
      AND u.id = t.user_id AND u.integration AND u.disabled_at IS NULL
    RETURNING t.id, u.id, u.name;
END
$$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'portal_integration_create(text, bytea, text, inet)',
        'portal_integration_token_add(uuid, bytea, text, inet)',
        'portal_integration_token_revoke(uuid, inet)',
        'portal_api_token_resolve(bytea)']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('ALTER FUNCTION %s OWNER TO portal_auth', f);
    END LOOP;
    FOREACH f IN ARRAY ARRAY[
        'portal_integration_create(text, bytea, text, inet)',
        'portal_integration_token_add(uuid, bytea, text, inet)',
        'portal_integration_token_revoke(uuid, inet)']
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO portal_staff', f);
    END LOOP;
    -- A bearer request is unauthenticated until this answers: the customer pool, unscoped.
    EXECUTE 'GRANT EXECUTE ON FUNCTION portal_api_token_resolve(bytea) TO portal_app';
END
$$;
