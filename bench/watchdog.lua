--- bench/watchdog.lua: what the hub's watchdog costs and what the time
-- slice buys (issue 9), each as a ratio within one run.
--
-- 1. sleep(0) switches per second with blocking detection on (the
--    default) against off, rounds alternating in one process: the
--    detection's cost on the switch path (target: within noise, ~1.0).
-- 2. A heartbeat every 20 ms beside a CPU burst of 1 s, with the slice at
--    10 ms: its largest lateness (the gap beyond its interval), as a
--    ratio of the slice (target: a few slices at most); and the same
--    without the slice, for contrast.
-- (The HTTP side: bench/http.sh with GREENLUA_DETECTION=off against the
-- default run; see bench/README.md.)
--
-- Usage: greenlua bench/watchdog.lua [switches per round] [rounds]
local green = require "green"

local N = math.tointeger(tonumber(arg and arg[1])) or 1000000
local ROUNDS = math.tointeger(tonumber(arg and arg[2])) or 5
local clock = os.clock

local function switches(n)
  local half = n // 2
  local function pingpong()
    for _ = 1, half do green.sleep(0) end
  end
  local t0 = clock()
  local a, b = green.spawn(pingpong), green.spawn(pingpong)
  a:wait()
  b:wait()
  return clock() - t0
end

local best = { on = math.huge, off = math.huge }
for _ = 1, ROUNDS do
  green.debug.hub_blocking_detection(true, 1)
  best.on = math.min(best.on, switches(N))
  green.debug.hub_blocking_detection(false)
  best.off = math.min(best.off, switches(N))
end
green.debug.hub_blocking_detection(true, 1)
local ratio = best.off / best.on -- switches/s on over off
print(string.format("watchdog: switches with detection on %.2fM/s, off "
                    .. "%.2fM/s, ratio %.3f (target within noise of 1.0)",
                    N / best.on / 1e6, N / best.off / 1e6, ratio))

-- The heartbeat's largest lateness beside a 1 s CPU burst.
local INTERVAL, SLICE = 0.02, 0.01
local function lateness(slice)
  green.debug.time_slice(slice)
  local late, stop = 0, false
  local hb = green.spawn(function()
    local last = green.now()
    while not stop do
      green.sleep(INTERVAL)
      local now = green.now()
      late = math.max(late, now - last - INTERVAL)
      last = now
    end
  end)
  green.sleep(INTERVAL * 2)
  local t0 = clock()
  local burst = green.spawn(function()
    local n = 0
    while clock() - t0 < 1 do n = n + 1 end
  end)
  burst:wait()
  stop = true
  hb:wait()
  green.debug.time_slice(nil)
  return late
end
local with = lateness(SLICE)
local without = lateness(nil)
print(string.format("watchdog: heartbeat lateness beside a 1 s burst: %.1f "
                    .. "ms with a %d ms slice, ratio %.1f of the slice "
                    .. "(target <= 3); %.0f ms without", with * 1e3,
                    SLICE * 1e3, with / SLICE, without * 1e3))
