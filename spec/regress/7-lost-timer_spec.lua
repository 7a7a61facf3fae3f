-- Issue 7, fault 0: with a socket open, the hub could block in the poller
-- with no timeout while sleeps were pending. libuv runs due timers before
-- it computes the poll timeout, so when a millisecond ticked over between
-- the hub arming its timer and libuv's own clock update, the timer fired
-- early, nothing was left armed, and the poll waited forever.
local helper = require "helper"

describe("a sleep beside an idle listening socket", function()
  it("always wakes, whatever the millisecond phase of the poll", function()
    -- Each sleep is started a few microseconds before a millisecond tick,
    -- where the lost wake-up happened (within a few hundred iterations
    -- before the fix). Run in a subprocess: a hang is a failure here.
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write([[
      local green = require "green"
      local srv = assert(green.listen("127.0.0.1", 0))
      local acc = green.spawn(function() srv:accept() end)
      local now = green.now
      for i = 1, 1200 do
        local d = i % 8 + 1
        while (now() * 1e6) % 1000 < 1000 - d do end
        green.sleep(0.001)
      end
      acc:kill()
      srv:close()
      print("done")
    ]])
    f:close()
    local out, err, code = helper.sh("timeout 30 " .. helper.greenlua .. " "
                                     .. path)
    os.remove(path)
    assert.are.equal(0, code, err)
    assert.are.equal("done\n", out)
  end)
end)
