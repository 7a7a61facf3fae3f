--- bench/million.lua: park 1,000,000 green threads at once, each blocked
-- in `ev:wait()` on one Event, then wake them all with one `ev:send()`.
-- Reports the time taken and the resident memory from /proc/self/status
-- (VmRSS now, VmHWM the peak). Target: completes, under 1.5 GB resident.
--
-- Usage: greenlua bench/million.lua [threads]

local green = require "green"

-- Spawning a million threads in one loop keeps the hub for seconds while
-- they wait to run: that is the point here, not a fault to report.
green.debug.hub_blocking_detection(false)

local N = math.tointeger(tonumber(arg and arg[1])) or 1000000
local core = green.core
local spawn = green.spawn
local now = green.now

--- VmRSS and VmHWM in kB.
local function rss()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")),
         tonumber(s:match("VmHWM:%s*(%d+)"))
end

local function mb(kb) return kb / 1024 end

local ev = green.Event()
local function body() ev:wait() end

collectgarbage("collect")
local rss0 = rss()
local heap0 = collectgarbage("count")
local before = core.stats().threads

local t0, c0 = now(), os.clock()
for _ = 1, N do spawn(body) end -- only the hub holds them
green.sleep(0) -- every new thread runs once and parks
local t_park, c_park = now() - t0, os.clock() - c0
local rss_park, hwm_park = rss()
local heap_park = collectgarbage("count")
assert(core.stats().threads == before + N)
assert(ev:waiting() == N, "a thread did not park")

collectgarbage("collect")
local heap_gc = collectgarbage("count")
local rss_gc = rss()

local t1 = now()
ev:send()
green.sleep(0) -- each returns from wait() and ends
local t_end = now() - t1
assert(core.stats().threads == before, "threads left alive")
collectgarbage("collect")
local rss_end, hwm = rss()

print(string.format(
  "million: %d parked in %.2f s wall (%.2f s CPU), %.0f/s; woken and " ..
  "ended in %.2f s", N, t_park, c_park, N / t_park, t_end))
print(string.format(
  "million: Lua heap %.0f MB parked (%.0f bytes/thread), %.0f MB after a " ..
  "full collect (%.0f bytes/thread)", mb(heap_park - heap0),
  (heap_park - heap0) * 1024 / N, mb(heap_gc - heap0),
  (heap_gc - heap0) * 1024 / N))
print(string.format(
  "million: VmRSS %.0f MB parked (%.0f bytes/thread over the start), %.0f " ..
  "MB after a collect, %.0f MB at the end; start %.0f MB",
  mb(rss_park), (rss_park - rss0) * 1024 / N, mb(rss_gc), mb(rss_end),
  mb(rss0)))
-- The budget in bytes: 1.5 GB is 1.5e9 bytes (1430 MiB; the figures
-- above are MiB, as /proc reports kB = KiB).
local budget = 1.5e9
print(string.format(
  "million: greenlua %d threads parked on an Event, peak VmHWM %.0f MiB " ..
  "= %.2f GB, ratio %.2f of the 1.5 GB budget (target < 1.5 GB) %s", N,
  mb(hwm), hwm * 1024 / 1e9, hwm * 1024 / budget,
  (hwm * 1024 < budget and hwm_park) and "MET" or "MISSED"))
