--- bench/churn.lua: spawn-and-finish 10,000,000 green threads in batches
-- (spawn a batch, wait for each) and show that memory stays flat: dead
-- threads are collectable. Prints the Lua heap (collectgarbage("count"))
-- and VmRSS at intervals.
--
-- Usage: greenlua bench/churn.lua [threads] [batch] [reports]

local green = require "green"

local TOTAL = math.tointeger(tonumber(arg and arg[1])) or 10000000
local BATCH = math.tointeger(tonumber(arg and arg[2])) or 1000
local REPORTS = math.tointeger(tonumber(arg and arg[3])) or 10
local spawn, now = green.spawn, green.now
local stats = green.core.stats

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function body(i) return i end

local base = stats().threads
local every = math.max(BATCH, TOTAL // REPORTS // BATCH * BATCH)
local gts = {}
local done, t0 = 0, now()
local first_heap, first_rss, max_heap, max_rss
print(string.format("churn: %d threads in batches of %d", TOTAL, BATCH))
while done < TOTAL do
  local n = math.min(BATCH, TOTAL - done)
  for i = 1, n do gts[i] = spawn(body, i) end
  for i = 1, n do
    assert(gts[i]:wait() == i)
    gts[i] = nil
  end
  done = done + n
  if done % every == 0 or done == TOTAL then
    assert(stats().threads == base, "threads left alive")
    local heap, rss = collectgarbage("count"), rss_kb()
    if not first_heap then
      first_heap, first_rss, max_heap, max_rss = heap, rss, heap, rss
    end
    max_heap, max_rss = math.max(max_heap, heap), math.max(max_rss, rss)
    local dt = now() - t0
    print(string.format("churn: %10d done, %6.2f s, %8.0f/s, Lua heap " ..
                        "%7.0f KB, VmRSS %6.1f MB", done, dt, done / dt,
                        heap, rss / 1024))
  end
end
local dt = now() - t0
local ratio = max_rss / first_rss
print(string.format(
  "churn: greenlua %d threads in %.1f s (%.0f/s); Lua heap max %.0f KB " ..
  "(first report %.0f KB), VmRSS max %.1f MB (first report %.1f MB), " ..
  "ratio %.2f (target flat: <= 1.25) %s", TOTAL, dt, TOTAL / dt, max_heap,
  first_heap, max_rss / 1024, first_rss / 1024, ratio,
  ratio <= 1.25 and "MET" or "MISSED"))
