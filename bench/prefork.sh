#!/bin/sh
# bench/prefork.sh: throughput of prefork serving with 2 workers against 1
# worker, the same server (bench/prefork_server.lua: a keep-alive
# responder whose handler spends ~2 ms of Lua CPU per request), measured
# in the same run, alternating 1 and 2 workers round by round. The target
# on a 2-core machine is >= 1.7x. wrk (-t1 -c32) shares the cores; at a
# few hundred requests/s it takes a few per cent of one. Also prints the
# memory of the master and of each worker once serving: VmRSS, and the
# memory private to the process (Private_Clean + Private_Dirty from
# /proc/PID/smaps_rollup), what an extra worker really costs (the rest
# is shared with the master, copy-on-write).
#
#   bench/prefork.sh [-v] [seconds] [rounds]     defaults: 5 s, 3 rounds
#
# Every process started here is stopped (SIGTERM to the master, which
# drains its workers) on exit, failure or interrupt.
set -e
cd "$(dirname "$0")/.."
verbose=0
case ${1-} in -v) verbose=1; shift ;; esac
dur=${1:-5}
rounds=${2:-3}
command -v wrk >/dev/null || { echo "prefork.sh: wrk not found" >&2; exit 2; }
if [ ! -x build/greenlua ] || [ ! -f build/green/core.so ]; then
  cmake -S . -B build >/dev/null
  cmake --build build >/dev/null
fi
tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mem_of() {
  rss=$(awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null)
  priv=$(awk '/^Private_(Clean|Dirty):/{s += $2} END {print s}' \
         "/proc/$1/smaps_rollup" 2>/dev/null)
  echo "VmRSS ${rss:-?} kB, private ${priv:-?} kB"
}

# round N: start the server with N workers, run wrk, print requests/s.
round() {
  ./build/greenlua bench/prefork_server.lua "$1" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  i=0
  while ! grep -q '^port ' "$tmp/out" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 200 ] || ! kill -0 $pid 2>/dev/null; then
      echo "prefork.sh: the server did not start:" >&2; cat "$tmp/err" >&2; exit 1
    fi
    sleep 0.05
  done
  port=$(awk '/^port /{print $2; exit}' "$tmp/out")
  wrk -t1 -c32 -d1s "http://127.0.0.1:$port/" >/dev/null # warm up
  kids=$(pgrep -P $pid | tr '\n' ' ')
  rps=$(wrk -t1 -c32 -d"${dur}s" "http://127.0.0.1:$port/" |
        awk '/^Requests\/sec:/{print $2}')
  mem="master: $(mem_of $pid)"
  for k in $kids; do mem="$mem; worker: $(mem_of "$k")"; done
  kill $pid; wait $pid 2>/dev/null || true; pid=""
  [ $verbose = 1 ] && echo "workers $1: $rps req/s; $mem" >&2
  echo "$rps"
}

best1=0; best2=0; ratios=""
r=1
while [ $r -le "$rounds" ]; do
  one=$(round 1); two=$(round 2)
  best1=$(echo "$one $best1" | awk '{print ($1 > $2) ? $1 : $2}')
  best2=$(echo "$two $best2" | awk '{print ($1 > $2) ? $1 : $2}')
  ratios="$ratios $(echo "$two $one" | awk '{printf "%.2f", $1 / $2}')"
  r=$((r + 1))
done
ratio=$(echo "$best2 $best1" | awk '{printf "%.2f", $1 / $2}')
median=$(echo "$ratios" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}')
verdict=$(echo "$ratio" | awk '{print ($1 >= 1.7) ? "MET" : "MISSED"}')
echo "prefork: 2 workers ${best2} req/s, floor 1 worker ${best1} req/s, ratio ${ratio} (median ${median}; target >= 1.7) ${verdict}"
