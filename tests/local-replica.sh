#!/usr/bin/env bash
# A streaming replica of this machine's PostgreSQL (127.0.0.1:5432) on
# 127.0.0.1:5433, for the read-replica tests: a second cluster made with
# pg_createcluster and filled by pg_basebackup, replaying the primary's WAL.
# Idempotent: does nothing when the replica already answers. Needs root (or
# sudo) and Debian's postgresql-common, as on the CI machine.
set -euo pipefail

PORT="${REPLICA_PORT:-5433}"
# Up and streaming from the primary: nothing to do. (One that fell too far
# behind — the primary recycled WAL it still needed — is made again.)
streaming="$(psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -Atc \
    "SELECT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')" \
    2>/dev/null || true)"
if [ "$streaming" = "t" ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    SUDO=
    AS_POSTGRES="runuser -u postgres --"
else
    SUDO=sudo
    AS_POSTGRES="sudo -u postgres"
fi
VERSION="$(ls /etc/postgresql | sort -n | tail -1)"
HBA="/etc/postgresql/$VERSION/main/pg_hba.conf"

# The primary must let a replication connection in from loopback.
if ! $SUDO grep -qE '^host\s+replication\s+all\s+127\.0\.0\.1/32\s+trust' "$HBA"; then
    echo "host replication all 127.0.0.1/32 trust" | $SUDO tee -a "$HBA" >/dev/null
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$VERSION" main reload
fi

if [ ! -d "/etc/postgresql/$VERSION/replica" ]; then
    $SUDO pg_createcluster "$VERSION" replica -p "$PORT" >/dev/null
fi
DATA="$($SUDO pg_conftool -s "$VERSION" replica show data_directory)"
$SUDO pg_ctlcluster --skip-systemctl-redirect "$VERSION" replica stop 2>/dev/null || true
$SUDO rm -rf "$DATA"
$SUDO install -d -o postgres -g postgres -m 700 "$DATA"
$AS_POSTGRES pg_basebackup -h 127.0.0.1 -p 5432 -U postgres -D "$DATA" -R -X stream -c fast
# The same clients as the primary, authenticated the same way.
$SUDO cp "$HBA" "/etc/postgresql/$VERSION/replica/pg_hba.conf"
# A replica answers reads while it replays (hot standby, the default) and
# lets a long read finish rather than cancel it for a conflicting replay.
$SUDO pg_conftool "$VERSION" replica set hot_standby on
$SUDO pg_conftool "$VERSION" replica set max_standby_streaming_delay 30s
$SUDO pg_ctlcluster --skip-systemctl-redirect "$VERSION" replica start
for _ in $(seq 1 30); do
    pg_isready -h 127.0.0.1 -p "$PORT" -q && break
    sleep 1
done
pg_isready -h 127.0.0.1 -p "$PORT"
