-- Issue 7, fault 2: closed sockets kept the hub and their descriptors
-- alive. A client whose sendall timed out called close() and the process
-- never exited; 100 handlers closed after send timeouts on clients that
-- never read held all their descriptors, even with linger {on, timeout 0}.
-- Now close() flushes what send() accepted only while the peer takes it:
-- a socket that makes no progress for 2 s (or its SO_LINGER timeout) is
-- dropped, and SO_LINGER {on, 0} drops it at once with a reset.
local green = require "green"
local helper = require "helper"

-- The descriptors open in this process, counted here, not by a child:
-- io.popen's child (ls) could list the parent's copy of the pipe's write
-- end, which glibc closes only once the child has exec'd (on a loaded
-- machine, now and then: one more than there are).
local function open_fds()
  return #assert(green.fs.scandir("/proc/self/fd"))
end

-- A connected pair whose buffers are small, so send() queues in user
-- space as soon as the peer stops reading.
local function tight_pair(server)
  local _, port = server:getsockname()
  local c = assert(green.connect("127.0.0.1", port))
  local s = assert(server:accept())
  for _, x in ipairs { c, s } do
    x:setoption("send-buffer-size", 4096)
    x:setoption("recv-buffer-size", 4096)
  end
  return c, s
end

describe("closing a socket with unsent bytes", function()
  it("lets the process exit when the peer never reads", function()
    local script = [[
      local green = require "green"
      local srv = assert(green.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local c = assert(green.connect("127.0.0.1", port))
      local s = assert(srv:accept()) -- never reads
      c:settimeout(0.1)
      local ok, err = c:sendall(string.rep("x", 16 << 20))
      print(ok, err)
      c:close()
      print("main done")
    ]]
    local out, err, code = helper.greenlua_run(script)
    assert.are.equal(0, code, err)
    assert.are.equal("nil\ttimeout\nmain done\n", out)
    -- and green.run() returns under stock lua5.4
    out, err, code = helper.lua54_run(script .. "\ngreen.run()\n"
                                      .. "print('run returned')\n")
    assert.are.equal(0, code, err)
    assert.matches("run returned\n$", out)
  end)

  it("releases descriptors at once with linger {on, timeout = 0}",
     function()
    green_run(function()
      local server = assert(green.listen("127.0.0.1", 0))
      local before = open_fds()
      local peers, outcome = {}, {}
      local handlers = green.GreenPool(100)
      local big = string.rep("y", 8 << 20) -- more than any buffer holds
      for i = 1, 100 do
        local c, s = tight_pair(server)
        peers[i] = c -- the client never reads
        handlers:spawn(function()
          s:setoption("linger", { on = true, timeout = 0 })
          s:settimeout(0.05)
          local ok, err = s:sendall(big)
          outcome[i] = ok and "sent" or err
          s:close() -- whatever happened: an abortive close
        end)
      end
      handlers:waitall()
      for i = 1, 100 do
        assert.are.equal("timeout", outcome[i], "sendall " .. i)
      end
      -- the 100 server ends are gone (the 100 clients are still open)
      -- (another spec's descriptor may have closed meanwhile: at most)
      local now = open_fds()
      assert.is_true(now <= before + 100, now .. " descriptors open, at "
                     .. "most " .. before .. " + 100 expected")
      for i, c in ipairs(peers) do
        local data, err, partial = c:receive("*a") -- reset by the close
        assert.is_truthy(err, ("client %d: receive('*a') after the abortive"
          .. " close got %d bytes and no error"):format(i,
          #(data or partial or "")))
        c:close()
      end
      server:close()
    end)
  end)

  it("releases them once the lingering makes no progress", function()
    green_run(function()
      local server = assert(green.listen("127.0.0.1", 0))
      local before = open_fds()
      local peers = {}
      for i = 1, 20 do
        local c, s = tight_pair(server)
        peers[i] = c
        s:setoption("linger", { on = true, timeout = 1 })
        s:settimeout(0.01)
        assert.is_nil(s:sendall(string.rep("z", 1 << 20)))
        s:close() -- lingers with bytes queued; the client never reads
      end
      local n
      helper.eventually(function()
        n = open_fds() -- (another spec's descriptor may close meanwhile)
        return n <= before + 20
      end, function() -- evaluated on failure
        return "the lingering sockets were dropped (" .. n .. " open, "
               .. before .. " + 20 expected)"
      end)
      for _, c in ipairs(peers) do c:close() end
      server:close()
    end)
  end)

  it("delivers everything to a slow peer that keeps reading", function()
    green_run(function()
      local server = assert(green.listen("127.0.0.1", 0))
      local c, s = tight_pair(server)
      c:setoption("linger", { on = true, timeout = 1 })
      local data = string.rep("0123456789abcdef", 6 * 1024) -- 96 KiB
      local writer = green.spawn(function()
        assert.is_true(c:sendall(data)) -- returns with <= 64 KiB queued
        c:close()
      end)
      local got = {}
      while true do -- 4 KiB per 0.1 s: the queue left at close() takes
        green.sleep(0.1) -- longer than the linger timeout, but each check
        local chunk, err = s:recv(4096) -- sees it shrink
        if not chunk then
          assert.are.equal("closed", err)
          break
        end
        got[#got + 1] = chunk
      end
      writer:wait()
      assert.are.equal(#data, #table.concat(got))
      assert.is_true(table.concat(got) == data)
      s:close()
      server:close()
    end)
  end)
end)
