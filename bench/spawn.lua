--- bench/spawn.lua: spawn and park 100,000 green threads on an Event (each
-- runs until it blocks in `ev:wait()`), against a floor measured in the
-- same run: coroutine.create plus a first resume (to a coroutine.yield) of
-- 100,000 coroutines kept alive in a table. Threads parked in the bare
-- green.core.suspend() are measured too, for reference (the cost of the
-- runtime alone, without a primitive).
--
-- Two kinds of figures:
--   cold: one round in a fresh process of the same interpreter for each
--     side (re-run through arg[-1]): dominated by page faults and malloc
--     growing the heap, as a server's first burst would be. The target
--     ratio is this one; the sides run interleaved, best of COLD runs.
--     Each cold run also reports its VmRSS growth per thread (RSS delta
--     over the process before the burst, divided by N): the target
--     memory figure.
--   warm: rounds in one process after a warm-up round, so the allocator
--     reuses memory it already has (the runtime's own cost), and bytes
--     per thread from collectgarbage("count") after a full collection.
--
-- Usage: greenlua bench/spawn.lua [threads] [warm rounds] [cold runs]

local stock = {
  create = coroutine.create,
  resume = coroutine.resume,
  yield = coroutine.yield,
}
local stock_from = "saved before require"

local green = require "green"
-- Spawning 100,000 threads in one loop keeps the hub while they wait to
-- run: that is the measurement, not a fault to report.
green.debug.hub_blocking_detection(false)

local N = math.tointeger(tonumber(arg and arg[1])) or 100000
local ROUNDS = math.tointeger(tonumber(arg and arg[2])) or 5
local COLD = math.tointeger(tonumber(arg and arg[3])) or 3
local MODE = arg and arg[4] -- internal: "cold-floor|event|suspend"
local clock = os.clock
local core = green.core
local spawn, suspend, wake = green.spawn, core.suspend, core.wake

-- Under the greenlua executable green is loaded before the script: take
-- the stock functions from a fresh lcorolib (see bench/switch.lua).
if stock.resume == core.coroutine.resume then
  local maps = io.open("/proc/self/maps")
  local mapped = maps and maps:read("a"):find("liblua5.4.so.0", 1, true)
  if maps then maps:close() end
  local open = mapped and package.loadlib("liblua5.4.so.0",
                                          "luaopen_coroutine")
  if open then
    stock = open()
    stock_from = "lcorolib via package.loadlib"
  else
    stock = coroutine
    stock_from = "UNAVAILABLE: green-aware functions used instead"
  end
end

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count")
end

--- VmRSS in bytes.
local function rss()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) * 1024
end

-- Each round returns: CPU seconds for the burst, Lua heap bytes per
-- thread after a full collection, VmRSS growth per thread before it.

-- Floor: n coroutines created and resumed to their first yield.
local function floor_round(n)
  local create, resume, yield = stock.create, stock.resume, stock.yield
  local function body() yield() end
  local cos = {}
  local base = full_gc()
  local rss0 = rss()
  local t0 = clock()
  for i = 1, n do
    local co = create(body)
    resume(co)
    cos[i] = co
  end
  local dt = clock() - t0
  local rbytes = (rss() - rss0) / n
  local bytes = (full_gc() - base) * 1024 / n
  -- Let them finish, so the next round starts clean.
  for i = 1, n do resume(cos[i]) end
  return dt, bytes, rbytes
end

-- greenlua: n threads spawned, each run until it parks in ev:wait().
local function event_round(n)
  local ev = green.Event()
  local function body() ev:wait() end
  local before = core.stats().threads
  local base = full_gc()
  local rss0 = rss()
  local t0 = clock()
  -- Nothing but the hub holds the threads (no table of them here).
  for _ = 1, n do spawn(body) end
  green.sleep(0) -- one hub pass: every new thread runs and parks
  local dt = clock() - t0
  local rbytes = (rss() - rss0) / n
  assert(ev:waiting() == n, "a thread did not park")
  local bytes = (full_gc() - base) * 1024 / n
  ev:send() -- wakes them all: each returns from wait() and ends
  green.sleep(0)
  assert(core.stats().threads == before, "threads left alive")
  return dt, bytes, rbytes
end

