#!/usr/bin/env bash
# memory.sh: the service's memory over a long ingest, as an operator runs it.
#
# ledgerd runs as a process of its own with a Postgres read model (a fresh
# database, dropped at the end); feedsim's feed publishes to it at a steady
# rate (RATE, or less when the machine cannot keep it) until EVENTS are
# applied; at every MARK events applied (ledger_projector_applied_seq) the
# script reads ledgerd's RSS (process_resident_memory_bytes) and its Go heap
# from /metrics. It runs twice: with ledgerd's embedded nats-server, and with
# an external nats-server process (built from the module's nats-server), so
# that the second RSS is the ledger's own.
#
#   bench/memory.sh                      # 5M events at 20,000/s, marks every 500k
#   EVENTS=1000000 bench/memory.sh       # a shorter run
#   SETUPS=external bench/memory.sh      # one setup only
#
# Prints one line per mark: setup, events applied, RSS MB, heap in use MB,
# heap goal MB (the collector's next target: about twice the live heap at
# GOGC=100), orders held by the projector.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-5000000}
RATE=${RATE:-20000}
MARK=${MARK:-500000}
SETUPS=${SETUPS:-"embedded external"}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
export PGOPTIONS=--client-min-messages=warning
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/ledgerd" ./cmd/ledgerd
go build -o "$work/feedsim" ./cmd/feedsim
go build -o "$work/nats-server" github.com/nats-io/nats-server/v2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metric() { # metric NAME: its value on ledgerd's /metrics, 0 when absent
  { curl -sf "http://$http/metrics" || true; } | awk -v n="$1" '$1==n {printf "%.0f\n", $2; f=1} END {if (!f) print 0}'
}

run() {
  local setup=$1 db="memrun_$$_$1" nport hport natsurl nats=
  nport=$(free_port) hport=$(free_port) http=127.0.0.1:$hport
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  local env=(DATABASE_URL="$PGURL/$db?sslmode=disable" LEDGER_HTTP_ADDR="$http" LEDGER_DATA_DIR="$work/$setup-data")
  if [ "$setup" = external ]; then
    "$work/nats-server" -js -a 127.0.0.1 -p "$nport" -sd "$work/nats-$setup" >"$work/nats.log" 2>&1 &
    nats=$!
    pids+=($nats)
    env+=(NATS_URL="nats://127.0.0.1:$nport")
  else
    env+=(LEDGER_NATS_LISTEN="127.0.0.1:$nport")
  fi
  natsurl="nats://127.0.0.1:$nport"
  sleep 1
  env "${env[@]}" "$work/ledgerd" >"$work/ledgerd-$setup.log" 2>&1 &
  local ledgerd=$!
  pids+=($ledgerd)
  for _ in $(seq 1 60); do curl -sf "http://$http/healthz" >/dev/null && break; sleep 1; done
  "$work/feedsim" -nats-url "$natsurl" -rate "$RATE" -duration 24h >"$work/feed-$setup.log" 2>&1 &
  local feed=$!
  pids+=($feed)
  local next=$MARK applied=0
  while [ "$next" -le "$EVENTS" ]; do
    applied=$(metric ledger_projector_applied_seq)
    if [ "$applied" -ge "$next" ]; then
      printf '%-9s %9d  rss %6.0f MB  heap %6.0f MB  goal %6.0f MB  orders held %d\n' "$setup" "$applied" \
        "$(($(metric process_resident_memory_bytes) / 1048576))" "$(($(metric go_memstats_heap_inuse_bytes) / 1048576))" \
        "$(($(metric go_memstats_next_gc_bytes) / 1048576))" "$(metric ledger_projector_orders_held)"
      next=$((next + MARK))
    elif ! kill -0 "$ledgerd" 2>/dev/null; then
      echo "ledgerd ($setup) died; its log:" >&2; tail -20 "$work/ledgerd-$setup.log" >&2; exit 1
    elif ! kill -0 "$feed" 2>/dev/null; then
      echo "feedsim ($setup) stopped at $applied events applied; its log:" >&2; tail -5 "$work/feed-$setup.log" >&2; exit 1
    fi
    sleep 1
  done
  kill "$feed" 2>/dev/null || true
  kill -TERM "$ledgerd"; wait "$ledgerd" || true
  if [ -n "$nats" ]; then kill "$nats"; wait "$nats" || true; fi
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $db"
}

for s in $SETUPS; do run "$s"; done
