-- Orders at every stage, with a timeline whose dates are relative to today.
CREATE TEMP TABLE demo_orders (slug text, number text, title text, reference text, workflow text,
                               reached int, age_days int, expected_in int, status text) ON COMMIT DROP;
INSERT INTO demo_orders VALUES
    ('acme', 'ORD-1031', 'Spring catalogue, 5,000 copies', 'PO-7702', 'Print job', 5, 160, NULL, 'completed'),
    ('acme', 'ORD-1036', 'Trade show banners (3)', 'PO-7731', 'Print job', 5, 41, NULL, 'completed'),
    ('acme', 'ORD-1038', 'Safety data sheets, reprint', 'PO-7740', 'Print job', 4, 21, 2, 'open'),
    ('acme', 'ORD-1039', 'Event posters A1', 'PO-7750', 'Print job', 2, 18, NULL, 'cancelled'),
    ('acme', 'ORD-1040', 'Product labels, roll of 10,000', 'PO-7755', 'Print job', 3, 14, 3, 'open'),
    ('acme', 'ORD-1041', 'Annual report 2026, 800 copies', 'PO-7761', 'Print job', 2, 10, 6, 'open'),
    ('acme', 'ORD-1042', 'Packaging sleeves, matte', 'PO-7768', 'Print job', 1, 6, 12, 'open'),
    ('acme', 'ORD-1043', 'Business cards for new hires', NULL, 'Print job', 1, 3, 9, 'open'),
    ('acme', 'ORD-1044', 'Winter mailer, 12,000 pieces', 'PO-7774', 'Print job', 0, 1, 20, 'open'),
    ('globex', 'SHP-2201', 'Rotterdam → Lyon, 14 pallets', 'GX-5510', 'Freight shipment', 5, 95, NULL, 'completed'),
    ('globex', 'SHP-2205', 'Genoa → Zurich, 3 pallets', 'GX-5524', 'Freight shipment', 4, 9, 0, 'open'),
    ('globex', 'SHP-2207', 'Hamburg → Milan, refrigerated', 'GX-5533', 'Freight shipment', 3, 8, 2, 'open'),
    ('globex', 'SHP-2209', 'Antwerp → Vienna, 6 pallets', 'GX-5541', 'Freight shipment', 2, 5, 3, 'open'),
    ('globex', 'SHP-2210', 'Gdansk → Munich, full truck', 'GX-5547', 'Freight shipment', 1, 2, 4, 'open'),
    ('globex', 'SHP-2211', 'Le Havre → Basel, 2 containers', NULL, 'Freight shipment', 0, 0, 7, 'open');

INSERT INTO orders (customer_id, number, title, reference, workflow_id, stage_id, status, expected_on,
                    tracking_carrier, tracking_number, tracking_url, created_at, updated_at)
SELECT c.id, d.number, d.title, d.reference, w.id, st.id, d.status,
       current_date + d.expected_in,
       CASE WHEN d.reached >= 4 THEN CASE d.workflow WHEN 'Print job' THEN 'DHL Express' ELSE 'Globex Fleet' END END,
       CASE WHEN d.reached >= 4 THEN 'JD0146' || substr(md5(d.number), 1, 10) END,
       CASE WHEN d.reached >= 4 AND d.workflow = 'Print job'
            THEN 'https://www.dhl.com/track?tracking-id=JD0146' || substr(md5(d.number), 1, 10) END,
       now() - make_interval(days => d.age_days),
       now() - make_interval(days => d.age_days)
             + make_interval(secs => d.age_days * 86400.0 * d.reached / (d.reached + 1))
FROM demo_orders d
JOIN customers c ON c.slug = d.slug
JOIN workflows w ON w.name = d.workflow
JOIN workflow_stages st ON st.workflow_id = w.id AND st.position = d.reached;

INSERT INTO order_stage_history (order_id, customer_id, stage_id, stage_name, customer_note, reached_at)
SELECT o.id, o.customer_id, st.id, st.name,
       CASE st.name
           WHEN 'Order received' THEN 'Thank you, we have your order and will be in touch with a proof.'
           WHEN 'Artwork approval' THEN 'The proof is ready: please check it and approve it, or tell us what to change.'
           WHEN 'In production' THEN 'Printing has started.'
           WHEN 'Quality check' THEN 'Colour and finish are being checked against the approved proof.'
           WHEN 'Dispatched' THEN 'On its way; tracking details are below.'
           WHEN 'Booked' THEN 'Shipment booked; a driver is being assigned.'
           WHEN 'Picked up' THEN 'Collected from the sender.'
           WHEN 'In transit' THEN 'On the road.'
           WHEN 'Customs clearance' THEN 'Documents submitted to customs.'
           WHEN 'Out for delivery' THEN 'With the local driver; expect a call 30 minutes before arrival.'
           ELSE NULL
       END,
       o.created_at + make_interval(secs => d.age_days * 86400.0 * st.position / (d.reached + 1))
