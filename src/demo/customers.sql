INSERT INTO customers (name, slug) VALUES ('Acme Manufacturing', 'acme'), ('Globex Logistics', 'globex');

INSERT INTO workflows (name) VALUES ('Print job'), ('Freight shipment');

INSERT INTO workflow_stages (workflow_id, position, name, awaits_customer, terminal)
SELECT w.id, s.position, s.name, s.awaits, s.terminal
FROM workflows w
JOIN (VALUES
    ('Print job', 0, 'Order received', false, false),
    ('Print job', 1, 'Artwork approval', true, false),
    ('Print job', 2, 'In production', false, false),
    ('Print job', 3, 'Quality check', false, false),
    ('Print job', 4, 'Dispatched', false, false),
    ('Print job', 5, 'Delivered', false, true),
    ('Freight shipment', 0, 'Booked', false, false),
    ('Freight shipment', 1, 'Picked up', false, false),
    ('Freight shipment', 2, 'In transit', false, false),
    ('Freight shipment', 3, 'Customs clearance', false, false),
    ('Freight shipment', 4, 'Out for delivery', false, false),
    ('Freight shipment', 5, 'Delivered', false, true)
) AS s (workflow, position, name, awaits, terminal) ON s.workflow = w.name;

-- Anyone with an @acme.example address may register as an Acme member (after confirming it).
INSERT INTO customer_domains (domain, customer_id) SELECT 'acme.example', id FROM customers WHERE slug = 'acme';
