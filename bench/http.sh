#!/bin/sh
# bench/http.sh: raw keep-alive HTTP responder under wrk, server CPU time
# per request, greenlua (bench/http_raw.lua) against the same responder in
# C on libuv (bench/c_responder.c), measured in the same run, interleaved
# round by round (C, greenlua, C, greenlua, ...).
#
#   bench/http.sh [-v] [seconds] [rounds]     defaults: 5 s, 3 rounds
#
# Both servers bind 127.0.0.1 on a free port and are pinned to core 0
# (taskset -c 0); wrk runs pinned to core 1 (taskset -c 1 wrk -t1 -c50).
# Server CPU = utime + stime from /proc/PID/stat before and after each wrk
# run (clock ticks, 10 ms); requests = wrk's "N requests in". The figure
# per side is the best round (least CPU per request); the median ratio is
# printed too. Needs wrk, taskset, cc, pkg-config and libuv's headers.
# Every process started here is killed on exit, failure or interrupt.
set -e
cd "$(dirname "$0")/.."
verbose=0
case ${1-} in -v) verbose=1; shift ;; esac
dur=${1:-5}
rounds=${2:-3}

for tool in wrk taskset cc pkg-config; do
  command -v $tool >/dev/null || { echo "http.sh: $tool not found" >&2; exit 2; }
done
if [ ! -x build/greenlua ] || [ ! -f build/green/core.so ]; then
  cmake -S . -B build >/dev/null
  cmake --build build >/dev/null
fi
# Always rebuilt: a second, and never stale.
# shellcheck disable=SC2046
cc -O2 -Wall -o build/c_responder bench/c_responder.c \
  $(pkg-config --cflags --libs libuv) -lhttp_parser
ncpu=$(nproc)
if [ "$ncpu" -lt 2 ]; then
  echo "http.sh: needs 2 cores (server on core 0, wrk on core 1)" >&2
  exit 2
fi

tmp=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for p in $pids; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: run CMD on core 0 in the background, wait for its
# "port N" line; sets NAME_pid and NAME_port.
start() {
  name=$1; shift
  taskset -c 0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pid=$!
  pids="$pids $pid"
  i=0
  while ! grep -q '^port ' "$tmp/$name.out" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $pid 2>/dev/null; then
      echo "http.sh: $name did not start:" >&2
      cat "$tmp/$name.err" >&2
      exit 1
    fi
    sleep 0.05
  done
  eval "${name}_pid=$pid"
  eval "${name}_port=$(awk '/^port /{print $2; exit}' "$tmp/$name.out")"
}

# utime + stime in clock ticks (fields 14 and 15; the fields after the
# parenthesised command name, which may hold spaces, are counted from it).
cpu_ticks() {
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13, $12}'
}

hz=$(getconf CLK_TCK)

# measure NAME: one wrk run against NAME's server; prints
# "us_per_req requests req_per_s cpu_share user_us_per_req".
measure() {
  who=$1
  eval "pid=\$${who}_pid port=\$${who}_port"
  # shellcheck disable=SC2046  # two numbers, split on purpose
  set -- $(cpu_ticks "$pid"); t0=$1 u0=$2
  # shellcheck disable=SC2154  # port: set by the eval above
  taskset -c 1 wrk -t1 -c50 -d"${dur}s" "http://127.0.0.1:$port/" \
    >"$tmp/wrk.out" 2>&1 || { cat "$tmp/wrk.out" >&2; exit 1; }
  # shellcheck disable=SC2046
  set -- $(cpu_ticks "$pid"); t1=$1 u1=$2
  reqs=$(awk '/requests in/{print $1; exit}' "$tmp/wrk.out")
  if grep -qE 'Socket errors|Non-2xx' "$tmp/wrk.out"; then
    echo "http.sh: wrk reported errors against $who:" >&2
    grep -E 'Socket errors|Non-2xx' "$tmp/wrk.out" >&2
  fi
  if [ -z "$reqs" ] || [ "$reqs" -eq 0 ]; then
    echo "http.sh: no requests completed against $who" >&2
    cat "$tmp/wrk.out" >&2
    exit 1
  fi
  awk -v t=$((t1 - t0)) -v u=$((u1 - u0)) -v hz="$hz" -v n="$reqs" -v d="$dur" \
    'BEGIN { printf "%.3f %d %.0f %.2f %.3f\n", t / hz * 1e6 / n, n, n / d, t / hz / d, u / hz * 1e6 / n }'
}

start c build/c_responder 0
start green ./build/greenlua bench/http_raw.lua 0 serve

# One short untimed run each first (warms the allocator, the page cache
# of the Lua files, the kernel's socket caches).
saved=$dur; dur=1
measure c >/dev/null; measure green >/dev/null
dur=$saved

: >"$tmp/c.res"; : >"$tmp/green.res"
r=1
while [ $r -le "$rounds" ]; do
  for side in c green; do
    res=$(measure $side)
    echo "$res" >>"$tmp/$side.res"
    if [ $verbose = 1 ]; then
      echo "$res" | awk -v s=$side -v r=$r '{ printf "round %d %-5s %.2f us/req (user %.2f, sys %.2f)  %d requests  %.0f req/s  server CPU %.0f%%\n", r, s, $1, $5, $1 - $5, $2, $3, $4 * 100 }'
    fi
  done
  r=$((r + 1))
done

best() { sort -n "$1" | awk 'NR == 1 { print $1 }'; }
g=$(best "$tmp/green.res")
c=$(best "$tmp/c.res")
# median of the per-round ratios
med=$(paste -d' ' "$tmp/green.res" "$tmp/c.res" | awk '{ print $1 / $6 }' | sort -n |
  awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
# user time alone (the kernel's share is the same work on both sides)
gu=$(awk '{ print $5 }' "$tmp/green.res" | sort -n | head -1)
cu=$(awk '{ print $5 }' "$tmp/c.res" | sort -n | head -1)
awk -v g="$g" -v c="$c" -v m="$med" -v r="$rounds" -v d="$dur" -v gu="$gu" -v cu="$cu" 'BEGIN {
  ratio = g / c
  printf "http_raw: greenlua %.2f us/req, C %.2f us/req, ratio %.2f (target <= 1.25) %s\n",
    g, c, ratio, ratio <= 1.25 ? "MET" : "MISSED"
  printf "  best of %d rounds of %s s each; median ratio over rounds %.2f; user time alone: greenlua %.2f us/req, C %.2f us/req, ratio %.2f\n", r, d, m, gu, cu, gu / cu
}'
