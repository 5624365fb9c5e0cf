#!/bin/bash
# First-start initialisation of the PostgreSQL used by docker-compose.yml and
# the dev overlay: one database per service, each owned by its own role, so
# auth-service and message-service cannot read each other's tables. Each
# service creates its own schema (migrations) on start-up.
#
# Run by the postgres image's entrypoint from /docker-entrypoint-initdb.d/,
# as the superuser, only when the data directory is new. Passwords come from
# AUTH_DB_PASSWORD and MESSAGE_DB_PASSWORD.
set -euo pipefail

create() {
    local name="$1" password="$2"
    [ -n "$password" ] || { echo "init-databases: empty password for $name" >&2; exit 1; }
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -v name="$name" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
}

create chat_auth "${AUTH_DB_PASSWORD:-}"
create chat_message "${MESSAGE_DB_PASSWORD:-}"
