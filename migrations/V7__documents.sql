-- Documents: uploads by staff and by customers, versions numbered by the
-- database, full-text search, single-use download grants and the download audit.

-- Who added a document, and from which side ---------------------------------------
ALTER TABLE documents
    ADD COLUMN created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN origin text NOT NULL DEFAULT 'staff' CHECK (origin IN ('staff', 'customer')),
    ADD CONSTRAINT documents_tags_check CHECK (cardinality(tags) <= 20);

-- Search ---------------------------------------------------------------------------
-- Title first, then tags, then the description; English stemming so "certificates"
-- finds "certificate". array_to_string is only STABLE because of arrays of other
-- types; for text[] it is immutable, which a generated column needs.
CREATE FUNCTION portal_document_tsvector(p_title text, p_description text, p_tags text[]) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector('english'::regconfig, p_title), 'A')
        || setweight(to_tsvector('english'::regconfig, array_to_string(p_tags, ' ')), 'B')
        || setweight(to_tsvector('english'::regconfig, p_description), 'C')
$$;
ALTER TABLE documents
    ADD COLUMN search tsvector GENERATED ALWAYS AS (portal_document_tsvector(title, description, tags)) STORED;

CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX documents_search_idx ON documents USING gin (customer_id, search);

-- `@@` is not LEAKPROOF, so under a customer's policy the planner may not use the
-- index above (as with order search, see V6): the function searches as the staff
-- role with the caller's own customer written into it, and returns ids only.
CREATE FUNCTION portal_document_search(p_query text, p_limit integer) RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp ROWS 200 AS $$
    SELECT id FROM documents
    WHERE customer_id = portal_customer() AND search @@ to_tsquery('english'::regconfig, p_query)
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION portal_document_search(text, integer) FROM PUBLIC;
ALTER FUNCTION portal_document_search(text, integer) OWNER TO portal_staff;
GRANT EXECUTE ON FUNCTION portal_document_search(text, integer) TO portal_app;

-- Keyset pages: newest first, per customer, per type and per order; staff across customers.
DROP INDEX documents_customer_updated_idx;
CREATE INDEX documents_customer_updated_idx ON documents (customer_id, updated_at, id);
CREATE INDEX documents_customer_type_idx ON documents (customer_id, doc_type, updated_at, id);
CREATE INDEX documents_customer_order_idx ON documents (customer_id, order_id, updated_at, id)
    WHERE order_id IS NOT NULL;
CREATE INDEX documents_updated_idx ON documents (updated_at, id);
CREATE INDEX document_versions_document_idx ON document_versions (document_id, version DESC);

-- Versions -------------------------------------------------------------------------
-- The database numbers versions: the document row is locked, so two uploads at
-- once get 2 and 3, never 2 twice. A new version makes the document "updated".
CREATE FUNCTION portal_document_version_number() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF NEW.version IS NULL THEN
        -- Only the writer's own document: the row's customer is checked by the policies after this trigger.
        PERFORM 1 FROM documents WHERE id = NEW.document_id AND customer_id = NEW.customer_id FOR UPDATE;
        SELECT coalesce(max(version), 0) + 1 INTO NEW.version FROM document_versions WHERE document_id = NEW.document_id;
    END IF;
    RETURN NEW;
END
$$;
ALTER FUNCTION portal_document_version_number() OWNER TO portal_staff;
CREATE TRIGGER document_versions_number BEFORE INSERT ON document_versions
    FOR EACH ROW EXECUTE FUNCTION portal_document_version_number();

CREATE FUNCTION portal_document_version_added() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE documents SET updated_at = now() WHERE id = NEW.document_id AND updated_at < now();
    RETURN NULL;
END
$$;
ALTER FUNCTION portal_document_version_added() OWNER TO portal_staff;
CREATE TRIGGER document_versions_touch AFTER INSERT ON document_versions
    FOR EACH ROW EXECUTE FUNCTION portal_document_version_added();

-- Customers upload their own documents (artwork, purchase orders) and new versions
-- of those; what staff shared stays as staff shared it.
CREATE POLICY customer_upload ON documents FOR INSERT TO portal_app
    WITH CHECK (customer_id = portal_customer() AND origin = 'customer' AND created_by = portal_user());
GRANT INSERT (customer_id, order_id, title, description, doc_type, tags, created_by, origin) ON documents TO portal_app;
CREATE POLICY customer_upload ON document_versions FOR INSERT TO portal_app
    WITH CHECK (customer_id = portal_customer() AND uploaded_by = portal_user()
                AND EXISTS (SELECT 1 FROM documents d
                            WHERE d.id = document_id AND d.customer_id = portal_customer() AND d.origin = 'customer'));
GRANT INSERT (document_id, customer_id, file_name, content_type, size_bytes, storage_key, sha256, uploaded_by)
    ON document_versions TO portal_app;

