-- Issue 7, fault 5: a peer that never sends "\n" (or never closes) grew
-- the process by ~1 GB/s through receive("*l"), receive("*a") or
-- receive(huge_n), and the memory stayed after the reader was killed.
-- Stream sockets have a receive limit (1 MiB unless set): past it a
-- receive returns nil, "too long", partial, and the socket stops reading.
local green = require "green"
local helper = require "helper"

local pair = helper.pair

-- Send 'total' bytes of 'x' (no end of line) from 'c' for at most
-- 'seconds'; returns how many the kernel and the socket took.
local function flood(c, total, seconds)
  return green.spawn(function()
    c:settimeout(seconds)
    local chunk = string.rep("x", 64 * 1024)
    local sent = 0
    while sent < total do
      local ok = c:sendall(chunk)
      if not ok then break end
      sent = sent + #chunk
    end
    return sent
  end)
end

local function buffered(s)
  return select(5, s:getstats())
end

describe("the receive limit", function()
  it("is 1 MiB by default, inherited from the listener, and settable",
     function()
    green_run(function()
      local c, s = pair()
      assert.are.equal(1 << 20, c:getlimit())
      assert.are.equal(1 << 20, s:getlimit())
      c:close(); s:close()
      c, s = pair(4096)
      assert.are.equal(1 << 20, c:getlimit())
      assert.are.equal(4096, s:getlimit()) -- accepted: the listener's
      assert.are.equal(1, s:setlimit(nil))
      assert.is_nil(s:getlimit())
      s:setlimit(math.huge)
      assert.is_nil(s:getlimit())
      assert.has_error(function() s:setlimit(-1) end)
      c:close(); s:close()
    end)
  end)

  it("ends a line that never ends with nil, 'too long', partial",
     function()
    green_run(function()
      local c, s = pair(64 * 1024)
      local f = flood(c, 64 << 20, 2)
      local line, err, partial = s:receive("*l")
      assert.is_nil(line)
      assert.are.equal("too long", err)
      assert.are.equal(64 * 1024, #partial)
      -- It stopped reading: the sender is held back by the kernel window
      -- instead of the process growing.
      assert.is_true(buffered(s) <= 256 * 1024, buffered(s))
      s:close()
      assert.is_true(f:wait() < 64 << 20)
      c:close()
    end)
  end)

  it("ends receive('*a') of a stream that never closes", function()
    green_run(function()
      local c, s = pair(64 * 1024)
      local f = flood(c, 64 << 20, 2)
      local data, err, partial = s:receive("*a")
      assert.is_nil(data)
      assert.are.equal("too long", err)
      assert.are.equal(64 * 1024, #partial)
      s:close()
      assert.is_true(f:wait() < 64 << 20)
      c:close()
    end)
  end)

  it("refuses receive(n) above the limit at once, taking nothing",
     function()
    green_run(function()
      local c, s = pair(1000)
      c:send("abcdef")
      assert.are.same({ n = 3, nil, "too long", "" },
                      table.pack(s:receive(1001)))
      assert.are.same({ n = 3, nil, "too long", "pre" },
                      table.pack(s:receive(1004, "pre"))) -- 1001 to read
      assert.are.equal("abc", s:receive(3)) -- nothing was taken
      c:close(); s:close()
    end)
  end)

  it("lets a line of exactly the limit through", function()
    green_run(function()
      local c, s = pair(10)
      c:send("0123456789\n01234567890\nok\n")
      assert.are.equal("0123456789", s:receive("*l"))
      local line, err, partial = s:receive("*l")
      assert.is_nil(line)
      assert.are.equal("too long", err)
      assert.are.equal("0123456789", partial)
      assert.are.equal("0", s:receive("*l")) -- the rest of that line
      assert.are.equal("ok", s:receive("*l"))
      c:close(); s:close()
    end)
  end)

  it("keeps examples/hello_http.lua alive against an endless request line",
     function()
    local script = "examples/hello_http.lua"
    local out, err, code = helper.greenlua_run(([[
      local green = require "green"
      arg = { [0] = %q, "0", "1" }
      green.spawn(function()
        -- wait for the example to listen, then attack it
        local port
        for _ = 1, 1000 do
          port = _G.EXAMPLE_PORT
          if port then break end
          green.sleep(0.001)
        end
        local c = assert(green.connect("127.0.0.1", port))
        c:settimeout(5)
        local x = string.rep("x", 64 * 1024)
        c:send("GET /") -- then a URL that never ends
        for _ = 1, 64 do if not c:send(x) then break end end
        local status = c:receive("*l")
        print("attacker got: " .. tostring(status))
        c:close()
        local d = assert(green.connect("127.0.0.1", port))
        d:send("GET / HTTP/1.0\r\n\r\n")
        print("then: " .. tostring(d:receive("*l")))
        d:close()
      end)
      local print0 = print
      print = function(s, ...) -- learn the port from the first line
        local p = tostring(s):match("listening on [^:]+:(%%d+)")
        if p then _G.EXAMPLE_PORT = tonumber(p) end
        return print0(s, ...)
      end
      dofile(%q)
    ]]):format(script, script))
    assert.are.equal(0, code, err)
    assert.matches("attacker got: HTTP/1.1 414 URI Too Long", out)
    assert.matches("then: HTTP/1.1 200 OK", out)
  end)
end)
