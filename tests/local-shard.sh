#!/usr/bin/env bash
# A second PostgreSQL cluster on 127.0.0.1:5434, for the tenant-sharding
# tests: a store of its own beside this machine's main cluster (5432), made
# with pg_createcluster, with a database `test`. Idempotent.
# Needs root (or sudo) and Debian's postgresql-common, as on the CI machine.
set -euo pipefail

PORT="${SHARD_PORT:-5434}"
if ! pg_isready -h 127.0.0.1 -p "$PORT" -q; then
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    VERSION="$(ls /etc/postgresql | sort -n | tail -1)"

    if [ ! -d "/etc/postgresql/$VERSION/shard" ]; then
        $SUDO pg_createcluster "$VERSION" shard -p "$PORT" >/dev/null
        # The same clients as the main cluster, authenticated the same way.
        $SUDO cp "/etc/postgresql/$VERSION/main/pg_hba.conf" "/etc/postgresql/$VERSION/shard/pg_hba.conf"
    fi
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$VERSION" shard start ||
        echo "pg_ctlcluster: exit $? (a cluster already starting); waiting for it"
    for _ in $(seq 1 60); do
        pg_isready -h 127.0.0.1 -p "$PORT" -q && break
        sleep 1
    done
    pg_isready -h 127.0.0.1 -p "$PORT"
fi
# The tests' database, as on the main cluster.
if [ "$(psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = 'test'")" = 0 ]; then
    psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qc "CREATE DATABASE test"
fi
