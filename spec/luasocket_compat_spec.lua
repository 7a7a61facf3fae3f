-- green.socket behaves where LuaSocket's own test suite (test/testclnt.lua
-- and testsrvr.lua upstream) and LuaSocket-based dispatchers such as
-- Copas need it to (issue 7, "LuaSocket compatibility"): the polling idiom
-- (settimeout(0), retry on "timeout", or select then receive) progresses
-- where LuaSocket's would, receive's prefix and end-of-stream results,
-- the wall clock, the options, a connect that goes on in the background,
-- and the small results LuaSocket code branches on. Where a peer must act
-- without the hub running (so that only the kernel can have the data),
-- the peer is Debian's real LuaSocket, loaded beside green.socket.
local green = require "green"
local socket = require "green.socket"
local helper = require "helper"

local function real_core()
  local path = package.searchpath("socket.core", package.cpath
    .. ";/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;/usr/local/lib/lua/5.4/?.so"
    .. ";/usr/lib/lua/5.4/?.so")
  assert(path, "Debian's lua-socket (socket/core.so) is not installed")
  return assert(package.loadlib(path, "luaopen_socket_core"))()
end
local real = real_core()

-- A green.socket server and, connected to it, a real LuaSocket client:
-- green side, real side, server.
local function green_server_real_client()
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local peer = assert(real.tcp())
  assert(peer:connect("127.0.0.1", port)) -- the kernel completes it
  local c = assert(srv:accept())
  return c, peer, srv
end

-- A real LuaSocket server and, connected to it, a green.socket client.
local function real_server_green_client()
  local rs = assert(real.tcp())
  assert(rs:bind("127.0.0.1", 0))
  assert(rs:listen(8))
  local _, port = rs:getsockname()
  local c = assert(socket.connect("127.0.0.1", port))
  local peer = assert(rs:accept()) -- queued by the kernel: no wait
  rs:close()
  return c, peer
end

-- Call `select(recvt, sendt, 0)` until it reports something, without
-- yielding (select with timeout 0 never does): only the kernel can
-- change meanwhile. Bounded.
local function spin_select(recvt, sendt)
  for _ = 1, 200000 do
    local r, w = socket.select(recvt, sendt, 0)
    if #r + #w > 0 then return r, w end
  end
  error("select never reported the socket ready")
end

