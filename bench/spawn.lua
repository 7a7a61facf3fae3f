--- bench/spawn.lua: spawn and park 100,000 green threads (each runs until
-- it blocks for good in green.core.suspend()) against a floor measured in
-- the same process: coroutine.create plus a first resume (to a
-- coroutine.yield) of 100,000 coroutines kept alive in a table. Also the
-- memory each parked thread (and each floor coroutine) holds, from
-- collectgarbage("count") after a full collection.
--
-- Two figures: warm (rounds in one process after a warm-up round, so the
-- allocator reuses memory it already has: the runtime's own cost) and
-- cold (one round in a fresh process each: dominated by page faults and
-- malloc growing the heap, as a server's first burst would be).
--
-- Usage: greenlua bench/spawn.lua [threads] [rounds]

local stock = {
  create = coroutine.create,
  resume = coroutine.resume,
  yield = coroutine.yield,
}
local stock_from = "saved before require"

local green = require "green"

local N = math.tointeger(tonumber(arg and arg[1])) or 100000
local ROUNDS = math.tointeger(tonumber(arg and arg[2])) or 5
local MODE = arg and arg[3] -- internal: "cold-floor" or "cold-green"
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

-- Floor: n coroutines created and resumed to their first yield.
local function floor_round(n)
  local create, resume, yield = stock.create, stock.resume, stock.yield
  local function body() yield() end
  local cos = {}
  local base = full_gc()
  local t0 = clock()
  for i = 1, n do
    local co = create(body)
    resume(co)
    cos[i] = co
  end
  local dt = clock() - t0
  local bytes = (full_gc() - base) * 1024 / n
  -- Let them finish, so the next round starts clean.
  for i = 1, n do resume(cos[i]) end
  return dt, bytes
end

-- greenlua: n threads spawned, each run until it parks in suspend().
local function green_round(n)
  local function body() suspend() end
  local gts = {}
  local before = core.stats().threads
  local base = full_gc()
  local t0 = clock()
  for i = 1, n do gts[i] = spawn(body) end
  green.sleep(0) -- one hub pass: every new thread runs and parks
  local dt = clock() - t0
  assert(core.stats().threads == before + n)
  local bytes = (full_gc() - base) * 1024 / n
  -- Wake them all: each returns from suspend() and ends. wake() is true
  -- only for a thread parked in suspend(): this checks they all parked.
  for i = 1, n do assert(wake(gts[i]), "a thread did not park") end
  green.sleep(0)
  assert(core.stats().threads == before, "threads left alive")
  return dt, bytes
end

local function median(xs)
  local s = table.move(xs, 1, #xs, 1, {})
  table.sort(s)
  return s[(#s + 1) // 2]
end

local function best(xs)
  return math.min(table.unpack(xs))
end

if MODE == "cold-floor" or MODE == "cold-green" then
  local dt = (MODE == "cold-floor" and floor_round or green_round)(N)
  print(string.format("%.6f", dt))
  os.exit(0)
end

-- One round in a fresh process of the same interpreter.
local function cold(mode)
  local argv0 = arg and arg[-1]
  if not argv0 or not arg[0] then return nil end
  local p = io.popen(string.format("%q %q %d 1 %s", argv0, arg[0], N, mode))
  local out = p and p:read("a")
  if p then p:close() end
  return tonumber(out and out:match("^%s*([%d.]+)"))
end

-- Warm up with full rounds: the heap grows to its final size (cold figures
-- are measured separately, above).
green_round(N)
floor_round(N)
green_round(N)

local ft, fb, gt, gb = {}, {}, {}, {}
for r = 1, ROUNDS do
  ft[r], fb[r] = floor_round(N)
  gt[r], gb[r] = green_round(N)
end

local frate, grate = N / best(ft), N / best(gt)
local fbytes, gbytes = median(fb), median(gb)
print(string.format("spawn: %d rounds of %d, CPU time (os.clock); floor " ..
                    "uses stock coroutines (%s)", ROUNDS, N, stock_from))
print(string.format("spawn: floor create+resume %.0f/s, median %.0f/s, " ..
                    "%.0f bytes per coroutine", frate, N / median(ft), fbytes))
print(string.format("spawn: greenlua spawn+park %.0f/s, median %.0f/s",
                    grate, N / median(gt)))
local cf, cg = cold("cold-floor"), cold("cold-green")
if cf and cg then
  print(string.format(
    "spawn: cold (fresh process each): greenlua %.0f/s, floor %.0f/s, " ..
    "ratio %.2f", N / cg, N / cf, cf / cg))
end
local ratio = grate / frate
print(string.format(
  "spawn: greenlua %.0f/s, floor %.0f/s, ratio %.2f (target >= 0.8) %s",
  grate, frate, ratio, ratio >= 0.8 and "MET" or "MISSED"))
print(string.format(
  "spawn: greenlua %.0f bytes per parked thread, floor %.0f bytes per " ..
  "coroutine, ratio %.2f (target <= 1536 bytes) %s", gbytes, fbytes,
  gbytes / fbytes, gbytes <= 1536 and "MET" or "MISSED"))
