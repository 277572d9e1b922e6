#!/bin/sh
# Starts the local PostgreSQL (and Redis) the test suite uses, when they are installed but down.
# Tests that need PostgreSQL skip when it is absent, except under CI=true, where they must run.
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if command -v pg_isready >/dev/null 2>&1 && ! pg_up; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        echo "starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do pg_up && break; sleep 1; done
    fi
fi
if command -v redis-cli >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    if command -v redis-server >/dev/null 2>&1; then
        echo "starting Redis"
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
            --dir /tmp --logfile /tmp/redis-ci.log || true
    fi
fi
exit 0