local function closed_port()
  local s = assert(green.listen("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

describe("green.socket where LuaSocket's test suite looks", function()

  describe("timeout 0 (the polling idiom)", function()

    it("select, then receive: receive gets what select saw", function()
      green_run(function()
        local c, peer, srv = green_server_real_client()
        c:settimeout(0)
        assert.are.same({ nil, "timeout", "" }, { c:receive() })
        assert(peer:send("hello\nworld"))
        local r = spin_select({ c })
        assert.are.equal(c, r[1])
        assert.are.equal("hello", c:receive()) -- no hub turn since send
        assert.are.same({ nil, "timeout", "world" }, { c:receive() })
        peer:close()
        spin_select({ c })
        assert.are.same({ nil, "closed", "" }, { c:receive() })
        c:close(); srv:close()
      end)
    end)

    it("a loop that retries on 'timeout' gets a line sent in parts by "
       .. "another green thread", function()
      green_run(function()
        local srv = assert(socket.bind("127.0.0.1", 0))
        local _, port = srv:getsockname()
        local writer = green.spawn(function()
          local w = assert(socket.connect("127.0.0.1", port))
          for _, part in ipairs { "aaa", "bbb", "ccc\n" } do
            assert(w:send(part))
            for _ = 1, 3 do green.sleep(0) end
          end
          return w
        end)
        local c = assert(srv:accept())
        c:settimeout(0)
        local line, err, part, calls = nil, "timeout", "", 0
        -- LuaSocket's test_nonblocking: the partial goes back in as the
        -- prefix. Bounded in calls; the loop itself never sleeps, so
        -- only the fairness yield (every 64 calls) lets the writer run.
        while err == "timeout" and calls < 1000000 do
          line, err, part = c:receive("*l", part)
          calls = calls + 1
        end
        assert.are.equal("aaabbbccc", line)
        writer:wait():close()
        c:close(); srv:close()
      end)
    end)

    it("send progresses as the peer drains, one call at a time", function()
      green_run(function()
        local c, peer = real_server_green_client()
        assert(c:setoption("send-buffer-size", 4096))
        assert(peer:setoption("recv-buffer-size", 4096))
        local big = string.rep("x", 1024 * 1024)
        c:settimeout(0)
        local n, err, last = c:send(big)
        assert.is_nil(n)
        assert.are.equal("timeout", err)
        assert.is_true(last < #big)
        -- The peer reads what reaches it (waiting on the kernel, bounded),
        -- and the green side tries again, until the kernel takes more:
        -- fewer calls than the fairness budget, so the hub never runs in
        -- between and only the call itself can move the bytes it queued.
        local hub_ran = false
        green.spawn(function() hub_ran = true end)
        peer:settimeout(0)
        local last2, t0 = last, real.gettime()
        for _ = 1, 40 do
          real.select({ peer }, nil, 0.25)
          repeat
            local d, _, partial = peer:receive(65536)
          until #(d or partial) == 0
          local _, _, l = c:send(big, last2 + 1)
          last2 = l or #big
          if last2 > last or real.gettime() - t0 > 20 then break end
        end
        assert.is_true(last2 > last)
        assert.is_false(hub_ran)
        c:close(); peer:close()
      end)
    end)

    it("accept takes a connection the kernel holds", function()
      green_run(function()
        local srv = assert(socket.bind("127.0.0.1", 0))
        local _, port = srv:getsockname()
        srv:settimeout(0)
        assert.are.same({ nil, "timeout" }, { srv:accept() })
        local peer = assert(real.tcp())
        assert(peer:connect("127.0.0.1", port))
        spin_select({ srv })
        local c = assert(srv:accept())
        assert.are.equal("tcp{client}", c.class)
        c:close(); peer:close(); srv:close()
      end)
    end)

    it("UDP receive takes a datagram the kernel holds", function()
      green_run(function()
        local u = assert(socket.udp())
        assert(u:setsockname("127.0.0.1", 0))
        local ip, port = u:getsockname()
        u:settimeout(0)
        assert.are.same({ nil, "timeout" }, { u:receive() })
        local peer = assert(real.udp())
        assert(peer:sendto("datagram", ip, port))
        spin_select({ u })
        local got = table.pack(u:receive())
        assert.are.equal(1, got.n) -- one result, as LuaSocket's
        assert.are.equal("datagram", got[1])
        u:close(); peer:close()
      end)
    end)
  end)

  describe("argument checks (issue 7)", function()
    it("settimeout raises on a non-number, as LuaSocket's", function()
      local t = socket.tcp()
      for _, bad in ipairs { "x", {}, true, 0 / 0 } do
        assert.has_error(function() t:settimeout(bad) end)
      end
      assert.are.equal(1.0, t:settimeout("0.5")) -- a numeric string is fine
      assert.are.equal(0.5, t:gettimeout())
      assert.are.equal(1.0, t:settimeout(nil))
      assert.are.equal(-1, t:gettimeout())
      local u = socket.udp()
      assert.has_error(function() u:settimeout("x") end)
      t:close(); u:close()
    end)

    it("bind raises on a port that is not a number", function()
      local t = socket.tcp()
      local ok, err = pcall(t.bind, t, "127.0.0.1", {})
      assert.is_false(ok)
      assert.matches("bad argument #2 to 'bind' %(port number expected, "
                     .. "got table%)", err)
      assert.has_error(function() socket.bind("127.0.0.1", {}) end)
      assert.has_error(function() socket.bind("127.0.0.1", 1.5) end)
      ok, err = pcall(t.bind, t, "127.0.0.1", 0 / 0)
      assert.is_false(ok)
      assert.matches("%(port number expected, got [-]?nan%)", err)
      for _, port in ipairs { 70000, -1 } do
        ok, err = pcall(socket.bind, "127.0.0.1", port)
        assert.is_false(ok)
        assert.matches("bad argument #2 to 'bind' %(port out of range%)",
                       err)
      end
      t:close()
    end)
  end)

  describe("the receive limit (issue 7)", function()
    it("is none by default, as in LuaSocket; setoption sets it",
       function()
      green_run(function()
        local server = assert(socket.bind("127.0.0.1", 0))
        local _, port = server:getsockname()
        local c = assert(socket.connect("127.0.0.1", port))
        local s = assert(server:accept())
        assert.is_nil(c:getoption("receive-limit"))
        local big = string.rep("y", (1 << 20) + 10) .. "\n"
        c:send(big)
        assert.are.equal(#big - 1, #assert(s:receive("*l")))
        assert.are.equal(1.0, s:setoption("receive-limit", 100))
        assert.are.equal(100, s:getoption("receive-limit"))
        c:send(string.rep("z", 150) .. "\n")
        local line, err, partial = s:receive("*l")
        assert.are.same({ nil, "too long", 100 }, { line, err, #partial })
        assert.has_error(function() s:setoption("receive-limit", -1) end)
        assert.are.equal(1.0, s:setoption("receive-limit", false))
        assert.is_nil(s:getoption("receive-limit"))
        server:setoption("receive-limit", 7)
        local c2 = assert(socket.connect("127.0.0.1", port))
        local s2 = assert(server:accept())
        assert.are.equal(7, s2:getoption("receive-limit"))
        for _, x in ipairs { c, s, c2, s2, server } do x:close() end
      end)
    end)
  end)

  describe("receive", function()

    it("counts the prefix in n, as LuaSocket 3 does", function()
      green_run(function()
        local c, peer, srv = green_server_real_client()
        assert(peer:send("7890"))
        c:settimeout(5)
        assert.are.equal("1234567890", c:receive(10, "123456"))
        -- A prefix as long as n, or longer, is the whole result.
        assert.are.equal("87654321", c:receive(8, "87654321"))
        assert.are.equal("87654321", c:receive(4, "87654321"))
        assert(peer:send("abc"))
        assert.are.equal("xyzab", c:receive(5, "xyz"))
        assert.are.equal("c", c:receive(1))
        c:close(); peer:close(); srv:close()
      end)
    end)

    it("reads a numeric string or a fraction as a count, and a number "
       .. "prefix as its string, as LuaSocket does", function()
      green_run(function()
        local c, peer, srv = green_server_real_client()
        local rs = assert(real.tcp())
        assert(rs:bind("127.0.0.1", 0))
        assert(rs:listen(8))
        local rc = assert(real.tcp())
        assert(rc:connect(rs:getsockname())) -- the kernel completes it
        local rp = assert(rs:accept())
        c:settimeout(5)
        rc:settimeout(5)
        assert(peer:send("abcdefghij\n"))
        assert(rp:send("abcdefghij\n"))
        local wants = {}
        for _, args in ipairs { { "3" }, { 2.7 }, { "0x2" }, { "*l", 12 } } do
          local want = { rc:receive(table.unpack(args)) }
          assert.are.same(want, { c:receive(table.unpack(args)) })
          wants[#wants + 1] = want[1]
        end
        assert.are.same({ "abc", "de", "fg", "12hij" }, wants)
        c:close(); peer:close(); srv:close()
        rc:close(); rp:close(); rs:close()
      end)
    end)

    it("'*a' on a stream that has ended is nil, 'closed'", function()
      green_run(function()
        local c, peer, srv = green_server_real_client()
        assert(peer:send("little string"))
        peer:close()
        c:settimeout(5)
        assert.are.equal("little string", c:receive("*a"))
        assert.are.same({ nil, "closed", "" }, { c:receive("*a") })
        assert.are.same({ nil, "closed", "p" }, { c:receive("*a", "p") })
        -- So LuaSocket's idiom ends.
        local chunks = 0
        repeat
          local d = c:receive("*a")
          chunks = chunks + 1
        until not d or chunks > 10
        assert.are.equal(1, chunks)
        c:close(); srv:close()
      end)
    end)
  end)

  it("gettime reads the wall clock to the microsecond", function()
    -- Between two readings of LuaSocket's clock, never before the first.
    for _ = 1, 20 do
      local a = real.gettime()
      local b = socket.gettime()
      local c = real.gettime()
      assert.is_true(a <= b and b <= c,
                     string.format("%.6f %.6f %.6f", a, b, c))
    end
  end)

  it("accept after setfd(-1) is nil, 'closed'", function()
    green_run(function()
      local srv = assert(socket.bind("127.0.0.1", 0))
      local real_srv = assert(real.tcp())
      assert(real_srv:bind("127.0.0.1", 0))
      assert(real_srv:listen(1))
      local fd = real_srv:getfd()
      real_srv:setfd(-1)
      srv:setfd(-1)
      assert.are.same({ real_srv:accept() }, { srv:accept() })
      assert.are.same({ nil, "closed" }, { srv:accept() })
      real_srv:setfd(fd)
      real_srv:close()
    end)
  end)

  it("select raises on arguments that are not tables, as LuaSocket",
     function()
    green_run(function()
      for _, args in ipairs { { "wrong", 1, 0.1 }, { {}, 1, 0.1 } } do
        local rok = pcall(real.select, table.unpack(args))
        local gok, gerr = pcall(socket.select, table.unpack(args))
        assert.are.equal(rok, gok)
        assert.matches("table expected", gerr)
      end
      -- nil lists, and entries without a descriptor, are fine.
      local r, w, e = socket.select(nil, { {} }, 0)
      assert.are.same({ {}, {}, "timeout" }, { r, w, e })
      -- More sockets than socket._SETSIZE in one list: LuaSocket's limit.
      local u = assert(socket.udp())
      local many = {}
      for i = 1, socket._SETSIZE + 1 do many[i] = u end
      assert.has_error(function() socket.select(many, nil, 0) end,
                       "bad argument #1 to 'select' (too many sockets)")
      u:close()
    end)
  end)

  it("has LuaSocket's error, buffer size and keepalive tuning options",
     function()
    green_run(function()
      local c, peer, srv = green_server_real_client()
      -- "error": nil when there is none (one result), read-only.
      local e = table.pack(c:getoption("error"))
      assert.are.equal(select("#", peer:getoption("error")), e.n)
      assert.is_nil(e[1])
      assert.has_error(function() c:setoption("error", 1) end)
      assert.is_false(pcall(peer.setoption, peer, "error", 1))
      for _, o in ipairs { { "recv-buffer-size", 8192 },
                           { "send-buffer-size", 16384 },
                           { "tcp-keepidle", 30 }, { "tcp-keepcnt", 4 },
                           { "tcp-keepintvl", 7 } } do
        local name, v = o[1], o[2]
        assert.are.equal(1, c:setoption(name, v), name)
        assert(peer:setoption(name, v))
        -- The kernel's answer (it doubles buffer sizes), as LuaSocket's.
        assert.are.equal(peer:getoption(name), c:getoption(name), name)
      end
      assert.are.equal(1, srv:setoption("tcp-defer-accept", 1))
      -- A master keeps them until it has a socket.
      local m = socket.tcp()
      assert.are.equal(1, m:setoption("tcp-keepcnt", 3))
      assert.are.same({ nil, "getsockopt failed" }, { m:getoption("error") })
      assert(m:connect(srv:getsockname()))
      assert.are.equal(3, m:getoption("tcp-keepcnt"))
      m:close(); c:close(); peer:close(); srv:close()
    end)
  end)

  describe("connect with timeout 0 goes on in the background", function()

    it("'timeout', then select says writable, then connect says 1",
       function()
      green_run(function()
        local srv = assert(socket.bind("127.0.0.1", 0))
        local ip, port = srv:getsockname()
        local c = socket.tcp()
        c:settimeout(0)
        assert.are.same({ nil, "timeout" }, { c:connect(ip, port) })
        assert.are.equal("tcp{client}", c.class) -- as LuaSocket's
        local _, w = socket.select(nil, { c }, 10)
        assert.are.equal(c, w[1])
        assert.are.equal(1, c:connect(ip, port))
        assert.are.same({ nil, "already connected" }, { c:connect(ip, port) })
        srv:settimeout(10)
        local s = assert(srv:accept())
        assert(c:send("ping\n"))
        assert.are.equal("ping", s:receive())
        s:close(); c:close(); srv:close()
      end)
    end)

    it("a port out of range raises in the caller, blocking or not "
       .. "(it did in the helper thread: the connect hung)", function()
      green_run(function()
        for _, timeout in ipairs { 0, 10 } do
          for _, port in ipairs { 70000, -1, 1.5, 0 / 0 } do
            local c = socket.tcp()
            c:settimeout(timeout)
            local ok, err = pcall(c.connect, c, "127.0.0.1", port)
            assert.is_false(ok)
            assert.matches("bad argument #2 to 'connect' %(port out of "
                           .. "range%)", err)
            assert.are.equal("tcp{master}", c.class) -- nothing under way
            c:close()
          end
        end
      end)
    end)

    it("an error raised by green.connect in the helper thread reaches "
       .. "the caller (it waited for its timeout, for ever without)",
       function()
      green_run(function()
        local core = green.core
        local real_connect = core.connect
        local _ <close> = setmetatable({}, { __close = function()
          core.connect = real_connect
        end })
        core.connect = function() error("injected: not enough memory", 0) end
        -- blocking, no timeout: raised in connect (bounded by a Timeout
        -- that fails the spec with a message)
        local c = socket.tcp()
        local t = green.Timeout(10, "connect waited for the dead helper")
        local ok, err = pcall(c.connect, c, "127.0.0.1", 1)
        t:cancel()
        assert.is_false(ok)
        assert.are.equal("injected: not enough memory", err)
        assert.are.equal("tcp{master}", c.class) -- nothing under way
        c:close()
        -- timeout 0: "timeout", then the next connect raises it
        c = socket.tcp()
        c:settimeout(0)
        assert.are.same({ nil, "timeout" }, { c:connect("127.0.0.1", 1) })
        c:settimeout(10)
        ok, err = pcall(c.connect, c, "127.0.0.1", 1)
        assert.is_false(ok)
        assert.are.equal("injected: not enough memory", err)
        assert.are.equal("tcp{master}", c.class)
        c:close()
      end)
    end)

    it("to a closed port: 'timeout', then 'connection refused'", function()
      green_run(function()
        local c = socket.tcp()
        c:settimeout(0)
        local port = closed_port()
        assert.are.same({ nil, "timeout" }, { c:connect("127.0.0.1", port) })
        local r, w = socket.select({ c }, { c }, 10)
        assert.are.same({ c, [c] = 1 }, r)
        assert.are.same({ c, [c] = 1 }, w)
        assert.are.same({ nil, "connection refused" },
                        { c:connect("127.0.0.1", port) })
        c:close()
      end)
    end)

    it("a blocking call on it waits for the connect; close stops it",
       function()
      green_run(function()
        local srv = assert(socket.bind("127.0.0.1", 0))
        local ip, port = srv:getsockname()
        local c = socket.tcp()
        c:settimeout(0)
        assert.are.same({ nil, "timeout" }, { c:connect(ip, port) })
        assert.are.same({ nil, "timeout", "" }, { c:receive() })
        c:settimeout(10)
        assert.are.equal(5, c:send("hello"))
        local s = assert(srv:accept())
        assert.are.equal("hello", s:receive(5))
        s:close(); c:close()
        -- Closed while connecting: the helper thread is gone (green_run
        -- checks the hub is empty).
        local d = socket.tcp()
        d:settimeout(0)
        assert.are.same({ nil, "timeout" }, { d:connect(ip, port) })
        d:close()
        assert.are.same({ nil, "closed" }, { d:connect(ip, port) })
        srv:close()
      end)
    end)
  end)

  describe("Debian's unmodified Copas (lua-copas) under green.patch()",
           function()
    -- Copas 1.x drives everything with settimeout(0), select and
    -- connect-in-the-background: an echo server and 50 clients in one
    -- process. Each run is a fresh process (Copas keeps global state).
    local script = [[
      package.path = "/usr/share/lua/5.2/?.lua;/usr/share/lua/5.3/?.lua;"
                     .. "/usr/share/lua/5.1/?.lua;" .. package.path
      require("green").patch()
      local socket = require "socket"
      local ok, copas = pcall(require, "copas")
      if not ok then
        print("lua-copas is not installed: " .. tostring(copas))
        os.exit(2)
      end
      local server = assert(socket.bind("127.0.0.1", 0))
      local ip, port = server:getsockname()
      copas.addserver(server, function(skt)
        skt = copas.wrap(skt)
        while true do
          local line = skt:receive()
          if not line then break end
          skt:send(line .. "\n")
        end
      end)
      local done, errs = 0, {}
      for i = 1, 50 do
        copas.addthread(function()
          local c = socket.tcp()
          local cok, err = copas.connect(c, ip, port)
          if not cok then errs[#errs + 1] = err; return end
          local w = copas.wrap(c)
          w:send("hello " .. i .. "\n")
          if w:receive() == "hello " .. i then done = done + 1 end
          c:close()
        end)
      end
      local t0 = socket.gettime()
      while done + #errs < 50 and socket.gettime() - t0 < 60 do
        copas.step(0.1)
      end
      print(done, #errs, errs[1])
    ]]

    it("echoes 50 of 50 clients under greenlua", function()
      local out, err = helper.greenlua_run(script)
      assert.are.equal("50\t0\tnil\n", out, err)
    end)

    it("echoes 50 of 50 clients under stock lua5.4", function()
      local out, err = helper.lua54_run(script)
      assert.are.equal("50\t0\tnil\n", out, err)
    end)
  end)
end)
