-- Green TCP sockets: bindings/socket.c, bindings/tcp.c (issue 4).
local green = require "green"

local pair = require("helper").pair

local eventually = require("helper").eventually

-- A pair whose kernel buffers are small and fixed (64 KB each way, which
-- the kernel doubles), so that a few MB can never fit in them: loopback
-- TCP's autotuning otherwise grows them to several MB, and a writer
-- meant to fill them could finish without ever blocking.
local function tight_pair()
  local c, s = pair()
  assert(c:setoption("send-buffer-size", 64 * 1024))
  assert(s:setoption("recv-buffer-size", 64 * 1024))
  return c, s
end

local function suspended_in(gt, what)
  local st, w = gt:status()
  return st == "suspended" and w == what
end

local function has_ipv6()
  local s = green.listen("::1", 0)
  if s then s:close() return true end
  return false
end

describe("green sockets", function()

  describe("connect, listen, accept", function()
    it("echoes a line through a listening socket on 127.0.0.1:0", function()
      green_run(function()
        local srv = assert(green.listen("127.0.0.1", 0))
        local host, port, family = srv:getsockname()
        assert.are.equal("127.0.0.1", host)
        assert.is_true(port > 0)
        assert.are.equal("inet", family)
        local server = green.spawn(function()
          local c, addr = assert(srv:accept())
          assert.matches("^127%.0%.0%.1:%d+$", addr)
          local line = assert(c:receive())
          assert(c:send(line:upper() .. "\n"))
          c:close()
        end)
        local c = assert(green.connect("127.0.0.1", port))
        assert.are.equal(6, c:send("hello\n"))
        assert.are.equal("HELLO", c:receive())
        server:wait()
        c:close()
        srv:close()
      end)
    end)

    it("reports both ends' addresses", function()
      green_run(function()
        local c, s = pair()
        local ch, cp = c:getsockname()
        local ph, pp, pf = s:getpeername()
        assert.are.same({ ch, cp }, { ph, pp })
        assert.are.equal("inet", pf)
        local sh, sp = s:getsockname()
        local peer_h, peer_p = c:getpeername()
        assert.are.same({ sh, sp }, { peer_h, peer_p })
        assert.is_true(c:getfd() >= 0)
        assert.matches("^green%.socket %(fd %d+, connected%)$", tostring(c))
        c:close()
        s:close()
      end)
    end)

    it("resolves names through libuv's resolver (localhost)", function()
      green_run(function()
        local srv = assert(green.listen("127.0.0.1", 0))
        local _, port = srv:getsockname()
        local c = assert(green.connect("localhost", port, { family = "inet" }))
        local s = assert(srv:accept())
        c:send("x")
        assert.are.equal("x", s:receive(1))
        c:close(); s:close(); srv:close()
      end)
    end)

    it("returns nil, 'connection refused' for a closed port", function()
      green_run(function()
        local srv = assert(green.listen("127.0.0.1", 0))
        local _, port = srv:getsockname()
        srv:close()
        local c, err = green.connect("127.0.0.1", port)
        assert.is_nil(c)
        assert.are.equal("connection refused", err)
      end)
    end)

    it("returns nil, 'host not found' for an unknown host", function()
      green_run(function()
        local c, err = green.connect("no-such-host.invalid", 80)
        assert.is_nil(c)
        assert.are.equal("host not found", err)
      end)
    end)

    it("keeps other threads running while it resolves", function()
      green_run(function()
        local ticks = 0
        local ticker = green.spawn(function()
          for _ = 1, 3 do ticks = ticks + 1; green.sleep(0) end
        end)
        green.connect("no-such-host.invalid", 80)
        assert.is_true(ticks >= 1, "the ticker did not run meanwhile")
        ticker:wait()
        assert.are.equal(3, ticks)
      end)
    end)

    it("leaves nothing behind when killed while resolving or connecting",
       function()
      green_run(function()
        local srv = assert(green.listen("127.0.0.1", 0))
        local _, port = srv:getsockname()
        for _, host in ipairs { "127.0.0.1", "localhost" } do
          for yields = 0, 3 do -- kill at different points of the call
            local t = green.spawn(green.connect, host, port)
            for _ = 1, yields do green.sleep(0) end
            t:kill()
            local r = t:wait()
            if r ~= green.GreenletExit then r:close() end
          end
        end
        -- accept and close whatever got through, then nothing is left
        srv:settimeout(0)
        while srv:accept() do end
        srv:close()
      end)
    end)

    it("times out a connect with opts.timeout", function()
      green_run(function()
        local ok, err = pcall(green.with_timeout, 0.001, green.connect,
                              "no-such-host.invalid", 80)
        assert.is_true(ok or green.is_timeout(err))
        local c, cerr = green.connect("no-such-host.invalid", 80,
                                      { timeout = 0 })
        assert.is_nil(c)
        assert.is_truthy(cerr == "timeout" or cerr == "host not found")
      end)
    end)

    it("refuses a port in use, and shares one with reuseport", function()
      green_run(function()
        local a = assert(green.listen("127.0.0.1", 0, { reuseport = true }))
        local _, port = a:getsockname()
        local b, err = green.listen("127.0.0.1", port)
        assert.is_nil(b)
        assert.are.equal("address already in use", err)
        local c = assert(green.listen("127.0.0.1", port, { reuseport = true }))
        assert.are.equal(port, select(2, c:getsockname()))
        a:close(); c:close()
      end)
    end)

    it("works over IPv6 (::1) when the host has it", function()
      if not has_ipv6() then return pending("no IPv6 loopback") end
      green_run(function()
        local srv = assert(green.listen("::1", 0))
        local host, port, family = srv:getsockname()
        assert.are.equal("::1", host)
        assert.are.equal("inet6", family)
        green.spawn(function()
          local c, addr = assert(srv:accept())
          assert.matches("^%[::1%]:%d+$", addr)
          c:send(assert(c:receive()) .. "!\n")
          c:close()
        end)
        local c = assert(green.connect("::1", port))
        c:send("six\n")
        assert.are.equal("six!", c:receive())
        c:close()
        srv:close()
      end)
    end)

    it("times out an accept with settimeout and stays usable", function()
      green_run(function()
        local srv = assert(green.listen("127.0.0.1", 0))
        srv:settimeout(0.01)
        local c, err = srv:accept()
        assert.is_nil(c)
        assert.are.equal("timeout", err)
        srv:settimeout(nil)
        local _, port = srv:getsockname()
        local cl = assert(green.connect("127.0.0.1", port))
        assert(srv:accept()):close()
        cl:close()
        srv:close()
      end)
    end)

    it("raises on misuse and returns 'closed' after close", function()
      green_run(function()
        local c, s = pair()
        assert.has_error(function() c:receive("*x") end)
        assert.has_error(function() c:receive(-1) end)
        assert.has_error(function() c:accept() end)
        assert.has_error(function() c:setoption("no-such", true) end)
        c:close()
        assert.are.equal(1, c:close()) -- idempotent
        assert.are.equal("green.socket (closed)", tostring(c))
        assert.are.same({ nil, "closed", "" }, { c:receive() })
        assert.are.same({ nil, "closed" }, { c:recv() })
        assert.are.same({ nil, "closed", 0 }, { c:send("x") })
        assert.are.equal(-1, c:getfd())
        s:close()
      end)
    end)

    it("closes a socket in a to-be-closed variable", function()
      green_run(function()
        local c, s = pair()
        do
          local cc <close> = c
          cc:send("bye")
        end
        assert.are.equal("green.socket (closed)", tostring(c))
        assert.are.equal("bye", s:receive("*a"))
        s:close()
      end)
    end)
  end)

  describe("receive", function()
    it("reads lines, dropping CR like LuaSocket, with 'l' and '*l'", function()
      green_run(function()
        local c, s = pair()
        c:send("one\r\ntwo\nthree\n")
        assert.are.equal("one", s:receive())
        assert.are.equal("two", s:receive("*l"))
        assert.are.equal("three", s:receive("l"))
        c:close(); s:close()
      end)
    end)

    it("reads byte counts, with a prefix", function()
      green_run(function()
        local c, s = pair()
        c:send("abcdefgh")
        assert.are.equal("abc", s:receive(3))
        assert.are.equal(">>de", s:receive(4, ">>")) -- n counts the prefix
        assert.are.equal("", s:receive(0))
        c:close()
        assert.are.same({ nil, "closed", "p:fgh" }, { s:receive("*l", "p:") })
        c:close(); s:close()
      end)
    end)

    it("reads everything up to the end with '*a' and 'a'", function()
      green_run(function()
        local c, s = pair()
        green.spawn(function()
          for i = 1, 10 do c:send("chunk" .. i .. ";"); green.sleep(0) end
          c:close()
        end)
        local all = assert(s:receive("*a"))
        assert.are.equal(10, select(2, all:gsub("chunk", "")))
        -- at the end, nothing more: "closed" (LuaSocket's recvall)
        assert.are.same({ nil, "closed", "" }, { s:receive("a") })
        s:close()
      end)
    end)

    it("returns the partial line and count when the peer closes", function()
      green_run(function()
        local c, s = pair()
        c:send("no newline")
        c:close()
        assert.are.same({ nil, "closed", "pre:no newline" },
                        { s:receive("*l", "pre:") })
        assert.are.same({ nil, "closed", "" }, { s:receive(5) })
        s:close()
        local c2, s2 = pair()
        c2:send("abc")
        c2:close()
        assert.are.same({ nil, "closed", "abc" }, { s2:receive(10) })
        s2:close()
      end)
    end)

    it("recv(max) returns what is there, up to max", function()
      green_run(function()
        local c, s = pair()
        c:send("0123456789")
        eventually(function() return s:dirty() end, "data buffered")
        assert.are.equal("0123", s:recv(4))
        assert.are.equal("456789", s:recv(100))
        local t = green.spawn(function() return s:recv() end)
        green.sleep(0)
        assert.is_true(suspended_in(t, "socket:receive"))
        c:send("late")
        assert.are.equal("late", t:wait())
        c:close()
        assert.are.same({ nil, "closed" }, { s:recv() })
        s:close()
      end)
    end)

    it("times out with settimeout, returns the partial, stays usable",
       function()
      green_run(function()
        local c, s = pair()
        s:settimeout(0.02)
        assert.are.equal(0.02, s:gettimeout())
        c:send("abc")
        assert.are.same({ nil, "timeout", "abc" }, { s:receive() })
        c:send("def\n")
        assert.are.equal("def", s:receive())
        assert.are.same({ nil, "timeout" }, { s:recv() })
        s:settimeout(0) -- never blocks
        assert.are.same({ nil, "timeout", "" }, { s:receive(4) })
        s:settimeout(-1)
        c:send("wxyz")
        assert.are.equal("wxyz", s:receive(4))
        c:close(); s:close()
      end)
    end)

    it("reports a peer reset mid-read", function()
      green_run(function()
        local c, s = pair()
        local reader = green.spawn(function() return s:receive("*l") end)
        green.sleep(0)
        c:send("partial")
        c:setoption("linger", { on = true, timeout = 0 })
        c:close() -- SO_LINGER 0: the peer gets RST
        local ok, err, partial = reader:wait()
        assert.is_nil(ok)
        assert.is_truthy(err == "connection reset by peer" or err == "closed")
        assert.is_truthy(partial == "partial" or partial == "")
        s:close()
      end)
    end)

    it("wakes a thread blocked in receive with 'closed' on close", function()
      green_run(function()
        local c, s = pair()
        local reader = green.spawn(function() return s:receive(5, "p") end)
        green.sleep(0)
        assert.is_true(suspended_in(reader, "socket:receive"))
        s:close()
        assert.are.same({ nil, "closed", "p" }, { reader:wait() })
        c:close()
      end)
    end)

    it("loses no bytes when a reader is killed mid-read", function()
      green_run(function()
        local c, s = pair()
        local reader = green.spawn(function() return s:receive("*l") end)
        green.sleep(0)
        c:send("ab")
        eventually(function() return s:dirty() end, "partial line buffered")
        assert.is_true(suspended_in(reader, "socket:receive"))
        reader:kill()
        assert.are.equal(green.GreenletExit, reader:wait())
        c:send("c\n")
        local nextowner = green.spawn(function() return s:receive("*l") end)
        assert.are.equal("abc", nextowner:wait())
        c:close(); s:close()
      end)
    end)

    it("loses no bytes when a green.Timeout fires mid-read", function()
      green_run(function()
        local c, s = pair()
        c:send("12")
        local ok, err = pcall(green.with_timeout, 0.02, function()
          return s:receive(4)
        end)
        assert.is_false(ok)
        assert.is_true(green.is_timeout(err))
        c:send("34")
        assert.are.equal("1234", s:receive(4))
        c:close(); s:close()
      end)
    end)

    it("stops reading ahead when nobody receives (bounded buffer)", function()
      green_run(function()
        local c, s = tight_pair()
        local chunk = string.rep("x", 64 * 1024)
        local writer = green.spawn(function()
          for _ = 1, 64 do -- 4 MB, far more than the buffers
            if not c:sendall(chunk) then return end
          end
        end)
        eventually(function()
          return suspended_in(writer, "socket:sendall")
        end, "writer blocked by backpressure")
        local _, _, _, _, buffered = s:getstats()
        assert.is_true(buffered <= 128 * 1024, "buffered " .. buffered)
        local got = 0
        while got < 64 * #chunk do got = got + #assert(s:recv()) end
        writer:wait()
        local _, _, _, _, left = s:getstats()
        assert.are.equal(0, left) -- an empty buffer is freed
        c:close(); s:close()
      end)
    end)
  end)

  describe("send", function()
    it("sends data:sub(i, j) and returns the last index", function()
      green_run(function()
        local c, s = pair()
        assert.are.equal(4, c:send("abcdef", 2, 4))
        assert.are.equal(6, c:send("abcdef", -2))
        assert.are.equal(0, c:send(""))
        assert.are.equal("bcdef", s:receive(5))
        c:close(); s:close()
      end)
    end)

    it("sendall of several MB to a slow reader suspends the writer with "
       .. "bounded memory", function()
      green_run(function()
        local c, s = tight_pair()
        local parts = {}
        for i = 1, 4096 do parts[i] = string.format("%07d|", i) end
        local block = table.concat(parts) -- 32 KB
        local payload = string.rep(block, 128) -- 4 MB
        local writer = green.spawn(function() return c:sendall(payload) end)
        eventually(function()
          return suspended_in(writer, "socket:sendall")
        end, "writer suspended")
        local _, sent, _, queued = c:getstats()
        assert.is_true(sent < #payload, "everything was accepted at once")
        assert.is_true(queued <= 64 * 1024, "queued " .. queued)
        -- the slow reader: small reads with yields in between
        local got = {}
        local n = 0
        while n < #payload do
          local d = assert(s:recv(16 * 1024))
          got[#got + 1] = d
          n = n + #d
          if #got % 16 == 0 then green.sleep(0) end
        end
        assert.is_true(writer:wait())
        assert.is_true(table.concat(got) == payload, "payload corrupted")
        c:close(); s:close()
      end)
    end)

    it("returns nil, 'timeout', last index when the peer never reads",
       function()
      green_run(function()
        local c, s = tight_pair()
        c:settimeout(0.05)
        local big = string.rep("z", 8 * 1024 * 1024)
        local ok, err, last = c:send(big)
        assert.is_nil(ok)
        assert.are.equal("timeout", err)
        assert.is_true(last > 0 and last < #big)
        local _, sent = c:getstats()
        assert.are.equal(last, sent)
        c:close(); s:close()
      end)
    end)

    it("keeps the stream whole when a writer is killed mid-send", function()
      green_run(function()
        local c, s = tight_pair()
        local a = string.rep("A", 8 * 1024 * 1024)
        local writer = green.spawn(function() return c:send(a) end)
        eventually(function()
          return suspended_in(writer, "socket:send")
        end, "writer suspended")
        writer:kill()
        local _, taken = c:getstats() -- bytes of 'a' the socket accepted
        assert.is_true(taken > 0 and taken < #a)
        local nextowner = green.spawn(function() return c:send("BBBB") end)
        local got = {}
        local n = 0
        while n < taken + 4 do
          local d = assert(s:recv())
          got[#got + 1] = d
          n = n + #d
        end
        assert.are.equal(4, nextowner:wait())
        local all = table.concat(got)
        assert.are.equal(taken + 4, #all)
        assert.is_truthy(all == a:sub(1, taken) .. "BBBB")
        c:close(); s:close()
      end)
    end)

    it("a Timeout mid-send leaves the socket usable", function()
      green_run(function()
        local c, s = tight_pair()
        local big = string.rep("q", 8 * 1024 * 1024)
        local ok, err = pcall(green.with_timeout, 0.05, c.send, c, big)
        assert.is_false(ok)
        assert.is_true(green.is_timeout(err))
        local _, taken = c:getstats()
        s:settimeout(5)
        assert.are.equal(taken, #assert(s:receive(taken)))
        c:send("tail\n")
        assert.are.equal("tail", s:receive())
        c:close(); s:close()
      end)
    end)

    it("flushes queued bytes after close (lingering)", function()
      green_run(function()
        local c, s = tight_pair()
        local big = string.rep("L", 8 * 1024 * 1024)
        s:setlimit(nil) -- "*a" of 8 MiB: past the default receive limit
        local writer = green.spawn(function()
          c:sendall(big)
          c:close()
        end)
        eventually(function()
          return suspended_in(writer, "socket:sendall")
        end, "writer suspended")
        assert.are.equal(#big, #assert(s:receive("*a")))
        writer:wait()
        s:close()
      end)
    end)

    it("shutdown('send') ends the peer's '*a'", function()
      green_run(function()
        local c, s = pair()
        c:send("half")
        assert.are.equal(1, c:shutdown("send"))
        assert.are.equal("half", s:receive("*a"))
        assert.are.same({ nil, "closed", 0 }, { c:send("more") })
        s:send("reply")
        s:close()
        assert.are.equal("reply", c:receive("*a"))
        c:close()
      end)
    end)

    -- linger set on `c` reads back as set
    local function assert_linger_set(c)
      assert.are.same({ on = true, timeout = 3 },
                      (c:setoption("linger", { on = true, timeout = 3 })
                       and c:getoption("linger")))
    end

    it("sets and reads socket options", function()
      green_run(function()
        local c, s = pair()
        assert.are.equal(1, c:setoption("tcp-nodelay", true))
        assert.is_true(c:getoption("tcp-nodelay"))
        assert.are.equal(1, c:setoption("keepalive", true))
        assert.is_true(c:getoption("keepalive"))
        assert.are.equal(1, c:setoption("reuseaddr", true))
        assert_linger_set(c)
        c:close(); s:close()
      end)
    end)

    it("names the linger timeout it refuses", function()
      green_run(function()
        local c, s = pair()
        for _, t in ipairs { 0 / 0, 1.5, "x", -1, 86401 } do
          local ok, err = pcall(c.setoption, c, "linger",
                                { on = true, timeout = t })
          assert.is_false(ok)
          -- (#3 through pcall: Lua counts the method's self then)
          -- (a type: "(timeout: integer expected, ...)"; a range:
          -- "(linger timeout out of range ...)")
          assert.is_truthy(err:match("^bad argument #%d to '[^']+' %(timeout:")
                           or err:match("^bad argument #%d to '[^']+' "
                                        .. "%(linger timeout"), err)
          assert.is_nil(err:find("#-", 1, true))
        end
        assert_linger_set(c)
        c:close(); s:close()
      end)
    end)
  end)

  describe("one reader, one writer", function()
    it("raises 'Second simultaneous read' naming both threads", function()
      green_run(function()
        local c, s = pair()
        local first = green.spawn(function() return s:receive() end)
        first.name = "first-reader"
        green.sleep(0)
        local second = green.spawn(function() return s:receive() end)
        second.name = "second-reader"
        local ok, err = pcall(second.wait, second)
        assert.is_false(ok)
        assert.matches("Second simultaneous read on fileno " .. s:getfd()
                       .. " detected", err, 1, true)
        assert.matches("hub_prevent_multiple_readers(false)", err, 1, true)
        assert.matches("MY THREAD=GreenThread %d+ 'second%-reader'", err)
        assert.matches("THAT THREAD=GreenThread %d+ 'first%-reader'", err)
        c:send("for the first\n")
        assert.are.equal("for the first", first:wait())
        c:close(); s:close()
      end)
    end)

    it("raises 'Second simultaneous write' too", function()
      green_run(function()
        local c, s = tight_pair()
        local big = string.rep("w", 8 * 1024 * 1024)
        local first = green.spawn(function() return c:send(big) end)
        eventually(function() return suspended_in(first, "socket:send") end)
        local ok, err = pcall(c.send, c, "x")
        assert.is_false(ok)
        assert.matches("Second simultaneous write on fileno", err, 1, true)
        c:close()
        assert.are.same("closed", select(2, first:wait()))
        s:close()
      end)
    end)

    it("queues readers FIFO when the check is disabled", function()
      green_run(function()
        local old = green.debug.hub_prevent_multiple_readers(false)
        local c, s = pair()
        local got = {}
        local readers = {}
        for i = 1, 3 do
          readers[i] = green.spawn(function()
            local line = assert(s:receive())
            got[#got + 1] = i .. ":" .. line
          end)
        end
        green.sleep(0)
        c:send("a\nb\nc\n")
        for i = 1, 3 do readers[i]:wait() end
        green.debug.hub_prevent_multiple_readers(old)
        assert.are.same({ "1:a", "2:b", "3:c" }, got)
        c:close(); s:close()
      end)
    end)

    it("closing wakes every queued reader with 'closed'", function()
      green_run(function()
        local old = green.debug.hub_prevent_multiple_readers(false)
        local c, s = pair()
        local readers = {}
        for i = 1, 3 do
          readers[i] = green.spawn(function() return s:receive() end)
        end
        green.sleep(0)
        s:close()
        for i = 1, 3 do
          assert.are.same({ nil, "closed", "" }, { readers[i]:wait() })
        end
        green.debug.hub_prevent_multiple_readers(old)
        c:close()
      end)
    end)
  end)

  describe("green.debug.hub_prevent_multiple_readers", function()
    it("takes a nil argument as none: it only asks", function()
      local old = green.debug.hub_prevent_multiple_readers()
      finally(function() green.debug.hub_prevent_multiple_readers(old) end)
      assert.are.equal(old, green.debug.hub_prevent_multiple_readers(nil))
      assert.are.equal(old, green.debug.hub_prevent_multiple_readers())
    end)
  end)

  describe("fairness and load", function()
    it("an operation that yields for fairness runs again as itself",
       function()
      green_run(function()
        -- 200 in a row that complete without blocking: every 64th yields
        -- first and then runs again; run as another method it would
        -- return that method's results.
        local c, s = pair()
        for _ = 1, 200 do assert.are.equal(3, c:send("abc")) end
        for _ = 1, 200 do assert.is_true(c:sendall("def")) end
        for _ = 1, 200 do assert.are.equal("abc", s:receive(3)) end
        for _ = 1, 200 do assert.are.equal("def", s:receive(3)) end
        c:close(); s:close()
        local a, b = assert(green.udp()), assert(green.udp())
        assert(a:setsockname("127.0.0.1", 0))
        local _, port = a:getsockname()
        for i = 1, 200 do assert(b:sendto(tostring(i), "127.0.0.1", port)) end
        a:settimeout(0) -- never waits: each takes one from the kernel
        for i = 1, 200 do
          local data, ip = a:receivefrom()
          assert.are.same({ tostring(i), "127.0.0.1" }, { data, ip })
        end
        a:close(); b:close()
      end)
    end)

    it("a reader that never blocks still lets other threads run", function()
      green_run(function()
        local c, s = pair()
        local lines = 5000
        c:sendall(string.rep("line\n", lines))
        eventually(function()
          return select(5, s:getstats()) == lines * 5
        end, "all lines buffered")
        local ticks = 0
        local ticker = green.spawn(function()
          while true do ticks = ticks + 1; green.sleep(0) end
        end)
        green.sleep(0)
        local seen = ticks
        for _ = 1, lines do assert.are.equal("line", s:receive()) end
        assert.is_true(ticks - seen >= lines // 64 - 1,
                       "ticker ran " .. (ticks - seen) .. " times")
        ticker:kill()
        c:close(); s:close()
      end)
    end)

    it("serves 200 connections overlapping in time", function()
      green_run(function()
        local n = 200
        local srv = assert(green.listen("127.0.0.1", 0))
        local _, port = srv:getsockname()
        -- Nobody talks until all n handlers hold their connection open,
        -- so all n are open at once; a handler ends only after its
        -- client has closed.
        local open, maxopen, all_open = 0, 0, green.Event()
        local handlers = {}
        local acceptor = green.spawn(function()
          for i = 1, n do
            local c = assert(srv:accept())
            handlers[i] = green.spawn(function()
              open = open + 1
              if open > maxopen then maxopen = open end
              if open == n then all_open:send() end
              local line = assert(c:receive())
              c:send(line .. "!\n")
              assert.are.same({ nil, "closed", "" }, { c:receive() })
              open = open - 1
              c:close()
            end)
          end
        end)
        local clients = {}
        for i = 1, n do
          clients[i] = green.spawn(function()
            local c = assert(green.connect("127.0.0.1", port))
            all_open:wait()
            c:send("hi " .. i .. "\n")
            local r = assert(c:receive())
            c:close()
            return r
          end)
        end
        for i = 1, n do
          assert.are.equal("hi " .. i .. "!", clients[i]:wait())
        end
        acceptor:wait()
        for i = 1, n do handlers[i]:wait() end
        srv:close()
        assert.are.equal(0, open)
        assert.are.equal(n, maxopen)
      end)
    end)
  end)

  it("works from the host's main thread under stock lua5.4", function()
    local helper = require "helper"
    local out, err, code = helper.lua54_run([[
      local green = require "green"
      local srv = assert(green.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      green.spawn(function()
        local c = assert(srv:accept())
        c:send(assert(c:receive()) .. "?\n")
        c:close()
      end)
      local c = assert(green.connect("127.0.0.1", port))
      c:send("main\n")
      print(c:receive())
      c:close()
      srv:close()
      green.run()
    ]])
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("main?\n", out)
  end)
end)
