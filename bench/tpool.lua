--- bench/tpool.lua: green.tpool against the floors measured in the same
-- run.
--
-- 1. Round trips: `tpool.execute(fn, i)` one at a time from one green
--    thread (fn returns its argument), against a C program doing
--    `uv_queue_work` round trips one at a time on libuv's own pool
--    (bench/c_queue_work.c, compiled here into build/). Rounds alternate
--    between the two; wall time; best of the rounds. Target: >= 0.5x.
-- 2. Two CPU-bound functions offloaded at once (two green threads, each
--    in tpool.execute) against the same two run back to back (one
--    execute after the other): wall time of both. Target on 2 cores:
--    at once <= 0.6x back to back.
--
-- Usage: greenlua bench/tpool.lua [round trips per round] [rounds]
--    or: lua5.4 bench/tpool.lua ... (with LUA_PATH/LUA_CPATH, see README)
local green = require "green"
local tpool = green.tpool

local N = math.tointeger(tonumber(arg and arg[1])) or 50000
local ROUNDS = math.tointeger(tonumber(arg and arg[2])) or 5
local now = green.now

local floor_bin = "build/c_queue_work"
assert(os.execute("cc -O2 -o " .. floor_bin .. " bench/c_queue_work.c "
                  .. "$(pkg-config --cflags --libs libuv)"),
       "cannot compile bench/c_queue_work.c")

local function c_floor(n)
  local p = assert(io.popen(floor_bin .. " " .. n))
  local rate = tonumber(p:read("a"))
  p:close()
  return assert(rate, "bench/c_queue_work printed no rate")
end

local function echo(x)
  return x
end

local function green_rate(n)
  local execute = tpool.execute
  local t0 = now()
  for i = 1, n do
    if execute(echo, i) ~= i then error("wrong result") end
  end
  return n / (now() - t0)
end

local function best(xs)
  local m = xs[1]
  for i = 2, #xs do
    if xs[i] > m then m = xs[i] end
  end
  return m
end

local function median(xs)
  local s = table.move(xs, 1, #xs, 1, {})
  table.sort(s)
  return s[(#s + 1) // 2]
end

local function verdict(ok)
  return ok and "MET" or "MISSED"
end

green.run(function()
  green_rate(N // 10 + 1) -- the workers start: not timed
  local g, c = {}, {}
  for r = 1, ROUNDS do
    g[r] = green_rate(N)
    c[r] = c_floor(N)
    print(string.format("round %d: tpool.execute %.0f/s, uv_queue_work "
                        .. "%.0f/s", r, g[r], c[r]))
  end
  local gb, cb = best(g), best(c)
  print(string.format("tpool round trip: greenlua %.0f/s (median %.0f), "
                      .. "floor %.0f/s (median %.0f), ratio %.2f (target "
                      .. ">= 0.5) %s", gb, median(g), cb, median(c),
                      gb / cb, verdict(gb / cb >= 0.5)))

  -- Two CPU-bound functions: about 0.4 s each on this machine.
  local function burn(n)
    local x = 0.0
    for i = 1, n do x = x + (i % 7) * 0.5 end
    return x
  end
  local work = 60000000
  local seq, par = {}, {}
  for r = 1, 3 do
    local t0 = now()
    tpool.execute(burn, work)
    tpool.execute(burn, work)
    seq[r] = now() - t0
    t0 = now()
    local a = green.spawn(tpool.execute, burn, work)
    local b = green.spawn(tpool.execute, burn, work)
    a:wait()
    b:wait()
    par[r] = now() - t0
    print(string.format("round %d: back to back %.3f s, at once %.3f s", r,
                        seq[r], par[r]))
  end
  local sb, pb = math.huge, math.huge
  for r = 1, #seq do
    sb, pb = math.min(sb, seq[r]), math.min(pb, par[r])
  end
  print(string.format("tpool two CPU-bound: greenlua at once %.3f s, back "
                      .. "to back %.3f s, ratio %.2f (target <= 0.6) %s",
                      pb, sb, pb / sb, verdict(pb / sb <= 0.6)))
end)
