-- Seed 001, answered with a thread pool: OpenStack Nova's periodic task
-- computes for a while, and its heartbeat (report_state, every 0.2 s)
-- must not go quiet. examples/starved_heartbeat.lua shows the hub starved
-- by that computation (and the time slice sharing the hub). Here the
-- computation leaves the hub: green.tpool.execute runs it on a worker OS
-- thread in the worker's own Lua state, the periodic task's green thread
-- waits for the result like any blocking call, and the heartbeat keeps
-- its cadence on the hub (and a second core does the work).
--
-- Run: ./build/greenlua examples/cpu_offload.lua [burst seconds]
local green = require "green"

local BURST = tonumber(arg and arg[1]) or 2
local INTERVAL = 0.2

-- The heartbeat: count the beats, record the largest gap between two.
local function heartbeat(label)
  local state = { gap = 0, beats = 0 }
  state.thread = green.spawn(function()
    local last = green.now()
    while not state.stop do
      green.sleep(INTERVAL)
      local now = green.now()
      state.gap = math.max(state.gap, now - last)
      state.beats = state.beats + 1
      last = now
    end
  end)
  state.thread.name = label
  return state
end

-- The periodic task's computation: CPU work with no blocking call (count
-- the primes it can in `seconds` of CPU time). It runs on a worker, in
-- another Lua state, so it may use no upvalues: what it needs comes as
-- arguments and from its own globals (os, math).
local function audit_instances(seconds)
  local t0, primes, n = os.clock(), 0, 1
  while os.clock() - t0 < seconds do
    n = n + 1
    local prime = true
    for d = 2, math.floor(math.sqrt(n)) do
      if n % d == 0 then prime = false break end
    end
    if prime then primes = primes + 1 end
  end
  return primes, n
end

print(string.format("offloading a %.1f s computation to green.tpool "
                    .. "(%d worker threads):", BURST,
                    green.tpool.stats().threads))
local hb = heartbeat("report_state")
green.sleep(INTERVAL * 1.5) -- a beat or two first
local before = hb.beats
local task = green.spawn(green.tpool.execute, audit_instances, BURST)
task.name = "periodic_task"
local primes, upto = task:wait()
local during = hb.beats - before
green.sleep(INTERVAL * 1.5)
hb.stop = true
hb.thread:wait()
print(string.format("  computation: %d primes up to %d", primes, upto))
print(string.format("  heartbeat: %d beats during the computation, %d in "
                    .. "all, largest gap %.2f s (interval %.2f s)", during,
                    hb.beats, hb.gap, INTERVAL))
