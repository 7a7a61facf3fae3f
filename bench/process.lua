--- bench/process.lua: green.process.run("true") per second against the
-- stock os.execute("true") (C's system(3)), measured in the same run, in
-- wall-clock time (the work is in the children). Both go through
-- /bin/sh -c; run also collects the command's stdout and stderr through
-- pipes, which os.execute does not. Target: ratio >= 1.0.
--
-- Also, for reference: process.spawn{"true"}:wait() (no shell, no pipes)
-- and the green os.execute (process.execute, what green.patch()
-- installs). Rounds are interleaved; each figure is the best round.
--
-- Usage: greenlua bench/process.lua [runs per round] [rounds]
local stock_execute = os.execute -- before anything could patch it

local green = require "green"
local process = green.process

local N = math.tointeger(tonumber(arg and arg[1])) or 300
local ROUNDS = math.tointeger(tonumber(arg and arg[2])) or 5
local now = green.now

local function rate(fn)
  local t0 = now()
  for _ = 1, N do fn() end
  return N / (now() - t0)
end

local sides = {
  { name = "os.execute", fn = function()
      assert(stock_execute("true"))
    end },
  { name = "process.run", fn = function()
      assert(process.run("true"))
    end },
  { name = "spawn+wait", fn = function()
      local p = assert(process.spawn { "true" })
      assert(p:wait() == "exit")
    end },
  { name = "process.execute", fn = function()
      assert(process.execute("true"))
    end },
}

green.run(function()
  local best = {}
  for _, s in ipairs(sides) do s.fn() end -- warm up
  for round = 1, ROUNDS do
    for _, s in ipairs(sides) do
      local r = rate(s.fn)
      best[s.name] = math.max(best[s.name] or 0, r)
      print(string.format("round %d: %-16s %7.0f runs/s", round, s.name, r))
    end
  end
  for _, s in ipairs(sides) do
    print(string.format("best: %-16s %7.0f runs/s (%.2fx os.execute)",
                        s.name, best[s.name],
                        best[s.name] / best["os.execute"]))
  end
  local ratio = best["process.run"] / best["os.execute"]
  print(string.format("process: greenlua %.0f runs/s (process.run), "
                      .. "floor %.0f runs/s (os.execute), ratio %.2f "
                      .. "(target 1.0) %s",
                      best["process.run"], best["os.execute"], ratio,
                      ratio >= 1.0 and "MET" or "MISSED"))
end)