FROM demo_orders d
JOIN customers c ON c.slug = d.slug
JOIN orders o ON o.customer_id = c.id AND o.number = d.number
JOIN workflow_stages st ON st.workflow_id = o.workflow_id AND st.position <= d.reached;

-- Staff-only remark: must never reach a customer.
INSERT INTO order_internal_notes (history_id, note)
SELECT h.id, 'Paper stock delayed by the supplier; check with the mill before promising a date.'
FROM order_stage_history h JOIN orders o ON o.id = h.order_id
WHERE o.number = 'ORD-1041' AND h.stage_name = 'In production';

-- Invoices: paid, open, overdue.
CREATE TEMP TABLE demo_invoices (slug text, number text, order_number text, issued_ago int, terms int,
                                 status text) ON COMMIT DROP;
INSERT INTO demo_invoices VALUES
    ('acme', 'INV-2026-0388', NULL, 120, 30, 'paid'),
    ('acme', 'INV-2026-0412', 'ORD-1031', 150, 30, 'paid'),
    ('acme', 'INV-2026-0431', 'ORD-1036', 38, 30, 'paid'),
    ('acme', 'INV-2026-0455', 'ORD-1038', 45, 14, 'open'),
    ('acme', 'INV-2026-0470', 'ORD-1040', 12, 30, 'open'),
    ('acme', 'INV-2026-0478', 'ORD-1041', 5, 30, 'open'),
    ('globex', 'INV-2026-0440', 'SHP-2201', 90, 30, 'paid'),
    ('globex', 'INV-2026-0449', 'SHP-2207', 40, 14, 'open'),
    ('globex', 'INV-2026-0466', 'SHP-2209', 4, 30, 'open');

INSERT INTO invoices (customer_id, order_id, number, status, issued_on, due_on, created_at)
SELECT c.id, o.id, d.number, d.status, current_date - d.issued_ago, current_date - d.issued_ago + d.terms,
       now() - make_interval(days => d.issued_ago)
FROM demo_invoices d
JOIN customers c ON c.slug = d.slug
LEFT JOIN orders o ON o.customer_id = c.id AND o.number = d.order_number;

INSERT INTO invoice_lines (invoice_id, customer_id, position, description, quantity, unit_price_cents, amount_cents)
SELECT i.id, i.customer_id, l.position, l.description, l.quantity, l.unit_cents, round(l.quantity * l.unit_cents)
FROM (VALUES
    ('INV-2026-0388', 0, 'Letterheads, 2,000 sheets', 1.0, 48000),
    ('INV-2026-0388', 1, 'Design adjustments (hours)', 2.5, 8500),
    ('INV-2026-0412', 0, 'Spring catalogue, 5,000 copies', 1.0, 1185000),
    ('INV-2026-0412', 1, 'Delivery, 4 pallets', 4.0, 6500),
    ('INV-2026-0431', 0, 'Trade show banners, 3 × 2 m', 3.0, 39000),
    ('INV-2026-0455', 0, 'Safety data sheets, 1,500 copies', 1.0, 64000),
    ('INV-2026-0455', 1, 'Express handling', 1.0, 12000),
    ('INV-2026-0470', 0, 'Product labels, 10,000 on roll', 10.0, 9800),
    ('INV-2026-0470', 1, 'Cutting die', 1.0, 22000),
    ('INV-2026-0478', 0, 'Annual report 2026, deposit 50%', 1.0, 460000),
    ('INV-2026-0440', 0, 'Road freight Rotterdam → Lyon, 14 pallets', 14.0, 9500),
    ('INV-2026-0440', 1, 'Tail-lift delivery', 1.0, 7500),
    ('INV-2026-0449', 0, 'Refrigerated freight Hamburg → Milan', 1.0, 285000),
    ('INV-2026-0449', 1, 'Temperature logging', 1.0, 4500),
    ('INV-2026-0466', 0, 'Road freight Antwerp → Vienna, 6 pallets', 6.0, 11000)
) AS l (number, position, description, quantity, unit_cents)
JOIN invoices i ON i.number = l.number;

