#!/bin/sh
# Throwaway PostgreSQL for tests and debugging (the pytest fixture in tests/pg.py does the same
# by itself; use this to keep a server between runs or to point TVCAPTION_TEST_PG_URL at it).
#   scripts/pg_test_server.sh start DIR [PORT]   prints the URL (postgresql+psycopg://...)
#   scripts/pg_test_server.sh stop DIR
# As root, the server runs as the unprivileged user $PG_USER (default nobody).
set -eu
cmd=${1:?usage: $0 start|stop DIR [PORT]}
dir=${2:?usage: $0 start|stop DIR [PORT]}
port=${3:-54329}
bin=${TVCAPTION_PG_BIN:-$(dirname "$(command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)")}
user=${PG_USER:-nobody}
as_user() { if [ "$(id -u)" = 0 ]; then setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups "$@"; else "$@"; fi; }
case $cmd in
start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown "$user" "$dir"
    [ -d "$dir/data" ] || as_user "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
        --no-locale --no-sync --no-instructions >"$dir/initdb.log"
    as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -o "-c listen_addresses=127.0.0.1 \
        -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
    echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres" ;;
stop)
    as_user "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
*)
    echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
