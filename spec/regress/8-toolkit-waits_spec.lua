-- Issue 8: the toolkit's primitives waited in Lua, with a Lua record per
-- waiting thread and three Lua frames (wait, block, suspend); a thread
-- parked on an Event cost about 950 bytes of Lua heap more than one
-- parked in core.suspend. They now wait in C in the thread's own wait
-- record: parking on an Event, a Queue or a Semaphore costs what parking
-- in core.suspend costs.
local green = require "green"

local N = 2000

-- Lua heap bytes per thread for N threads parked by `park`, after a full
-- collection (everything parked is live); then they are released.
local function heap_per_thread(park, release)
  collectgarbage()
  collectgarbage()
  local base = collectgarbage("count")
  local gts = {}
  for i = 1, N do gts[i] = green.spawn(park) end
  green.sleep(0)
  collectgarbage()
  collectgarbage()
  local bytes = (collectgarbage("count") - base) * 1024 / N
  release(gts)
  for i = 1, N do gts[i]:wait() end
  return bytes
end

describe("a thread parked in a toolkit primitive", function()
  it("holds no more Lua memory than one parked in core.suspend", function()
    green_run(function()
      local ev, q, sem = green.Event(), green.Queue(), green.Semaphore(0)
      local suspended = heap_per_thread(function() green.core.suspend() end,
        function(gts)
          for _, gt in ipairs(gts) do assert(green.core.wake(gt)) end
        end)
      local on_event = heap_per_thread(function() ev:wait() end,
        function() ev:send() end)
      local in_get = heap_per_thread(function() q:get() end,
        function() for i = 1, N do q:put(i) end end)
      local in_acquire = heap_per_thread(function() sem:acquire() end,
        function() for _ = 1, N do sem:release() end end)
      -- The bytes a table of N threads takes are in every figure alike.
      for what, bytes in pairs { event = on_event, get = in_get,
                                 acquire = in_acquire } do
        assert(bytes <= suspended + 16, string.format(
          "%s: %.0f bytes per parked thread, core.suspend: %.0f", what,
          bytes, suspended))
      end
    end)
  end)
end)
