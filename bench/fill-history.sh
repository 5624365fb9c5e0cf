#!/usr/bin/env bash
# Fills a new public room with COUNT messages by a direct SQL bulk insert
# into message-service's database, far faster than sending them (a million
# rows take seconds instead of the hours 20 sends/s per connection allow).
# Prints the room id; then measure with
#
#   loadgen history --room ROOM_ID --fill 0 --gateway ...
#
# (loadgen joins the public room over HTTP like any client).
#
#   bench/fill-history.sh DATABASE COUNT
#
# DATABASE is a SQLite file (the embedded `chat`: DATA_DIR/message.db; stop
# chat first, or expect "database is locked" while it writes) or a
# postgres:// URL (MESSAGE_DATABASE_URL of message-service). The rows follow
# message-service/migrations: seq 1..COUNT, gap-free, and rooms.last_seq =
# COUNT, so the server continues at COUNT + 1.
set -euo pipefail

if [ "$#" -ne 2 ]; then
    sed -n '2,17p' "$0" >&2
    exit 2
fi
database="$1" count="$2"
case "$count" in ''|*[!0-9]*) echo "COUNT must be a number" >&2; exit 2 ;; esac
room="$(python3 -c 'import uuid; print(uuid.uuid4())')"
now_ms="$(($(date +%s) * 1000))"

# The room and its messages in one transaction. The sender is a made-up
# user id: history shows sender ids and names as stored.
case "$database" in
    postgres://*|postgresql://*)
        psql -q -v ON_ERROR_STOP=1 "$database" <<SQL
BEGIN;
INSERT INTO rooms (id, name, kind, visibility, owner_id, created_at, last_seq)
VALUES ('$room', 'history $count', 'group', 'public', 'bench-filler', $now_ms, $count);
INSERT INTO messages (room_id, seq, id, sender_id, sender_name, kind, text, client_msg_id, created_at)
SELECT '$room', s, md5('$room' || s), 'bench-filler', 'bench filler', 'text',
       'history filler message ' || s, 'fill-' || s, $now_ms - ($count - s)
FROM generate_series(1, $count) AS s;
COMMIT;
SQL
        ;;
    *)
        [ -f "$database" ] || { echo "no SQLite database at $database" >&2; exit 1; }
        sqlite3 -bail "$database" <<SQL
.timeout 10000
BEGIN;
INSERT INTO rooms (id, name, kind, visibility, owner_id, created_at, last_seq)
VALUES ('$room', 'history $count', 'group', 'public', 'bench-filler', $now_ms, $count);
WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < $count)
INSERT INTO messages (room_id, seq, id, sender_id, sender_name, kind, text, client_msg_id, created_at)
SELECT '$room', n, lower(hex(randomblob(16))), 'bench-filler', 'bench filler', 'text',
       'history filler message ' || n, 'fill-' || n, $now_ms - ($count - n)
FROM s;
COMMIT;
SQL
        ;;
esac
echo "$room"
