-- Issue 7, fault 3: a green.socket tcp object closed by another thread
-- while it was in connect() did not wake the connect, which waited for
-- the kernel's SYN retries (about two minutes). Closing wakes every
-- waiter with nil, "closed", connect included.
local green = require "green"
local socket = require "green.socket"
local helper = require "helper"

-- A listener whose accept queue is full: the kernel drops further SYNs,
-- so a connect to it hangs (on loopback, with no network needed).
local function unresponsive()
  local srv = assert(green.listen("127.0.0.1", 0, { backlog = 1 }))
  local _, port = srv:getsockname()
  local held = {}
  for _ = 1, 8 do
    local c = green.connect("127.0.0.1", port, { timeout = 0.2 })
    if not c then break end
    held[#held + 1] = c
  end
  return port, function()
    for _, c in ipairs(held) do c:close() end
    srv:close()
  end
end

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
