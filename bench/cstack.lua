--- bench/cstack.lua: green threads blocked inside a C-call boundary
-- (runtime/cstack.c parks their C stacks on the heap).
--
-- 1. Memory: N threads (10,000) each blocked on one Event inside a
--    table.sort comparator, against N threads blocked on an Event the
--    ordinary way, in the same process. Reports VmRSS growth per thread
--    for both and the parked C-stack bytes (core.cstack()), then wakes
--    them all and checks every one continued and sorted correctly.
--    Target: a thread parked inside a boundary costs <= 16 KB resident.
-- 2. Speed: two threads switching with sleep(0) inside a comparator (each
--    switch parks the C stack and copies it back) against the same two
--    switching with a plain sleep(0), interleaved rounds, best of each.
--
-- Usage: greenlua bench/cstack.lua [threads] [switches] [rounds]

local green = require "green"

-- Spawning N threads in one loop keeps the hub busy: not a fault here.
green.debug.hub_blocking_detection(false)

local N = math.tointeger(tonumber(arg and arg[1])) or 10000
local M = math.tointeger(tonumber(arg and arg[2])) or 200000
local ROUNDS = math.tointeger(tonumber(arg and arg[3])) or 5
local core = green.core
local spawn, sleep, now = green.spawn, green.sleep, green.now

assert(core.cstack().supported, "native stacks are not supported here")

--- VmRSS in kB.
local function rss()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

--- Park n threads with `body` on a new Event and measure. Returns VmRSS
-- growth per parked thread in bytes, the parked C-stack bytes per thread,
-- and a function that wakes them and checks that every one completed.
-- Batches measured while earlier ones are still parked grow the process
-- (no freed memory to reuse), so each figure is a thread's whole cost.
local function park(body, n)
  local ev = green.Event()
  local done = 0
  collectgarbage("collect")
  collectgarbage("stop")
  local rss0, cs0 = rss(), core.cstack()
  local ts = {}
  for i = 1, n do ts[i] = spawn(body, ev, function() done = done + 1 end) end
  sleep(0) -- each new thread runs once and parks
  assert(ev:waiting() == n, "a thread did not park")
  local rss1, cs1 = rss(), core.cstack()
  collectgarbage("restart")
  return (rss1 - rss0) * 1024 / n, (cs1.bytes - cs0.bytes) / n,
         cs1.parked - cs0.parked, function()
    ev:send()
    for i = 1, n do ts[i]:wait() end
    assert(done == n, ("%d of %d threads completed"):format(done, n))
  end
end

local function in_sort(ev, count)
  local t = { 3, 1, 2 }
  local first = true
  table.sort(t, function(a, b)
    if first then first = false; ev:wait() end
    return a < b
  end)
  assert(t[1] == 1 and t[2] == 2 and t[3] == 3)
  count()
end

local function plain(ev, count)
  ev:wait()
  count()
end

local before = core.stats().threads
-- Warm up: the first threads grow the hub's tables and the Lua heap.
select(4, park(in_sort, 200))()
local plain_rss, _, _, wake_plain = park(plain, N)
local sort_rss, seg, parked, wake_sort = park(in_sort, N)
assert(parked == N, ("%d of %d threads parked a C stack"):format(parked, N))
wake_sort()
wake_plain()
assert(core.stats().threads == before, "threads left alive")
assert(core.cstack().parked == 0, "a C stack left parked")
collectgarbage("collect")

--- Seconds for two threads to make M switches each with sleep(0), inside
-- a comparator or not.
local function switches(boundary)
  local function loop()
    for _ = 1, M do sleep(0) end
  end
  local function body()
    if boundary then
      local first = true
      table.sort({ 2, 1 }, function(a, b)
        if first then first = false; loop() end
        return a < b
      end)
    else
      loop()
    end
  end
  local c0 = core.cstack().continues
  local t0 = now()
  local a, b = spawn(body), spawn(body)
  a:wait(); b:wait()
  local dt = now() - t0
  if boundary then
    assert(core.cstack().continues - c0 >= 2 * M, "switches did not park")
  end
  return dt
end

local best_plain, best_park = math.huge, math.huge
for _ = 1, ROUNDS do
  best_plain = math.min(best_plain, switches(false))
  best_park = math.min(best_park, switches(true))
end
local rate_plain, rate_park = 2 * M / best_plain, 2 * M / best_park

print(string.format(
  "cstack: %d threads parked on an Event: VmRSS %.0f bytes/thread " ..
  "plainly, %.0f bytes/thread inside a table.sort comparator (its C " ..
  "stack: %.0f bytes on the heap); all %d completed", N, plain_rss,
  sort_rss, seg, N))
print(string.format(
  "cstack: sleep(0) switches, best of %d rounds of 2 x %d: %.2f M/s " ..
  "plain, %.2f M/s parking and continuing inside a comparator (%.2fx " ..
  "the plain rate)", ROUNDS, M, rate_plain / 1e6, rate_park / 1e6,
  rate_park / rate_plain))
print(string.format(
  "cstack: greenlua %.1f KB resident per thread parked inside a boundary, " ..
  "ratio %.2f of 16 KB (target <= 16 KB) %s", sort_rss / 1024,
  sort_rss / 16384, sort_rss <= 16384 and "MET" or "MISSED"))
