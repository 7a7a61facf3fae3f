--- bench/imap.lua: GreenPool:imap items per second over a trivial
-- function, against the sleep(0) switch floor measured in the same run
-- (two threads ping-ponging with green.sleep(0)).
--
-- Each item costs a spawn, a run and a wait, so expect a ratio well
-- below 1: the figure shows how many switches one item costs.
--
-- Usage: greenlua bench/imap.lua [items per round] [rounds] [pool size]
local green = require "green"

local N = math.tointeger(tonumber(arg and arg[1])) or 100000
local ROUNDS = math.tointeger(tonumber(arg and arg[2])) or 3
local SIZE = math.tointeger(tonumber(arg and arg[3])) or 100
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

local function trivial(x)
  return x
end

local function imap(n)
  local pool = green.GreenPool(SIZE)
  local i = 0
  local function input()
    if i < n then
      i = i + 1
      return i
    end
  end
  local t0 = clock()
  local count = 0
  for _ in pool:imap(trivial, input) do count = count + 1 end
  assert(count == n)
  return clock() - t0
end

green.run(function()
  local best_floor, best = math.huge, math.huge
  for _ = 1, ROUNDS do
    best_floor = math.min(best_floor, switches(N))
    best = math.min(best, imap(N))
  end
  local floor, rate = N / best_floor, N / best
  print(string.format("sleep(0) floor: %.0f switches/s", floor))
  print(string.format("imap (pool %d): %.0f items/s, ratio %.2f of the "
                      .. "switch floor (%.1f switches' worth per item)",
                      SIZE, rate, rate / floor, floor / rate))
end)
