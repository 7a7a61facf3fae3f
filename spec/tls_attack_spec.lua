-- green.tls's C path (core.tls send/flush/fill/input) under attack:
-- kills, timeouts and closes at every wait, resets mid-record, readers
-- and writers that collide, finalizers that close the socket. Every case
-- must end without a memory error (the suite runs under ASan), lose or
-- mix no byte, and leave the hub empty.
local green = require "green"
local h = require "helper"
local S = require "tls_support"

-- Past the kernel's buffers and the write queue's bound on loopback: a
-- sendall of it waits. Made once, before any green_run (the watchdog
-- would report a thread making it).
local BIG = ("a"):rep(30000000)

local dir
setup(function() dir = S.certs() end)
teardown(function() S.cleanup(dir) end)

-- Read n bytes from s (bounded by its timeout).
local function take(s, n)
  s:settimeout(20)
  return assert(s:receive(n))
end

describe("green.tls under attack", function()
  it("a send bigger than one record run arrives whole, before a later "
     .. "writer's", function()
    green_run(function()
      local c, s = S.pair(dir)
      local big = BIG
      local a = green.spawn(function() return c:sendall(big) end)
      h.until_suspended(a, "socket:sendall") -- the peer does not read yet
      local b = green.spawn(function() return c:sendall("BBBB") end)
      s:setlimit(nil)
      local got = take(s, #big + 4)
      assert.is_true(a:wait())
      assert.is_true(b:wait())
      assert.are.equal(#big, got:find("B", 1, true) - 1)
      assert.are.equal(big .. "BBBB", got)
      c:close(); s:close()
    end)
  end)

  it("a later writer that times out behind a big send sends nothing",
     function()
    green_run(function()
      local c, s = S.pair(dir)
      local big = BIG
      local a = green.spawn(function() return c:sendall(big) end)
      h.until_suspended(a, "socket:sendall")
      c:settimeout(0.05)
      assert.are.same({ nil, "timeout", 0 }, { c:sendall("BBBB") })
      c:settimeout(nil)
      s:setlimit(nil)
      local got = take(s, #big)
      assert.is_true(a:wait())
      assert.are.equal(big, got)
      c:send("end\n")
      assert.are.equal("end", s:receive())
      c:close(); s:close()
    end)
  end)

  it("refuses a second reader even when some plaintext is buffered",
     function()
    green_run(function()
      local c, s = S.pair(dir)
      local r1 = green.spawn(function() return s:receive("*l") end)
      c:send("abc") -- part of r1's line: r1 goes on waiting
      h.eventually(function()
        local n = s.conn:buffered()
        return n == 3 and h.suspended(r1, "socket:receive")
      end, 10, "r1 waiting with abc buffered")
      local ok, err = pcall(s.receive, s, 1)
      assert.is_false(ok)
      assert.matches("Second simultaneous read", err)
      c:send("def\n")
      assert.are.equal("abcdef", r1:wait())
      c:close(); s:close()
    end)
  end)

  it("kills a reader and a writer at each of their waits; nothing is lost"
     .. " or mixed", function()
    green_run(function()
      local c, s = S.pair(dir)
      local sent, got = {}, {}
      local writer_runs, reader_runs = 0, 0
      local n = 0
      for round = 1, 20 do
        -- a writer of big lines, killed wherever it waits
        local w = green.spawn(function()
          for i = 1, 5 do
            local line = ("w%d.%d:"):format(round, i)
              .. ("x"):rep(100000) .. "\n"
            local ok, err, last = c:sendall(line)
            assert(ok, err)
            sent[#sent + 1] = line
            assert(last == nil)
          end
          writer_runs = writer_runs + 1
        end)
        -- a reader that takes some, and is killed in its wait
        local r = green.spawn(function()
          while true do
            local line = s:receive("*l")
            if not line then return end
            got[#got + 1] = line .. "\n"
          end
        end)
        for _ = 1, round do green.sleep(0) end
        if not w:dead() then w:kill() end
        if not r:dead() then r:kill() end
        n = n + 1
        reader_runs = reader_runs + 1
      end
      assert.are.equal(20, n)
      -- all the sends that returned are whole and in order; whatever a
      -- killed writer encrypted goes out first with the next send
      assert(c:sendall("end\n"))
      s:settimeout(30)
      while true do
        local line = assert(s:receive("*l"))
        if line == "end" then break end
        got[#got + 1] = line .. "\n"
      end
      local i = 1
      for _, line in ipairs(got) do
        assert.matches("^w%d+%.%d+:x+\n$", line)
        assert.are.equal(100000, #line:match(":(x+)"))
        if sent[i] == line then i = i + 1 end
      end
      assert.are.equal(#sent + 1, i) -- every completed send arrived
      assert(writer_runs >= 0 and reader_runs == 20)
      c:close(); s:close()
    end)
  end)

  it("times out a reader and a writer at each wait, then carries on",
     function()
    green_run(function()
      local c, s = S.pair(dir)
      local big = ("q"):rep(3000000)
      c:settimeout(0.01)
      local pos, tries = 0, 0
      local reader = green.spawn(function()
        local parts = {}
        s:settimeout(0.01)
        s:setlimit(nil) -- counts up to 3 MB: past the 1 MiB default
        local total = 0
        while total < #big do
          local data, err, partial = s:receive(#big - total)
          data = data or partial
          if data ~= "" then
            parts[#parts + 1] = data
            total = total + #data
          end
          assert(data or err == "timeout", err)
        end
        return table.concat(parts)
      end)
      while pos < #big and tries < 100000 do
        tries = tries + 1
        local r, err, last = c:send(big, pos + 1)
        if r then pos = r else
          assert.are.equal("timeout", err)
          pos = last
        end
      end
      assert.are.equal(#big, pos)
      assert.are.equal(big, reader:wait())
      c:close(); s:close()
    end)
  end)

  it("closes the socket while a reader and a writer both wait", function()
    green_run(function()
      for _ = 1, 5 do
        local c, s = S.pair(dir)
        local w = green.spawn(function()
          return c:sendall(("z"):rep(5000000))
        end)
        local r = green.spawn(function() return c:receive("*l") end)
        h.until_suspended(w, "socket:sendall")
        h.until_suspended(r, "socket:receive")
        c:close()
        local ok, err = w:wait()
        assert.is_nil(ok)
        assert.are.equal("closed", err)
        assert.are.same({ nil, "closed", "" }, { r:wait() })
        s:close()
      end
    end)
  end)

  it("refuses a server name with a zero byte: OpenSSL would send and "
     .. "check the name cut there", function()
    green_run(function()
      local srv = assert(green.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local peer = green.spawn(function() -- a server for "localhost"
        local a = srv:accept()
        if a then
          local t = green.tls.wrap(a, { certificate = dir .. "/leaf.pem",
                                        key = dir .. "/leaf.key",
                                        mode = "server" })
          if t then t:settimeout(10); t:handshake(); t:close() end
          a:close()
        end
      end)
      -- (a caller that checked the name's suffix, ".corp.example")
      local c, err = green.connect("127.0.0.1", port, {
        tls = { cafile = dir .. "/ca.pem",
                server_name = "localhost\0.corp.example" } })
      if c then c:settimeout(10); assert(c:handshake()) end
      assert.is_nil(c)
      assert.are.equal("bad server name (it contains a zero byte)", err)
      peer:kill()
      srv:close()
    end)
  end)

  it("the peer resets mid-record: readers and writers get an error",
     function()
    green_run(function()
      local srv = assert(green.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local peer = green.spawn(function()
        local a = assert(srv:accept())
        -- a TLS client hello's first bytes, then a reset
        a:settimeout(10)
        a:receive(5)
        a:setoption("linger", { on = true, timeout = 0 })
        a:close()
      end)
      local c, err = green.connect("127.0.0.1", port, {
        tls = { cafile = dir .. "/ca.pem", server_name = "localhost" } })
      local ok = nil
      if c then
        c:settimeout(10)
        ok, err = c:handshake()
        c:close()
      end
      peer:wait()
      assert.is_nil(ok)
      assert.is_string(err)
      srv:close()
      -- mid-record in an established connection: half a record, reset
      local c2, s2 = S.pair(dir)
      local raw = s2.sock
      assert(c2:send(("r"):rep(10000)))
      local r = green.spawn(function() return s2:receive(20000) end)
      h.until_suspended(r, "socket:receive")
      c2.sock:setoption("linger", { on = true, timeout = 0 })
      c2.sock:send("\23\3\3\1\0" .. ("j"):rep(100)) -- half a record
      c2.sock:close()
      local d, e, partial = r:wait()
      assert.is_nil(d)
      assert.is_string(e)
      assert.are.equal(("r"):rep(10000), partial)
      local w = { s2:sendall(("x"):rep(5000000)) }
      assert.is_nil(w[1])
      assert(raw)
      c2:close(); s2:close()
    end)
  end)

  it("a huge send, then a kill: the next send and close lose nothing "
     .. "sent before", function()
    green_run(function()
      local c, s = S.pair(dir)
      local w = green.spawn(function()
        return c:sendall(BIG)
      end)
      h.until_suspended(w, "socket:sendall")
      w:kill()
      local n = 0
      local reader = green.spawn(function()
        s:settimeout(30)
        s:setlimit(nil)
        while true do
          local line = assert(s:receive("*l"))
          if line == "after" then break end
          assert.is_nil(line:find("[^a]"))
          n = n + #line
        end
      end)
      assert(c:sendall("\nafter\n"))
      reader:wait()
      assert(n > 0 and n <= #BIG)
      c:close(); s:close()
    end)
  end)

  it("a finalizer that closes the socket while a send waits", function()
    green_run(function()
      for round = 1, 10 do
        local c, s = S.pair(dir)
        local w = green.spawn(function()
          return c:sendall(BIG)
        end)
        h.until_suspended(w, "socket:sendall")
        setmetatable({}, { __gc = function() c:close() end })
        if round % 2 == 0 then collectgarbage() end
        -- the peer reads: the writer wakes, maybe into the finalizer.
        -- Until the finalizer closes c (the end of the stream) or the
        -- writer is done (then no more comes: c is open till collected)
        s:settimeout(10)
        for _ = 1, 400 do
          local got = s:receive(100000)
          if not got then break end
          for i = 1, 200 do got = { i, got } end -- garbage: GC steps
          if w:dead() then break end
        end
        collectgarbage()
        local ok, err = w:wait()
        assert(ok or err == "closed", err)
        c:close(); s:close()
      end
    end)
  end)
end)

describe("green.tls receive paths under a hostile peer", function()
  -- The server's records for `data`, not sent (the raw socket sends
  -- them, cut or followed by anything).
  local function records(s, data)
    assert(s.conn:write(data, 1, #data))
    return s.conn:output()
  end
  local function close_notify(s)
    s.conn:close_notify()
    return s.conn:output()
  end
  local function pack(...) return table.pack(...) end
  local KINDS = { fast = S.pair, lua = S.proxy_pair }
  local function open(make) -- a pair whose client gives up in time
    local c, s = make(dir)
    c:settimeout(20)
    return c, s
  end

  it("a forged record after good data: the data, then the record's error"
     .. " every time, on both paths (receive, recv, fill)", function()
    green_run(function()
      for kind, make in pairs(KINDS) do
        for _, how in ipairs { "*a", "*l", "fill" } do
          local c, s = open(make)
          local good = records(s, "abc\n") -- sequence numbers: first
          local forged = records(s, "zzzzzzzz")
          forged = forged:sub(1, 5) .. ("\1"):rep(#forged - 5)
          assert(s:getsocket():send(good .. forged))
          local mac = "decryption failed or bad record mac"
          if how == "fill" then
            assert.is_true(c:fill())
            assert.are.same({ n = 2, nil, mac }, pack(c:fill()), kind)
            assert.are.equal("abc", c:receive())
          elseif how == "*l" then
            assert.are.equal("abc", c:receive(), kind)
            assert.are.same({ n = 3, nil, mac, "" }, pack(c:receive()), kind)
          else
            assert.are.same({ n = 3, nil, mac, "abc\n" },
                            pack(c:receive("*a")), kind)
          end
          -- recorded: every later call says it again
          assert.are.same({ n = 3, nil, mac, "" }, pack(c:receive("*a")))
          assert.are.same({ n = 2, nil, mac }, pack(c:recv()))
          assert.are.same({ n = 2, nil, mac }, pack(c:fill()))
          c:close(); s:close()
        end
      end
    end)
  end)

  it("bytes after close_notify are never read; a record cut by the end"
     .. " is 'closed' with what came before it", function()
    green_run(function()
      for kind, make in pairs(KINDS) do
        local c, s = open(make)
        local abc = records(s, "abc")
        -- a reader already waiting for its line when they come
        local r = green.spawn(function() return pack(c:receive("*l")) end)
        h.until_suspended(r, "socket:receive")
        assert(s:getsocket():send(abc .. close_notify(s) .. abc
                                  .. "junk\n"))
        assert.are.same({ n = 3, nil, "closed", "abc" }, r:wait(), kind)
        assert.are.same({ n = 3, nil, "closed", "" }, pack(c:receive("*a")))
        assert.are.same({ n = 2, nil, "closed" }, pack(c:recv()))
        c:close(); s:close()
        -- half a record, then the end of the transport
        c, s = open(make)
        local x = records(s, "line1\nabc") .. records(s, "cut short")
        assert(s:getsocket():send(x:sub(1, #x - 5)))
        s:getsocket():shutdown("send")
        assert.are.equal("line1", c:receive(), kind)
        assert.are.same({ n = 3, nil, "closed", "abc" }, pack(c:receive("*a")))
        assert.are.same({ n = 3, nil, "closed", "" }, pack(c:receive()))
        c:close(); s:close()
      end
    end)
  end)

  it("records arriving a byte at a time, a reader killed at every wait,"
     .. " then close_notify: every byte once, in order", function()
    green_run(function()
      for kind, make in pairs(KINDS) do
        local c, s = open(make)
        local text = "first line\n" .. ("y"):rep(3000) .. "\nlast"
        local x = records(s, text) .. close_notify(s)
        local raw = s:getsocket()
        local lines, kills = {}, 0
        for pos = 1, #x do
          local r = green.spawn(function() return c:receive("*l") end)
          h.eventually(function()
            return r:dead() or h.suspended(r, "socket:receive")
          end, "the reader done or waiting")
          if r:dead() then
            lines[#lines + 1] = r:wait()
          else
            r:kill()
            kills = kills + 1
          end
          assert(raw:send(x:sub(pos, pos)))
        end
        local rest = pack(c:receive("*l"))
        -- every wait was killed, the line that completed excepted: the
        -- bytes the killed readers waited on were all kept
        assert.is_true(kills > #x / 2, kind)
        assert.are.equal(text, table.concat(lines, "\n") .. "\n"
                         .. (rest[1] or "") .. (rest[3] or ""), kind)
        assert.are.same({ n = 3, nil, "closed", "" }, pack(c:receive("*a")))
        c:close(); s:close()
      end
    end)
  end)
end)

describe("green.http.serve over TLS under attack", function()
  it("pipelined requests kept past their connection, tampered, reset",
     function()
    green_run(function()
      local srv = assert(green.listen("127.0.0.1", 0, { tls = {
        certificate = dir .. "/leaf.pem", key = dir .. "/leaf.key" } }))
      local _, port = srv:getsockname()
      local kept, readers = {}, {}
      local gt = green.spawn(green.http.serve, srv, function(req)
        kept[#kept + 1] = req
        readers[#readers + 1] = green.spawn(function()
          green.sleep(0)
          return req.headers["x-n"], req.path
        end)
        if req.headers["x-tamper"] then
          -- the raw head's place (a light userdata key, the arena) given
          -- another request's arena, then something else
          local other, key, mine = kept[#kept > 1 and #kept - 1 or 1]
          for k, v in next, req do
            if type(k) == "userdata" then key, mine = k, v end
          end
          req[key] = rawget(other, key)
          req.headers = nil
          -- memory-safe, whatever it then reads there
          for k in pairs(req.headers or {}) do
            assert(type(k) == "string")
          end
          req[key] = 8
          req.headers = nil
          assert.is_nil(req.headers)
          req[key] = mine -- its own again
          req.headers = nil
        end
        return 200, nil, req.path
      end)
      local co = { cafile = dir .. "/ca.pem", server_name = "localhost" }
      for round = 1, 4 do
        local c = assert(green.connect("127.0.0.1", port, { tls = co }))
        c:settimeout(20)
        local t = {}
        for i = 1, 200 do
          t[i] = "GET /" .. i .. " HTTP/1.1\r\nHost: a\r\nX-N: " .. i .. "\r\n"
            .. (i % 7 == 0 and "X-Tamper: 1\r\n" or "") .. "\r\n"
        end
        assert(c:sendall(table.concat(t)))
        if round % 2 == 0 then -- reset mid-batch
          c:receive(100)
          c.sock:setoption("linger", { on = true, timeout = 0 })
          c.sock:close()
          c:close()
        else
          assert(c:sendall("GET /end HTTP/1.1\r\nHost: a\r\n"
            .. "Connection: close\r\n\r\n"))
          local r = c:receive("*a")
          assert.matches("/end$", r)
          c:close()
        end
        collectgarbage()
      end
      for _, r in ipairs(readers) do
        local n, path = r:wait()
        if n then assert.are.equal("/" .. n, path) end
      end
      for _, req in ipairs(kept) do
        if req.path ~= "/end" and not req.headers["x-tamper"]
           and next(req.headers) then
          assert.are.equal("/" .. req.headers["x-n"], req.path)
        end
      end
      srv:close()
      gt:wait()
    end)
  end)
end)