UPDATE invoices i SET total_cents = t.total,
                      paid_cents = CASE WHEN i.status = 'paid' THEN t.total ELSE 0 END,
                      paid_at = CASE WHEN i.status = 'paid' THEN i.created_at + interval '12 days' END
FROM (SELECT invoice_id, sum(amount_cents)::bigint AS total FROM invoice_lines GROUP BY invoice_id) t
WHERE t.invoice_id = i.id;
-- One partial payment, so a balance differs from a total.
UPDATE invoices SET paid_cents = 30000 WHERE number = 'INV-2026-0470';

-- Documents, several with more than one version.
CREATE TEMP TABLE demo_documents (slug text, title text, description text, doc_type text, order_number text,
                                  tags text[], versions int, age_days int, file_name text, content_type text,
                                  size_bytes bigint) ON COMMIT DROP;
INSERT INTO demo_documents VALUES
    ('acme', 'Certificate of conformity, June 2026', 'Conformity of the spring catalogue paper and inks.', 'certificate',
     'ORD-1031', '{paper,fsc}', 1, 150, 'certificate-of-conformity-2026-06.pdf', 'application/pdf', 184320),
    ('acme', 'ISO 9001 certificate', 'Our quality management certificate, renewed yearly.', 'certificate',
     NULL, '{quality,iso}', 2, 200, 'iso-9001-certificate.pdf', 'application/pdf', 251904),
    ('acme', 'Master services agreement 2026', 'Framework agreement between Acme and us.', 'contract',
     NULL, '{contract}', 2, 320, 'msa-acme-2026.pdf', 'application/pdf', 412672),
    ('acme', 'Packaging sleeve artwork', 'Print-ready artwork for the matte sleeves.', 'artwork',
     'ORD-1042', '{artwork,packaging}', 3, 6, 'sleeve-artwork.pdf', 'application/pdf', 8912896),
    ('acme', 'Quality report, product labels', 'Colour measurements and adhesion test.', 'report',
     'ORD-1040', '{quality}', 1, 2, 'qc-report-ord-1040.pdf', 'application/pdf', 96256),
    ('acme', 'Purchase order PO-7768', 'Uploaded by Acme.', 'purchase_order',
     'ORD-1042', '{po}', 1, 6, 'PO-7768.pdf', 'application/pdf', 65536),
    ('globex', 'Customs declaration SHP-2207', 'Export declaration for the refrigerated load.', 'report',
     'SHP-2207', '{customs}', 1, 3, 'customs-shp-2207.pdf', 'application/pdf', 120832),
    ('globex', 'Carrier liability certificate', 'Insurance certificate for 2026.', 'certificate',
     NULL, '{insurance}', 1, 60, 'carrier-liability-2026.pdf', 'application/pdf', 143360);

INSERT INTO documents (customer_id, order_id, title, description, doc_type, tags, created_at, updated_at)
SELECT c.id, o.id, d.title, d.description, d.doc_type, d.tags,
       now() - make_interval(days => d.age_days), now() - make_interval(days => d.age_days / (d.versions + 1))
FROM demo_documents d
JOIN customers c ON c.slug = d.slug
LEFT JOIN orders o ON o.customer_id = c.id AND o.number = d.order_number;

INSERT INTO document_versions (document_id, customer_id, version, file_name, content_type, size_bytes,
                               storage_key, uploaded_by, created_at)
SELECT doc.id, doc.customer_id, v, d.file_name, d.content_type, d.size_bytes + (v - 1) * 4096,
       'demo/' || gen_random_uuid(),
       CASE WHEN d.doc_type = 'purchase_order' THEN (SELECT id FROM users WHERE email = 'alice@acme.example')
            ELSE (SELECT id FROM users WHERE email = 'staff@portal.example') END,
       doc.created_at + make_interval(secs => extract(epoch FROM now() - doc.created_at) * (v - 1) / d.versions)
FROM demo_documents d
JOIN customers c ON c.slug = d.slug
JOIN documents doc ON doc.customer_id = c.id AND doc.title = d.title
CROSS JOIN LATERAL generate_series(1, d.versions) AS v;

-- Tickets with conversations.
INSERT INTO tickets (customer_id, number, subject, status, order_id, invoice_id, created_by, created_at, updated_at)
SELECT c.id, t.number, t.subject, t.status, o.id, i.id, u.id,
       now() - make_interval(days => t.age_days), now() - make_interval(hours => t.age_days * 6)
