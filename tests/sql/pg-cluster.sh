# Sourced by the PostgreSQL tests (pg-e2e.sh, pg-bench.sh): a throwaway
# PostgreSQL cluster, owned by the user postgres, in a directory of the
# caller's, on 127.0.0.1 at a free port, with scram-sha-256 and a random
# password. Installs Debian's postgresql when it is missing (needs root).
#
#   pg_cluster_start DIR   sets PGBIN PGDATA PORT PW, exports PGPASSWORD
#   pg_cluster_stop        stops it (call it from the caller's EXIT trap)
#   psql_ DB [ARGS...]     psql as postgres over TCP, unaligned, stop on error
#   free_port              prints a free TCP port on 127.0.0.1

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pg_cluster_start() {
    local dir=$1
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v psql >/dev/null; then
        echo "installing postgresql"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    chmod 755 "$dir"
    PGDATA=$dir/data
    PORT=$(free_port)
    PW="pw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    mkdir -p "$PGDATA" "$dir/sock"
    printf '%s\n' "$PW" >"$dir/pwfile"
    chown -R postgres "$dir"
    su postgres -s /bin/sh -c "$PGBIN/initdb -D '$PGDATA' -U postgres --auth=scram-sha-256 --pwfile='$dir/pwfile' -E UTF8 --locale=C.UTF-8" >"$dir/initdb.log"
    su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D '$PGDATA' -l '$dir/server.log' -w -o \"-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories='$dir/sock' -c fsync=off\" start" >/dev/null
    export PGPASSWORD=$PW
    echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT"
}

pg_cluster_stop() {
    if [ -n "${PGDATA:-}" ] && [ -f "$PGDATA/postmaster.pid" ]; then
        su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D '$PGDATA' -m immediate stop" >/dev/null 2>&1 || true
    fi
}

psql_() {
    local db=$1
    shift
    psql -h 127.0.0.1 -p "$PORT" -U postgres -d "$db" -v ON_ERROR_STOP=1 -qAtX "$@"
}
