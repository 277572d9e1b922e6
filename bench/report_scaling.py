"""The report's fixed section on measuring scaling by hand on a machine with more cores than this one.

On the 2-core benchmark machine the load generator and the mock share one core, so throughput cannot
show what a second worker or replica adds; `bench.run` measures CPU per turn instead. These are the
commands for a larger machine, written for 16 cores; change the core lists to fit.
"""

from __future__ import annotations

ENVIRONMENT = """\
export SUPPORTBOT_OPENAI_BASE_URL=http://127.0.0.1:9000/v1 SUPPORTBOT_OPENAI_API_KEY=sk-bench \\
  SUPPORTBOT_MODEL=gpt-4o-mini SUPPORTBOT_LOG_LEVEL=WARNING SUPPORTBOT_MAX_TURNS=100000 \\
  SUPPORTBOT_RATE_LIMIT_PER_VISITOR=0 SUPPORTBOT_RATE_LIMIT_PER_IP=0 SUPPORTBOT_RATE_LIMIT_CONVERSATIONS_PER_IP=0 \\
  SUPPORTBOT_PROMPTS_DIR=$PWD/prompts SUPPORTBOT_KNOWLEDGE_DIR=$PWD/knowledge \\
  SUPPORTBOT_SECRET_KEY=$(openssl rand -hex 32) SUPPORTBOT_ADMIN_TOKEN=$(openssl rand -hex 16)"""

UPSTREAM = """\
# the mock upstream (50 ms JSON answers; streams: 100 ms to the first of 20 chunks 25 ms apart), cores 8-11
MOCK_LATENCY_MS=50 taskset -c 8-11 .venv/bin/uvicorn bench.mock_upstream:app --port 9000 --workers 4 \\
  --no-access-log --log-level warning --backlog 4096 --timeout-keep-alive 120 &
# the floor, for reference: the minimal relay, one worker on core 0
RELAY_BASE_URL=http://127.0.0.1:9000/v1 taskset -c 0 .venv/bin/uvicorn bench.relay:app --port 8100 \\
  --no-access-log --log-level warning & RELAY=$!
taskset -c 12-15 .venv/bin/python -m bench.loadgen --port 8100 --concurrency 150 --turns 10000 --pids $RELAY
kill $RELAY"""

WORKERS = """\
export SUPPORTBOT_DATA_DIR=/tmp/sb-scale && mkdir -p $SUPPORTBOT_DATA_DIR && supportbot db upgrade
# one worker on one core, then N workers on N cores (here 2 and 4), each at 150 conversations per worker
taskset -c 0 supportbot serve --port 8000 --workers 1 & SB=$!
taskset -c 12-15 .venv/bin/python -m bench.loadgen --port 8000 --concurrency 150 --turns 10000 --pids $SB
kill $SB
taskset -c 0-1 supportbot serve --port 8000 --workers 2 & SB=$!
taskset -c 12-15 .venv/bin/python -m bench.loadgen --port 8000 --concurrency 300 --turns 20000 --pids $SB
kill $SB
taskset -c 0-3 supportbot serve --port 8000 --workers 4 & SB=$!
taskset -c 12-15 .venv/bin/python -m bench.loadgen --port 8000 --concurrency 600 --turns 40000 --pids $SB
kill $SB"""

REPLICAS = """\
createdb -h 127.0.0.1 -U postgres sb_scale
export SUPPORTBOT_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/sb_scale
supportbot db upgrade
taskset -c 0 supportbot serve --port 8001 & R1=$!
taskset -c 1 supportbot serve --port 8002 & R2=$!
# deploy/nginx.conf with only its ports, upstreams and paths changed (as tests/test_deploy_nginx.py does)
mkdir -p /tmp/nginx-scale/log /tmp/nginx-scale/cache
sed -e 's/supportbot-1:8000/127.0.0.1:8001/; s/supportbot-2:8000/127.0.0.1:8002/; /supportbot-3:8000/d' \\
  -e "s/^user nginx;/user $(id -un);/" -e 's#/var/run/nginx.pid#/tmp/nginx-scale/nginx.pid#' \\
  -e 's#/var/log/nginx/#/tmp/nginx-scale/log/#; s#/var/cache/nginx/#/tmp/nginx-scale/cache/#' \\
  deploy/nginx.conf > /tmp/nginx-scale/nginx.conf
taskset -c 4-5 nginx -c /tmp/nginx-scale/nginx.conf -g 'daemon off;' & NGINX=$!
# the replicas' CPU per turn; nginx and the PostgreSQL server counted apart (other_cpu_per_turn_ms)
taskset -c 12-15 .venv/bin/python -m bench.loadgen --port 8080 --concurrency 300 --turns 20000 \\
  --pids $R1,$R2 --other-pids $NGINX,$(pgrep -o -x postgres)
# the baseline for the replicas: one replica on the same database, straight (no nginx)
kill $R2
taskset -c 12-15 .venv/bin/python -m bench.loadgen --port 8001 --concurrency 150 --turns 10000 \\
  --pids $R1 --other-pids $(pgrep -o -x postgres)"""


def scaling_section() -> list[str]:
    """Markdown lines: how to measure workers and replicas where cores are not the limit."""
    return [
        "## How to measure scaling on a larger machine", "",
        "This run cannot show throughput scaling: on 2 cores the load generator and the mock upstream share "
        "one core, so the table above compares CPU per turn of `serve --workers 2` with one worker instead. On "
        "a machine with spare cores, give every server its own cores with `taskset`, keep the mock upstream "
        "and the load generator on others, and look at two figures of each run's output: `turns_per_s` "
        "(should grow with the cores the service has) and `cpu_per_turn_ms` (CPU of the given process trees "
        "per turn served; the target is within 1.1x of one worker's). `python -m bench.loadgen` with "
        "arguments runs one closed-loop load (`--rate R` for an open loop, `--stream` for Server-Sent Events) "
        "against a server started by hand and prints the same figures as the harness. Check that the load "
        "generator is not the limit: `client_cpu_per_turn_ms` x `turns_per_s` must stay well below 1000 ms "
        "per second. Written for 16 cores; run from the repository root with the virtual environment's "
        "`supportbot` on `PATH`.", "",
        "Environment for every supportbot below (rate limits off, as in `bench.run`; one secret key so "
        "replicas accept each other's tokens):", "", "```sh", ENVIRONMENT, "```", "",
        "The mock upstream and, for reference, the floor:", "", "```sh", UPSTREAM, "```", "",
        "Workers (SQLite, one data directory):", "", "```sh", WORKERS, "```", "",
        "Two replicas on one PostgreSQL database behind nginx with `deploy/nginx.conf` (stop the serve "
        "processes above first):", "", "```sh", REPLICAS, "```", "",
        "Streamed turns: the same commands with `--stream`. Many concurrent streamed conversations: "
        "`--stream --concurrency 200` against the relay and supportbot on one core each.", "",
    ]
