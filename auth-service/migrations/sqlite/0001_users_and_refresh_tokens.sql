-- Users and their refresh tokens. Times are milliseconds since the Unix
-- epoch and booleans are 0/1 BIGINT, so that rows decode the same way
-- through sqlx's Any driver on SQLite and PostgreSQL.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,           -- UUID v7, text
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,              -- argon2id PHC string
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    disabled      BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,              -- hex SHA-256 of the token
    family_id  TEXT NOT NULL,                 -- shared by every rotation of one sign-in
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,                        -- set when rotated
    revoked_at BIGINT,                        -- set on logout, reuse or password change
    created_at BIGINT NOT NULL
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