-- For reference: n threads parked in the bare core.suspend().
local function suspend_round(n)
  local function body() suspend() end
  local gts = {}
  local before = core.stats().threads
  local base = full_gc()
  local rss0 = rss()
  local t0 = clock()
  for i = 1, n do gts[i] = spawn(body) end
  green.sleep(0)
  local dt = clock() - t0
  local rbytes = (rss() - rss0) / n
  assert(core.stats().threads == before + n)
  local bytes = (full_gc() - base) * 1024 / n
  -- wake() is true only for a thread parked in suspend().
  for i = 1, n do assert(wake(gts[i]), "a thread did not park") end
  green.sleep(0)
  assert(core.stats().threads == before, "threads left alive")
  return dt, bytes, rbytes
end

local rounds = { floor = floor_round, event = event_round,
                 suspend = suspend_round }

local function median(xs)
  local s = table.move(xs, 1, #xs, 1, {})
  table.sort(s)
  return s[(#s + 1) // 2]
end

local function best(xs)
  return math.min(table.unpack(xs))
end

if MODE and MODE:match("^cold%-") then
  local dt, _, rbytes = rounds[MODE:sub(6)](N)
  print(string.format("%.6f %.1f", dt, rbytes))
  os.exit(0)
end

-- One round in a fresh process of the same interpreter: seconds, RSS
-- bytes per thread.
local function cold(kind)
  local argv0 = arg and arg[-1]
  if not argv0 or not arg[0] then return nil end
  local p = io.popen(string.format("%q %q %d 1 1 cold-%s", argv0, arg[0], N,
                                   kind))
  local out = p and p:read("a")
  if p then p:close() end
  local dt, rb = (out or ""):match("^%s*([%d.]+) ([%d.-]+)")
  return tonumber(dt), tonumber(rb)
end

-- Cold first (fresh processes; this one has not grown its heap yet).
local cold_t, cold_rss = { floor = {}, event = {}, suspend = {} },
                         { floor = {}, event = {}, suspend = {} }
for r = 1, COLD do
  for _, kind in ipairs { "floor", "event", "suspend" } do
    cold_t[kind][r], cold_rss[kind][r] = cold(kind)
  end
end

-- Warm up with full rounds: the heap grows to its final size.
event_round(N)
suspend_round(N)
floor_round(N)

local ft, fb, et, eb, st, sb = {}, {}, {}, {}, {}, {}
for r = 1, ROUNDS do
  ft[r], fb[r] = floor_round(N)
  et[r], eb[r] = event_round(N)
  st[r], sb[r] = suspend_round(N)
end

local frate, erate, srate = N / best(ft), N / best(et), N / best(st)
print(string.format("spawn: %d threads; CPU time (os.clock); floor uses " ..
                    "stock coroutines (%s)", N, stock_from))
print(string.format("spawn: warm, best of %d: floor create+resume %.0f/s " ..
                    "(%.0f B/coroutine), park on an Event %.0f/s (ratio " ..
                    "%.2f, %.0f B/thread), park in core.suspend %.0f/s " ..
                    "(ratio %.2f, %.0f B/thread)", ROUNDS, frate, median(fb),
                    erate, erate / frate, median(eb), srate, srate / frate,
                    median(sb)))
if #cold_t.floor == COLD and #cold_t.event == COLD then
  local cf, ce, cs = best(cold_t.floor), best(cold_t.event),
                     best(cold_t.suspend)
  local re, rs, rf = median(cold_rss.event), median(cold_rss.suspend),
                     median(cold_rss.floor)
  print(string.format("spawn: cold, best of %d fresh processes: floor " ..
                      "%.0f/s, core.suspend park %.0f/s (ratio %.2f); " ..
                      "VmRSS per coroutine %.0f B, per thread in " ..
                      "core.suspend %.0f B", COLD, N / cf, N / cs, cf / cs,
                      rf, rs))
  print(string.format("spawn: greenlua park on an Event, cold %.0f/s, " ..
                      "floor %.0f/s, ratio %.2f (target >= 0.6) %s",
                      N / ce, N / cf, cf / ce,
                      cf / ce >= 0.6 and "MET" or "MISSED"))
  print(string.format("spawn: greenlua %.0f B VmRSS per thread parked on " ..
                      "an Event (cold, median), floor %.0f B per " ..
                      "coroutine (target <= 1536 B) %s", re, rf,
                      re <= 1536 and "MET" or "MISSED"))
else
  print("spawn: cold runs unavailable (no arg[-1]); warm figures only")
end