-- Objects being uploaded ----------------------------------------------------------
-- A key is written here (and committed) before its object is stored, and removed in
-- the transaction that records the version. A key still here an hour later is an
-- upload that died between the two (a crash, a lost connection): the sweeper
-- deletes its object, so storage never keeps a file no row points to.
-- (No foreign key to the customer: a deleted customer's unfinished upload must
-- still be found and swept.)
CREATE TABLE blob_uploads (
    storage_key  text PRIMARY KEY,
    customer_id  uuid NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE blob_uploads ENABLE ROW LEVEL SECURITY;
ALTER TABLE blob_uploads FORCE ROW LEVEL SECURITY;
CREATE POLICY staff ON blob_uploads TO portal_staff USING (true) WITH CHECK (true);
CREATE POLICY tenant ON blob_uploads TO portal_app
    USING (customer_id = portal_customer()) WITH CHECK (customer_id = portal_customer());
GRANT SELECT, DELETE ON blob_uploads TO portal_app, portal_staff;
GRANT INSERT (storage_key, customer_id) ON blob_uploads TO portal_app, portal_staff;
-- The sweeper locks the rows it is about to delete (FOR UPDATE needs UPDATE).
GRANT UPDATE ON blob_uploads TO portal_staff;

-- Download grants ------------------------------------------------------------------
ALTER TABLE document_versions ADD CONSTRAINT document_versions_scoped_key UNIQUE (id, document_id, customer_id);

-- A click on Download creates a grant: a random token (only its SHA-256 is kept)
-- for one version, one user and one session, that works once before it expires.
-- Ending the session (sign-out, password change, disabling the user) deletes it.
CREATE TABLE download_grants (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    customer_id  uuid NOT NULL,
    document_id  uuid NOT NULL,
    version_id   uuid NOT NULL,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id   uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    ip           inet,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    revoked_at   timestamptz,
    revoked_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    -- PORTAL_DOWNLOAD_LINK_MINUTES is at most 60; no grant outlives that, whoever writes it.
    CHECK (expires_at > created_at AND expires_at <= created_at + interval '1 hour'),
    FOREIGN KEY (version_id, document_id, customer_id)
        REFERENCES document_versions (id, document_id, customer_id) ON DELETE CASCADE
);
CREATE INDEX download_grants_customer_idx ON download_grants (customer_id, expires_at);
CREATE INDEX download_grants_document_idx ON download_grants (document_id, expires_at);
CREATE INDEX download_grants_session_idx ON download_grants (session_id);
CREATE INDEX download_grants_version_idx ON download_grants (version_id);

-- A user's grants are their own to create and redeem, and only with their own
-- session; a customer admin revokes any of the company's (checked by role in the
-- handler). Tokens are hashes: nothing here lets one be read back.
ALTER TABLE download_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE download_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY staff ON download_grants TO portal_staff USING (true) WITH CHECK (true);
CREATE POLICY tenant_read ON download_grants FOR SELECT TO portal_app USING (customer_id = portal_customer());
CREATE POLICY own_create ON download_grants FOR INSERT TO portal_app
    WITH CHECK (customer_id = portal_customer() AND user_id = portal_user()
                AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = session_id AND s.user_id = portal_user()));
CREATE POLICY tenant_update ON download_grants FOR UPDATE TO portal_app
    USING (customer_id = portal_customer()) WITH CHECK (customer_id = portal_customer());
GRANT SELECT, INSERT, UPDATE, DELETE ON download_grants TO portal_staff;
GRANT SELECT ON download_grants TO portal_app;
GRANT INSERT (token_hash, customer_id, document_id, version_id, user_id, session_id, ip, expires_at)
    ON download_grants TO portal_app;
GRANT UPDATE (used_at, revoked_at, revoked_by) ON download_grants TO portal_app;

-- Used and revoked are for good: no writer, whatever its privileges, brings a grant back.
CREATE FUNCTION portal_download_grant_final() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.used_at IS NOT NULL AND NEW.used_at IS DISTINCT FROM OLD.used_at)
       OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at) THEN
        RAISE EXCEPTION 'a used or revoked download grant cannot change' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER download_grants_final BEFORE UPDATE ON download_grants
    FOR EACH ROW EXECUTE FUNCTION portal_download_grant_final();

-- The download audit: who fetched which version, when and from where.
CREATE TABLE document_downloads (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id    uuid NOT NULL,
    document_id    uuid NOT NULL,
    version_id     uuid NOT NULL REFERENCES document_versions (id) ON DELETE CASCADE,
    user_id        uuid REFERENCES users (id) ON DELETE SET NULL,
    grant_id       uuid REFERENCES download_grants (id) ON DELETE SET NULL,
    ip             inet,
    user_agent     text CHECK (length(user_agent) <= 300),
    downloaded_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (document_id, customer_id) REFERENCES documents (id, customer_id) ON DELETE CASCADE
);
CREATE INDEX document_downloads_document_idx ON document_downloads (document_id, downloaded_at DESC);
CREATE INDEX document_downloads_customer_idx ON document_downloads (customer_id, downloaded_at DESC);
CREATE INDEX document_downloads_grant_idx ON document_downloads (grant_id);
ALTER TABLE document_downloads ENABLE ROW LEVEL SECURITY;
ALTER TABLE document_downloads FORCE ROW LEVEL SECURITY;
CREATE POLICY staff ON document_downloads TO portal_staff USING (true) WITH CHECK (true);
CREATE POLICY tenant_read ON document_downloads FOR SELECT TO portal_app USING (customer_id = portal_customer());
CREATE POLICY own_record ON document_downloads FOR INSERT TO portal_app
    WITH CHECK (customer_id = portal_customer() AND user_id = portal_user());
GRANT SELECT, INSERT ON document_downloads TO portal_app, portal_staff;
