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
-- Rounds are interleaved finely (each round runs every side for a
-- short batch, so a change of load on this shared machine hits all
-- sides alike); each side's rate is its total runs over its total time,
-- and the median of the per-round ratios is printed too.
--
-- Usage: greenlua bench/process.lua [runs per batch=20] [rounds=40]
local stock_execute = os.execute -- before anything could patch it

local green = require "green"
local process = green.process

local N = math.tointeger(tonumber(arg and arg[1])) or 20
local ROUNDS = math.tointeger(tonumber(arg and arg[2])) or 40
local now = green.now

local function timed(fn)
  local t0 = now()
  for _ = 1, N do fn() end
  return now() - t0
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
  local total, ratios = {}, {}
  for _, s in ipairs(sides) do s.fn(); total[s.name] = 0 end -- warm up
  for round = 1, ROUNDS do
    local t = {}
    for _, s in ipairs(sides) do
      t[s.name] = timed(s.fn)
      total[s.name] = total[s.name] + t[s.name]
    end
    ratios[round] = t["os.execute"] / t["process.run"]
  end
  table.sort(ratios)
  local function rate(name) return N * ROUNDS / total[name] end
  for _, s in ipairs(sides) do
    print(string.format("%-16s %7.0f runs/s (%.2fx os.execute)", s.name,
                        rate(s.name), rate(s.name) / rate("os.execute")))
  end
  local ratio = rate("process.run") / rate("os.execute")
  print(string.format("process: greenlua %.0f runs/s (process.run), "
                      .. "floor %.0f runs/s (os.execute), ratio %.2f "
                      .. "(median of %d rounds %.2f, range %.2f-%.2f; "
                      .. "target 1.0) %s",
                      rate("process.run"), rate("os.execute"), ratio,
                      ROUNDS, ratios[(ROUNDS + 1) // 2], ratios[1],
                      ratios[ROUNDS], ratio >= 1.0 and "MET" or "MISSED"))
end)