FROM (VALUES
    ('acme', 'TCK-301', 'Delivery address for ORD-1038', 'open', 'ORD-1038', NULL, 'alice@acme.example', 2),
    ('acme', 'TCK-298', 'Copy of invoice INV-2026-0455', 'answered', NULL, 'INV-2026-0455', 'dave@acme.example', 9),
    ('acme', 'TCK-290', 'Colour on the trade show banners', 'closed', 'ORD-1036', NULL, 'alice@acme.example', 30),
    ('globex', 'TCK-305', 'Temperature log for SHP-2207', 'open', 'SHP-2207', NULL, 'bob@globex.example', 1)
) AS t (slug, number, subject, status, order_number, invoice_number, author, age_days)
JOIN customers c ON c.slug = t.slug
JOIN users u ON u.email = t.author
LEFT JOIN orders o ON o.customer_id = c.id AND o.number = t.order_number
LEFT JOIN invoices i ON i.customer_id = c.id AND i.number = t.invoice_number;

INSERT INTO ticket_messages (ticket_id, customer_id, author_id, from_staff, body, created_at)
SELECT t.id, t.customer_id, u.id, m.from_staff, m.body, t.created_at + make_interval(hours => m.after_hours)
FROM (VALUES
    ('TCK-301', 'alice@acme.example', false, 0,
     'Please deliver ORD-1038 to our warehouse at Dock 4 instead of the main office.'),
    ('TCK-298', 'dave@acme.example', false, 0, 'Could you send us a copy of INV-2026-0455? Accounts cannot find it.'),
    ('TCK-298', 'staff@portal.example', true, 3, 'Of course: it is in Invoices, and I have attached it here as well.'),
    ('TCK-290', 'alice@acme.example', false, 0, 'The blue on banner 2 looks darker than the proof.'),
    ('TCK-290', 'staff@portal.example', true, 5, 'We measured it and reprinted banner 2 at no charge.'),
    ('TCK-290', 'alice@acme.example', false, 30, 'Perfect, thank you!'),
    ('TCK-305', 'bob@globex.example', false, 0, 'We need the temperature log for the whole trip for our auditor.')
) AS m (number, author, from_staff, after_hours, body)
JOIN tickets t ON t.number = m.number
JOIN users u ON u.email = m.author;

-- Notifications.
INSERT INTO notifications (customer_id, user_id, kind, title, body, link, read_at, created_at)
SELECT u.customer_id, u.id, n.kind, n.title, n.body,
       CASE WHEN n.order_number IS NOT NULL THEN '/orders/' || o.id END,
       CASE WHEN n.read THEN now() - interval '1 hour' END,
       now() - make_interval(hours => n.age_hours)
FROM (VALUES
    ('alice@acme.example', 'order.stage', 'ORD-1042 is waiting for your artwork approval',
     'Check the proof and approve it, or tell us what to change.', 'ORD-1042', false, 5),
    ('alice@acme.example', 'invoice.overdue', 'Invoice INV-2026-0455 is overdue',
     'It was due on its payment date; please arrange payment or contact us.', NULL, false, 30),
    ('alice@acme.example', 'order.stage', 'ORD-1038 has been dispatched', 'Tracking details are on the order page.',
     'ORD-1038', true, 50),
    ('dave@acme.example', 'ticket.reply', 'New reply on TCK-298', 'Support answered your ticket.', NULL, false, 200),
    ('bob@globex.example', 'order.stage', 'SHP-2207 is in customs clearance', 'Documents were submitted.',
     'SHP-2207', false, 20),
    ('bob@globex.example', 'invoice.overdue', 'Invoice INV-2026-0449 is overdue', 'Please arrange payment.',
     NULL, true, 70)
) AS n (email, kind, title, body, order_number, read, age_hours)
JOIN users u ON u.email = n.email
LEFT JOIN orders o ON o.customer_id = u.customer_id AND o.number = n.order_number;

-- A little history for the activity log.
INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, details, created_at)
SELECT d.customer_id, u.id, u.email, 'document.uploaded', 'document', d.id, jsonb_build_object('title', d.title),
       d.created_at
FROM documents d JOIN users u ON u.email = 'alice@acme.example'
WHERE d.doc_type = 'purchase_order';

INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, details, created_at)
SELECT t.customer_id, t.created_by, u.email, 'ticket.opened', 'ticket', t.id, jsonb_build_object('number', t.number),
       t.created_at
FROM tickets t JOIN users u ON u.id = t.created_by;
