-- message-service schema (SQLite). Kept identical in meaning to
-- migrations/postgres: only types the sqlx Any driver handles on both
-- backends (TEXT, BIGINT, BLOB); times are milliseconds since the epoch and
-- booleans are 0/1 BIGINTs.

CREATE TABLE rooms (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    visibility  TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    last_seq    BIGINT NOT NULL DEFAULT 0,
    -- The sorted pair of user ids of a dm room; NULL for group rooms.
    dm_key      TEXT UNIQUE
);
CREATE INDEX rooms_public ON rooms (visibility, kind, created_at);

CREATE TABLE members (
    room_id        TEXT NOT NULL REFERENCES rooms (id),
    user_id        TEXT NOT NULL,
    username       TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    role           TEXT NOT NULL,
    joined_at      BIGINT NOT NULL,
    last_read_seq  BIGINT NOT NULL DEFAULT 0,
    muted_until    BIGINT,
    muted_forever  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE bans (
    room_id     TEXT NOT NULL REFERENCES rooms (id),
    user_id     TEXT NOT NULL,
    -- NULL: until unbanned.
    until       BIGINT,
    banned_by   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

CREATE TABLE attachments (
    id            TEXT PRIMARY KEY,
    room_id       TEXT NOT NULL REFERENCES rooms (id),
    uploader_id   TEXT NOT NULL,
    filename      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    data          BLOB NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE messages (
    room_id        TEXT NOT NULL REFERENCES rooms (id),
    seq            BIGINT NOT NULL,
    id             TEXT NOT NULL UNIQUE,
    sender_id      TEXT NOT NULL,
    sender_name    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    text           TEXT NOT NULL,
    attachment_id  TEXT REFERENCES attachments (id),
    reply_to       BIGINT,
    client_msg_id  TEXT NOT NULL,
    -- JSON array of mentioned user ids.
    mentions       TEXT NOT NULL DEFAULT '[]',
    created_at     BIGINT NOT NULL,
    edited_at      BIGINT,
    deleted        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, seq),
    UNIQUE (room_id, sender_id, client_msg_id)
);

CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL,
    routing_key  TEXT NOT NULL,
    payload      BLOB NOT NULL,
    created_at   BIGINT NOT NULL
);
