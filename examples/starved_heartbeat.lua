-- Seed 001: OpenStack Nova's periodic task starves its heartbeat.
--
-- A service reports its state every 0.2 s (report_state), while a
-- periodic task sometimes computes for a while without a blocking call.
-- In eventlet nothing says why the heartbeat went quiet. Here:
--   1. blocking detection (on by default) names the computation, with its
--      traceback, as soon as it has kept the hub for the threshold while
--      the heartbeat waited;
--   2. with the time slice on, the computation is preempted and the
--      heartbeat keeps its cadence.
--
-- Run: ./build/greenlua examples/starved_heartbeat.lua [burst seconds]
local green = require "green"

local BURST = tonumber(arg and arg[1]) or 1.5
local INTERVAL = 0.2

-- The heartbeat: record the largest gap between two reports.
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

-- The periodic task's computation: CPU work with no blocking call.
local function audit_instances(seconds)
  local t0, n = os.clock(), 0
  while os.clock() - t0 < seconds do n = n + 1 end
  return n
end

local function run(title, setup)
  print(title)
  local hb = heartbeat("report_state")
  green.sleep(INTERVAL * 1.5) -- a beat or two first
  setup()
  local task = green.spawn(audit_instances, BURST)
  task.name = "periodic_task"
  task:wait()
  green.sleep(INTERVAL * 1.5)
  hb.stop = true
  hb.thread:wait()
  print(string.format("  heartbeat: %d beats, largest gap %.2f s "
                      .. "(interval %.2f s)", hb.beats, hb.gap, INTERVAL))
  return hb.gap
end

-- 1. Detection: report (to stdout here, for the demo) what starved it.
local reports = 0
green.debug.hub_blocking_detection(true, 0.5)
green.debug.on_blocking(function(gt, seconds, where)
  reports = reports + 1
  print(string.format("  blocking detected: thread %s ('%s') kept the hub "
                      .. "for %.2f s, %s at\n    %s", tostring(gt.id),
                      gt.name or "?", seconds, where:match("^[^\n]*"),
                      where:match("\n%s*([^\n]*starved_heartbeat[^\n]*)")))
end)
local starved = run("without a time slice:", function() end)

-- 2. The time slice: the computation yields every 20 ms while others wait.
local kept = run("with green.debug.time_slice(0.02):", function()
  green.debug.time_slice(0.02)
end)
green.debug.time_slice(nil)
green.debug.on_blocking(nil)

print(string.format("reports: %d; gap without the slice %.2f s, with it "
                    .. "%.2f s", reports, starved, kept))
