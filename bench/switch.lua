--- bench/switch.lua: sleep(0) switches per second, 2 green threads
-- ping-ponging, against a floor measured in the same process: a bare Lua
-- loop of coroutine.resume/coroutine.yield between the running thread and
-- one coroutine (Lua 5.4's own lcorolib functions).
--
-- One "switch" is one suspend/resume round trip: a sleep(0) (the thread
-- yields to the hub, the hub resumes the next ready thread) or one
-- resume+yield pair of the floor loop.
--
-- Usage: greenlua bench/switch.lua [switches per round] [rounds]
--    or: lua5.4 bench/switch.lua ... (with LUA_PATH/LUA_CPATH, see README)

-- The stock functions, saved before require("green") replaces them.
local stock = {
  create = coroutine.create,
  resume = coroutine.resume,
  yield = coroutine.yield,
}
local stock_from = "saved before require"

local green = require "green"

local N = math.tointeger(tonumber(arg and arg[1])) or 1000000
local ROUNDS = math.tointeger(tonumber(arg and arg[2])) or 5
local clock = os.clock

-- The greenlua executable loads green before the script runs, so the
-- stock functions are gone from `coroutine`: take them from a fresh copy
-- of lcorolib, out of the liblua already mapped into this process.
if stock.resume == green.core.coroutine.resume then
  stock = nil
  local maps = io.open("/proc/self/maps")
  local mapped = maps and maps:read("a"):find("liblua5.4.so.0", 1, true)
  if maps then maps:close() end
  if mapped then
    local open = package.loadlib("liblua5.4.so.0", "luaopen_coroutine")
    if open then
      stock = open()
      stock_from = "lcorolib via package.loadlib"
    end
  end
  if not stock then
    stock = coroutine
    stock_from = "UNAVAILABLE: green-aware functions used instead"
  end
end

local function mrate(n, t)
  return n / t / 1e6
end

-- Floor: main <-> one coroutine, n round trips.
local function floor_loop(co_create, co_resume, co_yield, n)
  local co = co_create(function()
    while true do co_yield() end
  end)
  co_resume(co) -- started: sits at its first yield
  local t0 = clock()
  for _ = 1, n do co_resume(co) end
  return clock() - t0
end

-- greenlua: two green threads, n/2 sleep(0) each.
local function green_loop(n)
  local sleep = green.sleep
  local half = n // 2
  local function pinger()
    for _ = 1, half do sleep(0) end
  end
  local t0 = clock()
  local a, b = green.spawn(pinger), green.spawn(pinger)
  a:wait()
  b:wait()
  return clock() - t0
end

local function best_and_median(xs)
  table.sort(xs, function(x, y) return x > y end)
  return xs[1], xs[(#xs + 1) // 2]
end

-- Warm up (JIT-free, but lets the allocator and caches settle).
floor_loop(stock.create, stock.resume, stock.yield, N // 10)
green_loop(N // 10)

local fl, ga, gr = {}, {}, {}
for r = 1, ROUNDS do
  fl[r] = mrate(N, floor_loop(stock.create, stock.resume, stock.yield, N))
  ga[r] = mrate(N, floor_loop(coroutine.create, coroutine.resume,
                              coroutine.yield, N))
  gr[r] = mrate(N, green_loop(N))
end

local fbest, fmed = best_and_median(fl)
local abest, amed = best_and_median(ga)
local gbest, gmed = best_and_median(gr)

print(string.format("switch: %d rounds of %d switches, CPU time (os.clock)",
                    ROUNDS, N))
print(string.format(
  "switch: floor, stock coroutine.resume/yield (%s): best %.2fM/s, " ..
  "median %.2fM/s", stock_from, fbest, fmed))
print(string.format(
  "switch: green-aware coroutine.resume/yield: best %.2fM/s, median " ..
  "%.2fM/s, ratio %.2f", abest, amed, abest / fbest))
print(string.format(
  "switch: greenlua sleep(0): best %.2fM/s, median %.2fM/s (median " ..
  "ratio %.2f)", gbest, gmed, gmed / fmed))
local ratio = gbest / fbest
print(string.format(
  "switch: greenlua %.2fM/s, floor %.2fM/s, ratio %.2f (target >= 1.0) %s",
  gbest, fbest, ratio, ratio >= 1.0 and "MET" or "MISSED"))
