-- Wallet sign-in cookies are signed claims the server keeps no copy of; a
-- logout writes the cookie's id here so it stops working at once, not at
-- its expiry. A row is useless after the cookie's own expiry.
CREATE TABLE revoked_cookies (
    id         TEXT PRIMARY KEY,
    expires_ms INTEGER NOT NULL
);
