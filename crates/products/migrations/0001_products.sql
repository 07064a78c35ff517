-- The catalogue. Package and price are columns (validation compares them);
-- tags and pictures are JSON arrays in text, read only as part of a product.
-- Dates are RFC 3339 UTC text with a fixed width, so text order is time order.
CREATE TABLE products (
    product_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT,
    price BIGINT NOT NULL,
    width BIGINT NOT NULL,
    length BIGINT NOT NULL,
    height BIGINT NOT NULL,
    weight BIGINT NOT NULL,
    tags TEXT NOT NULL,
    pictures TEXT NOT NULL,
    created_date TEXT NOT NULL,
    modified_date TEXT NOT NULL
);

-- Listing by category pages through product ids in order.
CREATE INDEX products_by_category ON products (category, product_id);
