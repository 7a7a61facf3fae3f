--- bench/queue.lua: Queue hand-offs per second between two green threads,
-- against the sleep(0) switch floor measured in the same run (two threads
-- ping-ponging with green.sleep(0); one switch = one sleep(0)).
--
-- A hand-off is one item travelling from a producer's put to a consumer's
-- get. Target: at least half the switch rate (ratio >= 0.5); one switch
-- per hand-off would be 1.0.
-- Also times an uncontended `q:put(i); q:get()` pair in one thread (no
-- switch at all), in ns and in switches' worth.
--
-- Usage: greenlua bench/queue.lua [items per round] [rounds]
local green = require "green"

local N = math.tointeger(tonumber(arg and arg[1])) or 300000
local ROUNDS = math.tointeger(tonumber(arg and arg[2])) or 3
local clock = os.clock

-- Floor: n sleep(0) switches shared by two threads.
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

-- n items from a producer thread to a consumer thread through q.
local function handoffs(q, n)
  local t0 = clock()
  local producer = green.spawn(function()
    for i = 1, n do q:put(i) end
  end)
  local consumer = green.spawn(function()
    for _ = 1, n do q:get() end
  end)
  producer:wait()
  consumer:wait()
  return clock() - t0
end

-- n uncontended put+get pairs in the calling thread.
local function pairs_alone(q, n)
  local t0 = clock()
  for i = 1, n do
    q:put(i)
    q:get()
  end
  return clock() - t0
end

local cases = {
  { "Queue(0) channel", function() return green.Queue(0) end },
  { "Queue(1)", function() return green.Queue(1) end },
  { "LightQueue(1)", function() return green.LightQueue(1) end },
}

green.run(function()
  local best_floor = math.huge
  local best, alone = {}, {}
  for _ = 1, ROUNDS do
    best_floor = math.min(best_floor, switches(N))
    for i, c in ipairs(cases) do
      best[i] = math.min(best[i] or math.huge, handoffs(c[2](), N))
    end
    alone[1] = math.min(alone[1] or math.huge, pairs_alone(green.Queue(), N))
    alone[2] = math.min(alone[2] or math.huge,
                        pairs_alone(green.LightQueue(), N))
  end
  local floor = N / best_floor
  print(string.format("sleep(0) floor: %.0f switches/s", floor))
  for i, c in ipairs(cases) do
    local rate = N / best[i]
    print(string.format("queue: greenlua %s %.0f hand-offs/s, floor %.0f "
                        .. "switches/s, ratio %.2f (target >= 0.5) %s", c[1],
                        rate, floor, rate / floor,
                        rate / floor >= 0.5 and "MET" or "MISSED"))
  end
  for i, name in ipairs { "Queue()", "LightQueue()" } do
    local ns = alone[i] / N * 1e9
    print(string.format("uncontended %s put+get: %.0f ns (%.1f switches' "
                        .. "worth)", name, ns, ns * floor / 1e9))
  end
end)
