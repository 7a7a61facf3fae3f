#!/bin/sh
# Run every benchmark under ./build/greenlua (building first if needed)
# and print each one's result line (the line with the ratio and target).
#   bench/run.sh          full sizes (about 45 s on 2 cores)
#   bench/run.sh -v       every line each benchmark prints
#   bench/run.sh --short  reduced sizes (a quick smoke run, a few seconds)
#   bench/run.sh --net    also the socket benchmarks: bench/http.sh (wrk,
#                         about 40 s; needs wrk and 2 cores) and
#                         bench/idle.lua (10,000 idle connections, a few s)
set -e
cd "$(dirname "$0")/.."
verbose=0
short=0
net=0
for a in "$@"; do
  case $a in
    -v) verbose=1 ;;
    --short) short=1 ;;
    --net) net=1 ;;
    *) echo "usage: bench/run.sh [-v] [--short] [--net]" >&2; exit 2 ;;
  esac
done
if [ ! -x build/greenlua ] || [ ! -f build/green/core.so ]; then
  cmake -S . -B build >/dev/null
  cmake --build build >/dev/null
fi
run() {
  if [ $verbose = 1 ]; then
    ./build/greenlua "$@"
  else
    # The summary lines: "name: greenlua ..., ratio ... (target ...)",
    # and spawn's cold-start ratio.
    ./build/greenlua "$@" | grep -E '^[a-z]+: (greenlua .*target|cold)'
  fi
}
if [ $short = 1 ]; then
  run bench/switch.lua 200000 3
  run bench/spawn.lua 20000 3
  run bench/million.lua 100000
  run bench/churn.lua 200000
  run bench/process.lua 50 3
  run bench/cstack.lua 2000 20000 2
else
  run bench/switch.lua
  run bench/spawn.lua
  run bench/million.lua
  run bench/churn.lua
  run bench/process.lua
  run bench/cstack.lua
fi
if [ $net = 1 ]; then
  # http.sh prints its own summary (two lines); -v adds every round.
  v=""
  [ $verbose = 1 ] && v=-v
  if [ $short = 1 ]; then
    bench/http.sh $v 1 1
    run bench/idle.lua 2000 serve
  else
    bench/http.sh $v
    if [ $verbose = 1 ]; then
      ./build/greenlua bench/idle.lua
    else
      ./build/greenlua bench/idle.lua | grep -E '^idle: '
    fi
  fi
fi
