-- Seed 003: two "while true" loops where one stops working.
--
-- A gevent service ran two loops that never called sleep: whichever got
-- the hub first kept it, and the other never ran again ("remember to
-- call sleep"). With greenlua's time slice on, both keep running: each is
-- preempted at its next Lua instruction once it has held the hub for the
-- slice while the other waits.
--
-- Run: ./build/greenlua --time-slice=0.01 examples/two_loops.lua
--      (or the script turns the slice on itself, as below)
local green = require "green"

if green.debug.time_slice() == 0 then green.debug.time_slice(0.01) end

local counts = { poll_redis = 0, push_websockets = 0 }
local deadline = green.now() + 1 -- a demo: one second of both loops

local function loop(name)
  return green.spawn(function()
    while green.now() < deadline do -- no sleep, no blocking call
      counts[name] = counts[name] + 1
    end
  end)
end

local a, b = loop("poll_redis"), loop("push_websockets")
a:wait()
b:wait()
for _, name in ipairs { "poll_redis", "push_websockets" } do
  print(string.format("%-16s %d iterations", name, counts[name]))
end
print("preemptions: " .. green.debug.stats().preemptions)
