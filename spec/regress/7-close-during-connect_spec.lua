-- Issue 7, fault 3: a green.socket tcp object closed by another thread
-- while it was in connect() did not wake the connect, which waited for
-- the kernel's SYN retries (about two minutes). Closing wakes every
-- waiter with nil, "closed", connect included.
local green = require "green"
local socket = require "green.socket"
local helper = require "helper"

local unresponsive = helper.unresponsive_listener

describe("closing a green.socket tcp object during connect", function()
  it("makes the connect return nil, 'closed' at once", function()
    green_run(function()
      local port, cleanup = unresponsive()
      local t = socket.tcp()
      local connector = green.spawn(function()
        return table.pack(t:connect("127.0.0.1", port))
      end)
      helper.until_suspended(connector, "socket:connect")
      local _ <close> = green.Timeout(10) -- before the fix: ~2 minutes
      t:close()
      assert.are.same({ n = 2, nil, "closed" }, connector:wait())
      cleanup()
    end)
  end)

  it("leaves nothing behind when the connect times out", function()
    green_run(function()
      local port, cleanup = unresponsive()
      local t = socket.tcp()
      t:settimeout(0.05)
      assert.are.same({ nil, "timeout" }, { t:connect("127.0.0.1", port) })
      t:close()
      cleanup()
    end) -- green_run fails if a helper thread or timer is left
  end)

  it("leaves nothing behind when the connecting thread is killed",
     function()
    green_run(function()
      local port, cleanup = unresponsive()
      local t = socket.tcp()
      local connector = green.spawn(function()
        return t:connect("127.0.0.1", port)
      end)
      helper.until_suspended(connector, "socket:connect")
      connector:kill()
      assert.are.equal(green.GreenletExit, connector:wait())
      assert.are.equal("tcp{master}", t.class) -- it may connect again
      t:close()
      cleanup()
    end)
  end)
end)
