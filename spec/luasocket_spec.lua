-- green.socket: the LuaSocket-compatible module (lua/green/socket.lua,
-- issue 4), checked against the real LuaSocket (Debian's lua-socket)
-- where the two can be compared: names, classes, results and error
-- strings.
local green = require "green"
local socket = require "green.socket"
local h = require "helper"

-- The real LuaSocket C module, loaded beside green.socket (never through
-- require, so nothing here depends on what package.loaded holds).
local function real_core()
  local path = package.searchpath("socket.core", package.cpath
    .. ";/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;/usr/local/lib/lua/5.4/?.so"
    .. ";/usr/lib/lua/5.4/?.so")
  assert(path, "Debian's lua-socket (socket/core.so) is not installed")
  return assert(package.loadlib(path, "luaopen_socket_core"))()
end
local real = real_core()

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- A free loopback port with nothing listening on it.
local function closed_port()
  local s = assert(green.listen("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

-- socket.bind + socket.connect + accept: client, server side, server.
local function pair()
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local c = assert(socket.connect("127.0.0.1", port))
  local s = assert(srv:accept())
  return c, s, srv
end

describe("green.socket (LuaSocket compatible)", function()

  describe("shape", function()
    it("has every function and constant of the real socket.core", function()
      for _, k in ipairs(keys(real)) do
        assert.is_not_nil(socket[k], "missing socket." .. k)
        assert.are.equal(type(real[k]), type(socket[k]), "socket." .. k)
      end
      assert.are.equal(real._VERSION, socket._VERSION)
      assert.are.equal(real._SETSIZE, socket._SETSIZE)
      assert.are.equal(real._DATAGRAMSIZE, socket._DATAGRAMSIZE)
      for _, k in ipairs(keys(real.dns)) do
        assert.are.equal("function", type(socket.dns[k]), "dns." .. k)
      end
    end)

    it("has the helper part of LuaSocket's socket.lua too", function()
      assert.are.equal(2048, socket.BLOCKSIZE)
      for _, k in ipairs { "connect4", "connect6", "bind", "try", "choose",
                           "sink", "source" } do
        assert.are.equal("function", type(socket[k]), k)
      end
      for _, k in ipairs { "close-when-done", "keep-open", "default" } do
        assert.are.equal("function", type(socket.sinkt[k]), k)
      end
      for _, k in ipairs { "by-length", "until-closed", "default" } do
        assert.are.equal("function", type(socket.sourcet[k]), k)
      end
    end)

    it("gives tcp objects every method of LuaSocket's, and its classes",
       function()
      local rm = real.tcp()
      local m = socket.tcp()
      assert.are.same(keys(getmetatable(rm).__index),
                      keys(getmetatable(m).__index))
      assert.are.equal("tcp{master}", getmetatable(m).__index.class)
      assert.matches("^tcp{master}: 0x%x+$", tostring(m))
      assert.matches("^tcp{master}: 0x%x+$", tostring(rm))
      assert.are.same({ rm:gettimeout() }, { m:gettimeout() })
      assert.are.same({ rm:getfamily() }, { m:getfamily() })
      assert.are.equal("inet6", socket.tcp6():getfamily())
      assert.are.equal(-1, m:getfd())
      rm:close()
      m:close()
    end)

    it("raises LuaSocket's errors for misuse", function()
      local m = socket.tcp()
      assert.has_error(function() m:receive() end,
                       "bad argument #1 to 'receive' (tcp{client} expected, "
                       .. "got tcp{master})")
      assert.has_error(function() m:accept() end,
                       "bad argument #1 to 'accept' (tcp{server} expected, "
                       .. "got tcp{master})")
      assert.has_error(function() m:settimeout(1, "x") end,
                       "bad argument #3 to 'settimeout' (invalid timeout mode)")
      assert.has_error(function() m:setoption("bogus", true) end,
                       "bad argument #2 to 'setoption' (unsupported option "
                       .. "`bogus')")
      m:close()
    end)
  end)

  describe("tcp", function()
    it("connects a master, which becomes a client, and echoes", function()
      green_run(function()
        local srv = assert(socket.bind("127.0.0.1", 0))
        assert.matches("^tcp{server}: 0x%x+$", tostring(srv))
        local host, port, family = srv:getsockname()
        assert.are.same({ "127.0.0.1", "inet" }, { host, family })
        local server = green.spawn(function()
          local c = assert(srv:accept())
          assert.matches("^tcp{client}: 0x%x+$", tostring(c))
          assert.are.equal("127.0.0.1", (c:getpeername()))
          local line = assert(c:receive("*l"))
          assert(c:send(line:upper() .. "\n"))
          c:close()
        end)
        local c = socket.tcp()
        assert.are.equal(1, c:settimeout(5))
        assert.are.equal(1, c:connect("127.0.0.1", port))
        assert.are.equal("tcp{client}", getmetatable(c).__index.class)
        assert.are.same({ nil, "already connected" },
                        { c:connect("127.0.0.1", port) })
        assert.are.equal(6, c:send("hello\n"))
        assert.are.equal("HELLO", c:receive())
        assert.are.same({ nil, "closed", "" }, { c:receive() })
        server:wait()
        assert.are.equal(1, c:close())
        assert.are.equal(1, c:close()) -- again: still fine
        srv:close()
      end)
    end)

    it("supports tcp():bind():listen() and socket.connect4", function()
      green_run(function()
        local m = socket.tcp4()
        assert.are.equal(1, m:setoption("reuseaddr", true))
        assert.are.equal(1, m:bind("127.0.0.1", 0))
        assert.are.equal("tcp{master}", getmetatable(m).__index.class)
        local _, bport = m:getsockname()
        assert.is_true(bport > 0)
        assert.are.same({ nil, "local address binding is not supported" },
                        { m:connect("127.0.0.1", bport) })
        assert.are.equal(1, m:listen(16))
        assert.are.equal("tcp{server}", getmetatable(m).__index.class)
        local _, port = m:getsockname()
        local c = assert(socket.connect4("127.0.0.1", port))
        local s = assert(m:accept())
        assert(c:send("ab"))
        assert.are.equal("ab", s:receive(2))
        c:close(); s:close(); m:close()
      end)
    end)

    it("receives LuaSocket's patterns, with prefix and the partial result",
       function()
      green_run(function()
        local c, s, srv = pair()
        assert(c:send("line one\r\nline two\nabcdef"))
        assert.are.equal("line one", s:receive("*l"))
        assert.are.equal(">line two", s:receive("l", ">"))
        assert.are.equal("abc", s:receive(3))
        s:settimeout(0.01)
        assert.are.same({ nil, "timeout", "def" }, { s:receive(10) })
        c:send("!")
        c:close()
        assert.are.equal("!", s:receive("*a"))
        s:close(); srv:close()
      end)
    end)

    it("sends data:sub(i, j) and reports stats and options", function()
      green_run(function()
        local c, s, srv = pair()
        assert.are.equal(4, c:send("abcdef", 2, 4))
        assert.are.equal("bcd", s:receive(3))
        local r, sent, age = c:getstats()
        assert.are.same({ 0, 3 }, { r, sent })
        assert.is_true(age >= 0)
        assert.are.equal(1, c:setstats(10, 20))
        local r2, s2 = c:getstats()
        assert.are.same({ 10, 20 }, { r2, s2 })
        assert.are.equal(1, c:setoption("tcp-nodelay", true))
        assert.is_true(c:getoption("tcp-nodelay"))
        assert.are.equal(1, c:setoption("keepalive", true))
        assert.is_true(c:getoption("keepalive"))
        assert.is_true(c:getfd() >= 0)
        assert.is_false(s:dirty())
        c:send("x")
        h.eventually(function() return s:dirty() end, "the byte buffered")
        assert.are.equal(1, c:shutdown("send"))
        assert.are.equal("x", s:receive("*a"))
        c:close(); s:close(); srv:close()
      end)
    end)

    it("applies options set on the master once connected", function()
      green_run(function()
        local srv = assert(socket.bind("127.0.0.1", 0))
        local m = socket.tcp()
        assert.are.equal(1, m:setoption("tcp-nodelay", true))
        assert.is_true(m:getoption("tcp-nodelay"))
        assert(m:connect(srv:getsockname()))
        assert.is_true(m:getoption("tcp-nodelay"))
        m:close(); srv:close()
      end)
    end)

    it("works on ::1 (tcp6)", function()
      green_run(function()
        local probe = green.listen("::1", 0)
        if not probe then return end -- no IPv6 on this machine
        probe:close()
        local srv = assert(socket.bind("::1", 0))
        local host, port, family = srv:getsockname()
        assert.are.same({ "::1", "inet6" }, { host, family })
        local c = assert(socket.connect6("::1", port))
        local s = assert(srv:accept())
        assert.are.equal("inet6", c:getfamily())
        c:send("6\n")
        assert.are.equal("6", s:receive())
        c:close(); s:close(); srv:close()
      end)
    end)
  end)

  describe("bad cases, with the real LuaSocket's error strings", function()
    it("connection refused", function()
      local port = closed_port()
      local want = { real.connect("127.0.0.1", port) }
      assert.are.same({ nil, "connection refused" }, want)
      green_run(function()
        assert.are.same(want, { socket.connect("127.0.0.1", port) })
        local m = socket.tcp()
        assert.are.same(want, { m:connect("127.0.0.1", port) })
        m:close()
      end)
    end)

    it("unknown host", function()
      local want = { real.connect("no-such-host.invalid", 80) }
      assert.is_nil(want[1])
      green_run(function()
        assert.are.same(want, { socket.connect("no-such-host.invalid", 80) })
        -- LuaSocket's socket.bind reports getaddrinfo's failure
        assert.are.same({ real.dns.getaddrinfo("no-such-host.invalid") },
                        { socket.bind("no-such-host.invalid", 0) })
      end)
      assert.are.same({ nil, "host not found" },
                      { real.dns.toip("no-such-host.invalid") })
      green_run(function()
        assert.are.same({ nil, "host not found" },
                        { socket.dns.toip("no-such-host.invalid") })
      end)
    end)

    it("address already in use", function()
      green_run(function()
        local srv = assert(socket.bind("127.0.0.1", 0))
        local _, port = srv:getsockname()
        assert.are.same({ nil, "address already in use" },
                        { socket.bind("127.0.0.1", port) })
        srv:close()
      end)
    end)

    it("timeout, in receive, accept and connect-free waits", function()
      green_run(function()
        local c, s, srv = pair()
        s:settimeout(0.01)
        assert.are.same({ nil, "timeout", "" }, { s:receive() })
        s:settimeout(nil)
        s:settimeout(0.01, "t")
        assert.are.same({ -1, 0.01 }, { s:gettimeout() })
        assert.are.same({ nil, "timeout", "" }, { s:receive(1) })
        srv:settimeout(0)
        assert.are.same({ nil, "timeout" }, { srv:accept() })
        c:close(); s:close(); srv:close()
      end)
    end)

    it("a connection reset by the peer is 'closed', as in LuaSocket",
       function()
      green_run(function()
        local c, s, srv = pair()
        assert(c:setoption("linger", { on = true, timeout = 0 }))
        c:close() -- RST
        assert.are.same({ nil, "closed", "" }, { s:receive() })
        assert.are.same({ nil, "closed", 0 }, { s:send("x") })
        s:close(); srv:close()
      end)
    end)

    it("a closed object keeps its class and answers 'closed'", function()
      green_run(function()
        local c, s, srv = pair()
        c:close()
        assert.matches("^tcp{client}: 0x%x+$", tostring(c))
        assert.are.same({ nil, "closed", "" }, { c:receive() })
        assert.are.same({ nil, "closed", 0 }, { c:send("x") })
        assert.are.equal(-1, c:getfd())
        assert.is_false(c:dirty())
        assert.are.equal(1, c:shutdown())
        assert.is_nil((c:getsockname()))
        srv:close()
        assert.are.same({ nil, "closed" }, { srv:accept() })
        s:close()
      end)
    end)

    it("closing wakes a green thread blocked in receive with 'closed'",
       function()
      green_run(function()
        local c, s, srv = pair()
        local reader = green.spawn(function() return s:receive() end)
        h.until_suspended(reader)
        s:close()
        assert.are.same({ nil, "closed", "" }, { reader:wait() })
        c:close(); srv:close()
      end)
    end)
  end)

  describe("try, protect, newtry, skip", function()
    it("protect turns try's errors into nil, err, like LuaSocket's", function()
      for _, mod in ipairs { real, socket } do
        local finalized = 0
        local try = mod.newtry(function() finalized = finalized + 1 end)
        local f = mod.protect(function(x)
          local a, b = try(x, "unused")
          assert.are.same({ 1, "unused" }, { a, b })
          try(nil, "boom")
          error("not reached")
        end)
        assert.are.same({ nil, "boom" }, { f(1) })
        assert.are.equal(1, finalized)
        -- other errors propagate
        local g = mod.protect(function() error("real error", 0) end)
        assert.has_error(g, "real error")
        -- socket.try raises a value that is not a string
        local ok, err = pcall(mod.newtry(), nil, "x")
        assert.is_false(ok)
        assert.are.equal("table", type(err))
        assert.are.same({ "b", "c" }, { mod.skip(1, "a", "b", "c") })
      end
    end)

    it("protect and try work across blocking calls in green threads",
       function()
      green_run(function()
        local port = closed_port()
        local fetch = socket.protect(function()
          local c = socket.try(socket.connect("127.0.0.1", port))
          return c
        end)
        local a = green.spawn(fetch)
        local b = green.spawn(fetch)
        assert.are.same({ nil, "connection refused" }, { a:wait() })
        assert.are.same({ nil, "connection refused" }, { b:wait() })
      end)
    end)
  end)

  describe("sink and source", function()
    it("pumps through LTN12 with socket.sink and socket.source", function()
      local ltn12 = require "ltn12"
      green_run(function()
        local c, s, srv = pair()
        local data = string.rep("0123456789", 1000)
        local writer = green.spawn(function()
          assert(ltn12.pump.all(ltn12.source.string(data),
                                socket.sink("close-when-done", c)))
        end)
        local got = {}
        assert(ltn12.pump.all(socket.source("by-length", s, 5000),
                              (ltn12.sink.table(got))))
        assert.are.equal(data:sub(1, 5000), table.concat(got))
        local rest = {}
        assert(ltn12.pump.all(socket.source("until-closed", s),
                              (ltn12.sink.table(rest))))
        assert.are.equal(data:sub(5001), table.concat(rest))
        writer:wait()
        srv:close()
      end)
    end)
  end)

  describe("sleep, gettime, dns", function()
    it("sleeps green", function()
      green_run(function()
        local ticks = 0
        local t = green.spawn(function()
          for _ = 1, 3 do ticks = ticks + 1; green.sleep(0) end
        end)
        socket.sleep(0.01)
        -- the ticker ran while socket.sleep waited (it is first in line)
        assert.is_true(ticks >= 1)
        t:wait()
        assert.are.equal(3, ticks)
      end)
    end)

    it("sleep refuses what is not a number, as LuaSocket's does",
       function()
      green_run(function()
        for _, bad in ipairs { "x", {}, false } do
          local rok = pcall(real.sleep, bad)
          local ok, err = pcall(socket.sleep, bad)
          assert.are.equal(rok, ok)
          assert.are.equal("bad argument #1 to 'sleep' (number expected, "
                           .. "got " .. type(bad) .. ")", err)
        end
        local ok, err = pcall(socket.sleep)
        assert.is_false(ok)
        assert.matches("number expected, got no value", err)
        socket.sleep("0.001") -- a numeric string is a number
        socket.sleep(-1) -- a negative value is 0
      end)
    end)

    it("gettime is wall-clock seconds and never goes backwards", function()
      local a = socket.gettime()
      assert.is_true(math.abs(a - real.gettime()) < 1.5)
      assert.is_true(socket.gettime() >= a)
    end)

    it("resolves localhost and literal addresses", function()
      green_run(function()
        local ip, info = socket.dns.toip("localhost")
        assert.are.equal("127.0.0.1", ip)
        assert.are.equal("127.0.0.1", info.ip[1])
        assert.are.equal("10.1.2.3", (socket.dns.toip("10.1.2.3")))
        local list = assert(socket.dns.getaddrinfo("127.0.0.1"))
        assert.are.same({ { family = "inet", addr = "127.0.0.1" } }, list)
        assert.are.equal(real.dns.tohostname("127.0.0.1"),
                         (socket.dns.tohostname("127.0.0.1")))
        assert.are.equal(real.dns.gethostname(), socket.dns.gethostname())
      end)
    end)

    it("reads literal addresses as LuaSocket does (the C resolver's parsing)",
       function()
      green_run(function()
        -- in their usual form; toip and tohostname are IPv4 only
        assert.are.same(real.dns.getaddrinfo("0:0::1"),
                        socket.dns.getaddrinfo("0:0::1"))
        assert.are.same({ real.dns.toip("::1") }, { socket.dns.toip("::1") })
        assert.are.same({ real.dns.tohostname("::1") },
                        { socket.dns.tohostname("::1") })
      end)
    end)
  end)

  describe("udp (on green.udp)", function()
    it("words an unknown host as LuaSocket", function()
      green_run(function()
        local u, r = assert(socket.udp()), real.udp()
        assert.are.same({ r:setsockname("no-such-host.invalid", 0) },
                        { u:setsockname("no-such-host.invalid", 0) })
        assert.are.same({ r:setpeername("no-such-host.invalid", 9) },
                        { u:setpeername("no-such-host.invalid", 9) })
        u:close()
        r:close()
      end)
    end)

    it("words other errors with the C library's message, as LuaSocket",
       function()
      green_run(function()
        local u, r = assert(socket.udp()), real.udp()
        local big = string.rep("x", 70000) -- more than a datagram holds
        local want = { r:sendto(big, "127.0.0.1", 9) }
        assert.are.same({ nil, "Message too long" }, want)
        assert.are.same(want, { u:sendto(big, "127.0.0.1", 9) })
        u:close()
        r:close()
      end)
    end)

    it("sends and receives datagrams, connected and not", function()
      green_run(function()
        local a = assert(socket.udp())
        assert.matches("^udp{unconnected}: 0x%x+$", tostring(a))
        assert.are.equal(1, a:setsockname("127.0.0.1", 0))
        local _, port = a:getsockname()
        local b = assert(socket.udp4())
        assert.are.equal(1, b:setpeername("127.0.0.1", port))
        assert.matches("^udp{connected}: 0x%x+$", tostring(b))
        assert.are.equal("udp{connected}", getmetatable(b).__index.class)
        assert.are.equal(4, b:send("ping"))
        local data, ip, bport = a:receivefrom()
        assert.are.same({ "ping", "127.0.0.1", (select(2, b:getsockname())) },
                        { data, ip, bport })
        assert.are.equal(4, a:sendto("pong", ip, bport))
        assert.are.equal("pong", b:receive())
        assert.has_error(function() a:send("x") end,
          "bad argument #1 to 'send' (udp{connected} expected, got "
          .. "udp{unconnected})")
        a:settimeout(0.01)
        assert.are.same({ nil, "timeout" }, { a:receivefrom() })
        assert.are.equal(1, b:setpeername("*"))
        assert.matches("^udp{unconnected}: ", tostring(b))
        a:close(); b:close()
        assert.are.same({ nil, "closed" }, { a:receive() })
        assert.are.equal(-1, a:getfd())
      end)
    end)

    -- green.udp's own argument errors named the function '?' (called
    -- through u[name]), counted the object and pointed into
    -- green/socket.lua: they are LuaSocket's, at the caller's line.
    it("names the method in its argument errors, at the caller", function()
      green_run(function()
        local u = assert(socket.udp())
        local here = debug.getinfo(1, "S").short_src .. ":"
        local cases = {
          { "setsockname", 2, function()
              local r = u:setsockname("127.0.0.1", {}) return r end },
          { "sendto", 1, function()
              local r = u:sendto({}, "127.0.0.1", 1) return r end },
          { "sendto", 3, function()
              local r = u:sendto("x", "127.0.0.1", {}) return r end },
          { "receivefrom", 1, function()
              local r = u:receivefrom({}) return r end },
          { "receive", 1, function() local r = u:receive({}) return r end },
          { "setoption", 1, function()
              local r = u:setoption({}) return r end },
          { "getoption", 1, function()
              local r = u:getoption({}) return r end },
          { "setpeername", 2, function()
              local r = u:setpeername("127.0.0.1", {}) return r end },
        }
        for _, c in ipairs(cases) do
          local ok, err = pcall(c[3])
          assert.is_false(ok)
          local msg = ("bad argument #%d to '%s' ("):format(c[2], c[1])
          assert.are.equal(msg, err:match("bad argument .-%("), err)
          assert.are.equal(here, err:sub(1, #here), err)
        end
        assert(u:setpeername("127.0.0.1", 9))
        local ok, err = pcall(function() local r = u:send({}) return r end)
        assert.is_false(ok)
        assert.matches("^" .. here:gsub("%p", "%%%0")
                       .. "%d+: bad argument #1 to 'send' %(string expected",
                       err)
        u:close()
      end)
    end)

    it("has every method of LuaSocket's udp objects", function()
      local ru = real.udp()
      local u = assert(socket.udp())
      assert.are.same(keys(getmetatable(ru).__index),
                      keys(getmetatable(u).__index))
      ru:close()
      u:close()
    end)
  end)

  describe("select (on green.select)", function()
    it("selects readable sockets, as LuaSocket (list and index)", function()
      green_run(function()
        local c, s, srv = pair()
        local r, w, err = socket.select({ s }, nil, 0.01)
        assert.are.same({ {}, {}, "timeout" }, { r, w, err })
        c:send("x")
        r = socket.select({ srv, s }, nil, 1)
        assert.are.equal(s, r[1])
        assert.are.equal(1, r[s])
        r, w = socket.select(nil, { c }, 1)
        assert.are.same({}, r)
        assert.are.equal(c, w[1])
        assert.are.equal(1, w[c])
        -- a pending connection makes the server readable
        local c2 = assert(socket.connect("127.0.0.1",
                                         (select(2, srv:getsockname()))))
        r = socket.select({ srv }, nil, 1)
        assert.are.equal(srv, r[1])
        local s2 = assert(srv:accept())
        -- closed objects are skipped
        c2:close()
        assert.are.same({ {}, {}, "timeout" },
                        { socket.select({ c2 }, nil, 0) })
        c:close(); s:close(); s2:close(); srv:close()
      end)
    end)

    it("lets other threads run while it waits", function()
      green_run(function()
        local c, s, srv = pair()
        local writer = green.spawn(function()
          green.sleep(0.01)
          c:send("late")
        end)
        local r = socket.select({ s })
        assert.are.equal(s, r[1])
        assert.are.equal("late", s:receive(4))
        writer:wait()
        c:close(); s:close(); srv:close()
      end)
    end)
  end)
end)
