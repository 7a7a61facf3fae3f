-- green.tls against real peers (openssl s_server/s_client, python3's ssl,
-- curl) and itself: handshakes, verification failures, ALPN, SNI,
-- close_notify, hostile peers, kills and timeouts mid-handshake and
-- mid-read, big streams. Certificates are made in setup (spec/tls_support).
local green = require "green"
local h = require "helper"
local S = require "tls_support"

local eventually = h.eventually

local dir

local function p(name) return dir .. "/" .. name end

setup(function() dir = S.certs() end)
teardown(function() S.cleanup(dir) end)

-- A green TLS listener on a free port; returns it and the port.
local function tls_listener(extra)
  local o = { certificate = p("leaf.pem"), key = p("leaf.key") }
  for k, v in pairs(extra or {}) do o[k] = v end
  local srv = assert(green.listen("127.0.0.1", 0, { tls = o }))
  local _, port = srv:getsockname()
  return srv, port
end

-- s_server on a free port with `args`; returns the process and port once
-- it accepts connections (the probe connection is closed at once).
local function s_server(args)
  local port = S.free_port()
  local argv = { "openssl", "s_server", "-accept", "127.0.0.1:" .. port,
                 "-cert", p("leaf.pem"), "-key", p("leaf.key") }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local proc = S.spawn(argv)
  S.connect_when_up(port, 20, proc):close() -- s_server goes on accepting
  return proc, port
end

local function stop(proc)
  proc:kill("KILL")
  proc:wait(10)
  if proc.stdin then proc.stdin:close() end
  if proc.stdout then proc.stdout:close() end
end

describe("green.tls client", function()
  it("talks to openssl s_server: handshake, data both ways, ALPN, info,"
     .. " peer certificate", function()
    green_run(function()
      local proc, port = s_server { "-quiet", "-alpn", "h2,http/1.1" }
      local t = assert(green.connect("127.0.0.1", port, { tls = {
        cafile = p("ca.pem"), server_name = "localhost",
        alpn = { "http/1.1" } } }))
      assert.are.equal("http/1.1", t:getalpn())
      local info = t:info()
      assert.is_truthy(info.protocol == "TLSv1.3" or info.protocol == "TLSv1.2")
      assert.is_string(info.cipher)
      local cert = t:getpeercertificate()
      assert.are.equal("CN=localhost", cert.subject)
      assert.are.equal("CN=greenlua-test-CA", cert.issuer)
      assert.are.same({ "DNS:localhost", "IP:127.0.0.1", "IP:::1" },
                      cert.san)
      assert.matches("^%x%x:", cert.fingerprint)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT", cert.not_after)
      assert.are.equal(6, t:send("hello\n"))
      assert.matches("hello\n$", S.read_until(proc, "hello\n", 20))
      proc.stdin:send("world\r\nmore")
      assert.are.equal("world", t:receive("*l"))
      assert.are.equal("mo", t:receive(2))
      assert.are.equal("re", t:recv())
      t:close()
      stop(proc)
    end)
  end)

  it("sends SNI: s_server refuses a name it does not serve", function()
    green_run(function()
      local proc, port = s_server { "-servername", "localhost",
                                    "-servername_fatal", "-cert2",
                                    p("leaf.pem"), "-key2", p("leaf.key") }
      local ok = assert(green.connect("127.0.0.1", port, { tls = {
        cafile = p("ca.pem"), server_name = "localhost" } }))
      ok:close()
      local t, err = green.connect("127.0.0.1", port, { tls = {
        cafile = p("ca.pem"), server_name = "nope.example", verify = false } })
      assert.is_nil(t)
      assert.matches("unrecognized name", err)
      stop(proc)
    end)
  end)

  it("defaults the server name to the host connected to", function()
    green_run(function()
      local proc, port = s_server { "-quiet" }
      -- "localhost" checked against the certificate's names
      local t = assert(green.connect("localhost", port, { tls = {
        cafile = p("ca.pem") } }))
      t:close()
      -- wrap without server_name checks the peer's address (an IP SAN)
      local raw = assert(green.connect("127.0.0.1", port))
      t = assert(green.tls.wrap(raw, { cafile = p("ca.pem") }))
      assert.is_true(t:handshake(10))
      t:close()
      stop(proc)
    end)
  end)

  it("refuses bad certificates with clear errors, and verify = false"
     .. " accepts them", function()
    green_run(function()
      local cases = {
        { "self.pem", "self.key", { cafile = p("ca.pem") },
          "certificate verify failed: self%-signed certificate" },
        { "leaf.pem", "leaf.key", {}, -- the system store: unknown CA
          "certificate verify failed: unable to get local issuer" },
        { "wrong.pem", "wrong.key", { cafile = p("ca.pem") },
          "certificate verify failed: hostname mismatch" },
        { "expired.pem", "expired.key", { cafile = p("ca.pem") },
          "certificate verify failed: certificate has expired" },
      }
      for _, case in ipairs(cases) do
        local srv, port = tls_listener { certificate = p(case[1]),
                                         key = p(case[2]) }
        local served = green.spawn(function()
          local c = srv:accept()
          local _, err = c:receive()
          c:close()
          return err
        end)
        local o = { server_name = "localhost" }
        for k, v in pairs(case[3]) do o[k] = v end
        local t, err = green.connect("127.0.0.1", port, { tls = o })
        assert.is_nil(t)
        assert.matches(case[4], err)
        -- the server sees the client's alert
        assert.matches("alert", served:wait())
        -- verify = false: accepted
        served = green.spawn(function()
          local c = srv:accept()
          local line = c:receive()
          c:send(line .. "!\n")
          c:close()
        end)
        o.verify = false
        t = assert(green.connect("127.0.0.1", port, { tls = o }))
        t:send("x\n")
        assert.are.equal("x!", t:receive())
        served:wait()
        t:close()
        srv:close()
      end
    end)
  end)

  it("talks to python3's ssl server", function()
    green_run(function()
      local port = S.free_port()
      local proc = S.spawn { "python3", "-c", [[
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
ctx.set_alpn_protocols(["x-green", "http/1.1"])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(1)
print("READY", flush=True)
c, _ = ls.accept()
s = ctx.wrap_socket(c, server_side=True)
data = b""
while not data.endswith(b"\n"):
    data += s.recv(100)
s.sendall(b"py:" + data + s.selected_alpn_protocol().encode() + b"\n")
s.unwrap()
s.close()
]], tostring(port), p("leaf.pem"), p("leaf.key") }
      assert.matches("READY", S.read_until(proc, "READY", 20))
      local t = assert(green.connect("127.0.0.1", port, { tls = {
        cafile = p("ca.pem"), server_name = "localhost",
        alpn = { "x-green" } } }))
      assert(t:sendall("hi\n"))
      -- python ends with unwrap(): a close_notify, so "*a" completes
      assert.are.equal("py:hi\nx-green\n", t:receive("*a"))
      t:close()
      assert.are.equal("exit", (proc:wait(20)))
      proc.stdin:close(); proc.stdout:close()
    end)
  end)
end)

describe("green.tls server", function()
  it("serves openssl s_client, which verifies it; sees SNI and ALPN",
     function()
    green_run(function()
      local srv, port = tls_listener { alpn = { "h2", "http/1.1" } }
      local proc = S.spawn { "openssl", "s_client", "-connect",
                             "127.0.0.1:" .. port, "-CAfile", p("ca.pem"),
                             "-verify_return_error", "-servername",
                             "localhost", "-alpn", "http/1.1", "-quiet",
                             "-no_ign_eof" }
      local c = assert(srv:accept())
      c:settimeout(20)
      assert(c:send("from green\n"))
      assert.matches("from green\n", S.read_until(proc, "from green\n", 20))
      local info = c:info()
      assert.are.equal("localhost", info.server_name)
      assert.are.equal("http/1.1", c:getalpn())
      assert.is_nil(c:getpeercertificate()) -- no client certificate
      proc.stdin:send("from s_client\n")
      assert.are.equal("from s_client", c:receive())
      proc.stdin:close() -- s_client ends: its close_notify, then EOF
      assert.same({ nil, "closed" }, { c:recv() })
      c:close()
      proc:wait(20)
      proc.stdout:close()
      srv:close()
    end)
  end)

  -- A server with verify = true asks for a client certificate and checks
  -- it against its cafile: a client that shows one signed by that CA is
  -- let in (the server sees who it is); one without is refused.
  it("verifies client certificates when the server says verify = true",
     function()
    green_run(function()
      local c, s = S.pair(dir, { certificate = p("client.pem"),
                                 key = p("client.key") },
                          { verify = true, cafile = p("ca.pem") })
      local cert = s:getpeercertificate()
      assert.are.equal("CN=greenlua-client", cert.subject)
      assert.are.equal("CN=greenlua-test-CA", cert.issuer)
      assert(c:send("hi\n"))
      assert.are.equal("hi", s:receive())
      c:close()
      s:close()

      -- no client certificate: the server's handshake fails, and so
      -- does the client's first read (TLS 1.3 tells it only then)
      local srv = assert(green.listen("127.0.0.1", 0, { tls = {
        certificate = p("leaf.pem"), key = p("leaf.key"), verify = true,
        cafile = p("ca.pem") } }))
      local _, port = srv:getsockname()
      local server_err
      local acceptor = green.spawn(function()
        local a = assert(srv:accept())
        a:settimeout(20)
        local ok, err = a:handshake()
        server_err = not ok and err
        a:close()
      end)
      local t, cerr = green.connect("127.0.0.1", port, { tls = {
        cafile = p("ca.pem"), server_name = "localhost" } })
      if t then
        t:settimeout(20)
        local line, rerr = t:receive()
        assert.is_nil(line)
        assert.is_string(rerr)
        t:close()
      else
        assert.is_string(cerr)
      end
      acceptor:wait()
      assert.matches("certificate", server_err)
      srv:close()
    end)
  end)

  -- Renegotiation is refused (SSL_OP_NO_RENEGOTIATION): a TLS 1.2 client
  -- asking for it (s_client's "R" command) gets the no_renegotiation
  -- alert and gives up the connection; the server's read reports the
  -- failure as an error, it does not renegotiate or crash.
  it("refuses a client's renegotiation", function()
    green_run(function()
      local srv, port = tls_listener()
      local proc = S.spawn { "openssl", "s_client", "-connect",
                             "127.0.0.1:" .. port, "-CAfile", p("ca.pem"),
                             "-servername", "localhost", "-tls1_2" }
      local c = assert(srv:accept())
      c:settimeout(20)
      assert(c:send("before\n"))
      assert.matches("before\n", S.read_until(proc, "before\n", 20))
      proc.stdin:send("R\n") -- s_client: renegotiate
      local line, err = c:receive()
      assert.is_nil(line)
      assert.matches("handshake failure", err)
      assert.matches("no renegotiation",
                     S.read_until(proc, "no renegotiation", 20))
      c:close()
      proc:kill()
      proc:wait(20)
      proc.stdout:close()
      srv:close()
    end)
  end)

  it("serves python3's ssl client and curl --cacert through green.serve",
     function()
    green_run(function()
      local srv, port = tls_listener()
      local served = 0
      local server = green.spawn(green.serve, srv, function(c)
        c:settimeout(20)
        local line = c:receive()
        if line and line:match("^GET ") then
          repeat line = c:receive() until not line or line == ""
          local body = "hello over tls\n"
          c:send("HTTP/1.1 200 OK\r\nContent-Length: " .. #body
                 .. "\r\nConnection: close\r\n\r\n" .. body)
        elseif line then
          c:send("echo:" .. line .. "\n")
        end
        served = served + 1
        c:close()
      end)
      local ok, out, err = green.process.run({ "curl", "-sS", "--cacert",
        p("ca.pem"), "https://localhost:" .. port .. "/" },
        { timeout = 30, env = S.env })
      assert.is_true(ok, err)
      assert.are.equal("hello over tls\n", out)
      ok, out, err = green.process.run({ "python3", "-c", [[
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"ping\n")
        print(s.recv(100).decode(), end="")
        print(s.version())
]], tostring(port), p("ca.pem") }, { timeout = 30, env = S.env })
      assert.is_true(ok, err)
      assert.matches("^echo:ping\nTLSv1%.[23]\n$", out)
      eventually(function() return served == 2 end, "both served")
      server:kill()
      srv:close()
    end)
  end)

  it("refuses TLS 1.0 (min_protocol TLS 1.2 by default)", function()
    green_run(function()
      local srv, port = tls_listener()
      local served = green.spawn(function()
        local c = srv:accept()
        local r = { c:receive() }
        c:close()
        return r[2]
      end)
      local ok, out, err = green.process.run({ "openssl", "s_client",
        "-connect", "127.0.0.1:" .. port, "-tls1", "-cipher",
        "DEFAULT:@SECLEVEL=0" },
        { input = "", timeout = 30, env = S.env })
      assert.is_false(ok)
      assert.is_string(out)
      assert.matches("protocol", served:wait())
      assert.is_string(err)
      srv:close()
    end)
  end)

  it("a client that stalls mid-handshake times out in its own thread;"
     .. " the accept loop goes on", function()
    green_run(function()
      local srv, port = tls_listener { handshake_timeout = 0.5 }
      local results = {}
      local server = green.spawn(green.serve, srv, function(c)
        local line, err = c:receive()
        results[#results + 1] = line or err
        if line then c:send(line .. "\n") end
        c:close()
      end)
      local stall = assert(green.connect("127.0.0.1", port))
      stall:send("\22\3\1") -- the start of a record, then nothing
      -- meanwhile a real client is served
      local t = assert(green.connect("127.0.0.1", port, { tls = {
        cafile = p("ca.pem"), server_name = "localhost" } }))
      t:send("quick\n")
      assert.are.equal("quick", t:receive())
      t:close()
      eventually(function() return #results == 2 end, "stalled one ends")
      assert.are.same({ "quick", "timeout" }, results)
      stall:close()
      server:kill()
      srv:close()
    end)
  end)

  it("a peer that closes mid-handshake, or sends garbage instead of a"
     .. " ClientHello, gets a clear error", function()
    green_run(function()
      local srv, port = tls_listener()
      local function one(bytes)
        local r = green.spawn(function()
          local c = srv:accept()
          local a, b, c3 = c:receive()
          c:close()
          return a, b, c3
        end)
        local raw = assert(green.connect("127.0.0.1", port))
        raw:send(bytes)
        raw:shutdown("send")
        local a, b, partial = r:wait()
        raw:close()
        return a, b, partial
      end
      -- half a ClientHello record header, then the end
      assert.are.same({ nil, "closed", "" }, { one("\22\3\1\0") })
      local _, err = one("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.is_string(err)
      assert.not_matches("closed", err)
      assert.not_matches("timeout", err)
      _, err = one(string.rep("\0\255", 300))
      assert.is_string(err)
      assert.not_matches("timeout", err)
      srv:close()
    end)
  end)
end)

describe("green.tls streams", function()
  it("turn Nagle off on TCP (a small record must not wait for the peer's "
     .. "delayed ACK); a Unix socket is wrapped all the same", function()
    green_run(function()
      local c, s = S.pair(dir)
      assert.is_true(c:getoption("tcp-nodelay"))
      assert.is_true(s:getoption("tcp-nodelay"))
      c:close()
      s:close()
      -- wrapping a plain green TCP socket sets it too
      local a, b = h.pair()
      assert.is_false(a:getoption("tcp-nodelay"))
      local t = assert(green.tls.wrap(a, { cafile = p("ca.pem"),
                                           server_name = "localhost" }))
      assert.is_true(a:getoption("tcp-nodelay"))
      t:close()
      b:close()
      -- a Unix socket has no such option: wrap does not mind
      local path = os.tmpname()
      os.remove(path)
      local us = assert(green.listen_unix(path))
      local uc = assert(green.connect_unix(path))
      local u = assert(green.tls.wrap(uc, { verify = false }))
      u:close()
      us:close()
      os.remove(path)
    end)
  end)

  it("close_notify ends '*a'; a transport end without it does not",
     function()
    green_run(function()
      local c, s = S.pair(dir)
      s:send("all of it")
      s:close() -- close_notify
      assert.are.equal("all of it", c:receive("*a"))
      assert.are.same({ nil, "closed" }, { c:recv() })
      c:close()
      c, s = S.pair(dir)
      s:send("cut")
      eventually(function() return c:dirty() end, "data arrived")
      s:getsocket():close() -- no close_notify: maybe truncated
      assert.are.same({ nil, "closed", "cut" }, { c:receive("*a") })
      c:close()
      s:close()
    end)
  end)

  it("after the end of the stream every pattern returns what a plain"
     .. " socket's does, over a green socket and over a proxy table",
     function()
    green_run(function()
      local pairs_of = {
        plain = h.pair,
        fast = function() return S.pair(dir) end,
        lua = function() return S.proxy_pair(dir) end,
      }
      local function pack(...) return table.pack(...) end
      -- two receives after the peer sent `pending` and closed (with
      -- close_notify); `limit`: the reader's receive limit
      local function run(kind, pending, limit, pattern, prefix)
        local c, s = pairs_of[kind]()
        if limit then c:setlimit(limit) end
        if #pending > 0 then assert(s:send(pending)) end
        s:close()
        local function one()
          if pattern == "recv" then return pack(c:recv()) end
          if prefix == nil then return pack(c:receive(pattern)) end
          return pack(c:receive(pattern, prefix))
        end
        local r = { one(), one() }
        c:close()
        return r
      end
      local n = 0
      for _, limit in ipairs { false, 4 } do
        for _, pending in ipairs { "", "ab", "abcdefgh\n" } do
          for _, prefix in ipairs { false, "pre" } do
            prefix = prefix or nil
            for _, pattern in ipairs { "*a", "a", "*l", 3, 10, "recv" } do
              local want = run("plain", pending, limit, pattern, prefix)
              for _, kind in ipairs { "fast", "lua" } do
                assert.are.same(want,
                  run(kind, pending, limit, pattern, prefix),
                  ("%s: %q then the end, limit %s, receive(%s, %s)")
                    :format(kind, pending, limit, pattern, prefix))
                n = n + 1
              end
            end
          end
        end
      end
      assert.are.equal(2 * 3 * 2 * 6 * 2, n)
      -- LuaSocket's recvall: nothing at all is "closed", the prefix kept
      for _, kind in ipairs { "fast", "lua" } do
        assert.are.same({ { n = 3, nil, "closed", "" },
                          { n = 3, nil, "closed", "" } },
                        run(kind, "", false, "*a"))
        assert.are.same({ { n = 1, "preab" },
                          { n = 3, nil, "closed", "pre" } },
                        run(kind, "ab", false, "a", "pre"))
        assert.are.same({ { n = 2, nil, "closed" }, { n = 2, nil, "closed" } },
                        run(kind, "", false, "recv"))
        -- the limit: a line past it, a count above it, "*a" past it
        assert.are.same({ { n = 3, nil, "too long", "abcd" },
                          { n = 1, "efgh" } },
                        run(kind, "abcdefgh\n", 4, "*l"))
        assert.are.same({ { n = 3, nil, "too long", "" },
                          { n = 3, nil, "too long", "" } },
                        run(kind, "ab", 4, 10))
        assert.are.same({ { n = 3, nil, "too long", "abcd" },
                          { n = 3, nil, "too long", "efgh" } },
                        run(kind, "abcdefgh\n", 4, "*a"))
        assert.are.same({ { n = 3, nil, "too long", "" },
                          { n = 3, nil, "too long", "" } },
                        run(kind, "ab", 0, "*a"))
      end
    end)
  end)

  it("moves a huge stream both ways at once (records across reads)",
     function()
    green_run(function()
      local c, s = S.pair(dir)
      local size = 8 * 1024 * 1024
      local blob = {}
      for i = 1, size // 64 do blob[i] = ("%063d\n"):format(i) end
      blob = table.concat(blob)
      local echo = green.spawn(function()
        local got = 0
        while got < size do
          local d = assert(s:recv(100000))
          got = got + #d
          assert(s:sendall(d))
        end
      end)
      local writer = green.spawn(function() return c:sendall(blob) end)
      c:setlimit(nil) -- one receive of 8 MB: past the 1 MiB default
      local back = assert(c:receive(size))
      assert.is_true(writer:wait())
      echo:wait()
      assert.is_true(back == blob, "the echo differs")
      c:close(); s:close()
    end)
  end)

  it("loses no bytes when a reader is killed mid-read", function()
    green_run(function()
      local c, s = S.pair(dir)
      local reader = green.spawn(function() return s:receive("*l") end)
      h.until_suspended(reader, "socket:receive")
      c:send("ab")
      eventually(function() return s:dirty() end, "partial line buffered")
      -- decrypted now, or at the next read: either way in the socket
      reader:kill()
      assert.are.equal(green.GreenletExit, reader:wait())
      c:send("c\n")
      local nextowner = green.spawn(function() return s:receive("*l") end)
      assert.are.equal("abc", nextowner:wait())
      c:close(); s:close()
    end)
  end)

  it("loses no bytes when a Timeout fires mid-read, and returns the"
     .. " partial on a socket timeout", function()
    green_run(function()
      local c, s = S.pair(dir)
      c:send("12")
      local ok, err = pcall(green.with_timeout, 0.05, function()
        return s:receive(4)
      end)
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
      c:send("34")
      assert.are.equal("1234", s:receive(4))
      c:send("56")
      s:settimeout(0.05)
      assert.are.same({ nil, "timeout", "56" }, { s:receive(4) })
      assert.are.same({ nil, "timeout" }, { s:recv() })
      s:settimeout(nil)
      c:send("78")
      assert.are.equal("78", s:receive(2))
      c:close(); s:close()
    end)
  end)

  it("keeps the stream whole when a writer is killed mid-send", function()
    green_run(function()
      local c, s = S.pair(dir)
      local a = string.rep("A", 16 * 1024 * 1024)
      local writer = green.spawn(function() return c:send(a) end)
      h.until_suspended(writer, "socket:send")
      writer:kill()
      assert.are.equal(green.GreenletExit, writer:wait())
      local nextowner = green.spawn(function() return c:send("BBBB") end)
      local got, n = {}, 0
      local tail = ""
      while tail ~= "BBBB" do
        local d = assert(s:recv())
        got[#got + 1] = d
        n = n + #d
        tail = (tail .. d):sub(-4)
      end
      assert.are.equal(4, nextowner:wait())
      local all = table.concat(got)
      assert.is_true(#all > 4 and #all < #a + 4)
      assert.is_truthy(all == a:sub(1, #all - 4) .. "BBBB")
      c:close(); s:close()
    end)
  end)

  it("a socket timeout mid-send returns the last byte encrypted, and"
     .. " exactly those bytes go out before the next send", function()
    green_run(function()
      local c, s = S.pair(dir)
      local a = string.rep("0123456789abcdef", 1024 * 1024) -- 16 MB
      c:settimeout(0.05) -- the peer does not read yet: the send times out
      local r, err, pos = c:send(a)
      assert.is_nil(r)
      assert.are.equal("timeout", err)
      assert.is_true(pos > 0 and pos < #a, "some, not all: " .. pos)
      -- timeout 0 never waits, and neither loses nor cuts a record
      c:settimeout(0)
      local r0, err0, pos0 = c:send(a, pos + 1)
      assert.is_nil(r0)
      assert.are.equal("timeout", err0)
      assert.is_true(pos0 >= pos and pos0 < #a)
      c:settimeout(nil)
      local writer = green.spawn(function() return c:send("BBBB") end)
      local got, tail = {}, ""
      while tail ~= "BBBB" do
        local d = assert(s:recv())
        got[#got + 1] = d
        tail = (tail .. d):sub(-4)
      end
      assert.are.equal(4, writer:wait())
      local all = table.concat(got)
      assert.are.equal(pos0 + 4, #all)
      assert.is_true(all == a:sub(1, pos0) .. "BBBB", "the stream differs")
      c:close(); s:close()
    end)
  end)

  it("with timeout 0 a receive polls: 'timeout' and the partial until the"
     .. " data is there", function()
    green_run(function()
      local c, s = S.pair(dir)
      s:settimeout(0)
      assert.are.same({ nil, "timeout", "" }, { s:receive() })
      assert.are.same({ nil, "timeout" }, { s:recv() })
      c:send("polled\n")
      local line
      eventually(function()
        local l, err, partial = s:receive("*l")
        assert(l or err == "timeout", err)
        line = l or (partial ~= "" and partial) or line
        return l ~= nil
      end, "the line, by polling")
      assert.are.equal("polled", line)
      c:close(); s:close()
    end)
  end)

  it("closing a TLS socket while other threads wait in its receive and"
     .. " its send: both say closed", function()
    green_run(function()
      local c, s = S.pair(dir)
      local reader = green.spawn(function() return s:receive() end)
      h.until_suspended(reader, "socket:receive")
      local a = string.rep("x", 16 * 1024 * 1024)
      local writer = green.spawn(function() return s:send(a) end)
      h.until_suspended(writer, "socket:send")
      s:close()
      assert.are.same({ nil, "closed", "" }, { reader:wait() })
      local r, err, pos = writer:wait()
      assert.is_nil(r)
      assert.are.equal("closed", err)
      assert.is_true(pos > 0 and pos < #a)
      c:close()
    end)
  end)

  it("runs over any object with recv and send (a proxy table), through"
     .. " its methods", function()
    green_run(function()
      local function proxy(raw, calls)
        return setmetatable({}, { __index = function(_, k)
          local v = raw[k]
          if type(v) ~= "function" then return v end
          return function(_, ...)
            calls[k] = (calls[k] or 0) + 1
            return v(raw, ...)
          end
        end })
      end
      local rc, rs = h.pair()
      local ccalls, scalls = {}, {}
      local c = assert(green.tls.wrap(proxy(rc, ccalls), {
        cafile = p("ca.pem"), server_name = "localhost" }))
      local s = assert(green.tls.wrap(proxy(rs, scalls), {
        mode = "server", certificate = p("leaf.pem"), key = p("leaf.key") }))
      local server = green.spawn(function()
        local line = assert(s:receive())
        assert(s:send(line:upper() .. "\n"))
        local big = assert(s:receive(1024 * 1024))
        assert(s:sendall(big))
        return s:close()
      end)
      assert(c:send("hello\n"))
      assert.are.equal("HELLO", c:receive())
      local big = string.rep("0123456789", 1024 * 1024 // 10 + 1)
      big = big:sub(1, 1024 * 1024)
      local writer = green.spawn(function() return c:sendall(big) end)
      local back = assert(c:receive(#big))
      assert.is_true(writer:wait())
      assert.is_true(back == big, "the echo differs")
      assert.are.equal(1, server:wait())
      assert.are.same({ nil, "closed" }, { c:recv() }) -- close_notify
      c:close()
      for _, calls in ipairs { ccalls, scalls } do
        assert.is_true((calls.recv or 0) > 0 and (calls.send or 0) > 0)
      end
    end)
  end)

  it("a kill or timeout mid-handshake leaves a usable or closed socket",
     function()
    green_run(function()
      local srv, port = tls_listener()
      local raw = assert(green.connect("127.0.0.1", port))
      local accepted = assert(srv:accept())
      local hs = green.spawn(function() return accepted:handshake() end)
      h.until_suspended(hs, "socket:receive")
      hs:kill()
      assert.are.equal(green.GreenletExit, hs:wait())
      -- timeout, then the client arrives: the handshake goes on
      assert.are.same({ nil, "timeout" }, { accepted:handshake(0.05) })
      local t = assert(green.tls.wrap(raw, { cafile = p("ca.pem"),
                                            server_name = "localhost" }))
      local client = green.spawn(function()
        assert(t:send("late\n"))
        return t:receive()
      end)
      assert.are.equal("late", accepted:receive())
      accepted:send("ok\n")
      assert.are.equal("ok", client:wait())
      t:close(); accepted:close(); srv:close()
    end)
  end)

  it("keeps the socket's receive limit: a line that never ends is 'too"
     .. " long'", function()
    green_run(function()
      local c, s = S.pair(dir)
      assert.are.equal(1024 * 1024, s:getlimit()) -- the socket's default
      s:setlimit(100)
      c:send(string.rep("x", 250))
      local r = { s:receive() }
      assert.are.same({ nil, "too long", string.rep("x", 100) }, r)
      c:send("\n")
      assert.are.equal(string.rep("x", 100), s:receive(100))
      s:setlimit(nil)
      assert.are.equal(string.rep("x", 50), s:receive())
      c:close(); s:close()
    end)
  end)

  it("raises on a second simultaneous reader", function()
    green_run(function()
      local c, s = S.pair(dir)
      local r1 = green.spawn(function() return s:receive() end)
      h.until_suspended(r1, "socket:receive")
      local ok, err = pcall(s.receive, s)
      assert.is_false(ok)
      assert.matches("Second simultaneous read", err)
      c:send("one\n")
      assert.are.equal("one", r1:wait())
      c:close(); s:close()
    end)
  end)

  it("reads and writes from different threads at once", function()
    green_run(function()
      local c, s = S.pair(dir)
      local n = 2000
      local reader = green.spawn(function()
        for i = 1, n do assert.are.equal("s" .. i, c:receive()) end
      end)
      local writer = green.spawn(function()
        for i = 1, n do assert(c:send("c" .. i .. "\n")) end
      end)
      for i = 1, n do
        assert.are.equal("c" .. i, s:receive())
        assert(s:send("s" .. i .. "\n"))
      end
      reader:wait(); writer:wait()
      c:close(); s:close()
    end)
  end)

  it("two writers on one TLS socket: each send arrives whole and in its"
     .. " writer's order, while the queue is full", function()
    green_run(function()
      local c, s = S.pair(dir)
      local n, size = 300, 20000 -- together past the socket's buffers
      local function writer(tag)
        return green.spawn(function()
          for i = 1, n do
            local head = tag .. i .. ":"
            assert(c:send(head .. string.rep(tag, size - #head - 1) .. "\n"))
          end
          return true
        end)
      end
      local a, b = writer("a"), writer("b")
      h.until_suspended(a, "socket:send") -- the peer does not read yet
      local next_of = { a = 1, b = 1 }
      for _ = 1, 2 * n do
        local line = assert(s:receive())
        local tag, i = line:match("^(%a)(%d+):")
        assert.are.equal(next_of[tag], tonumber(i))
        next_of[tag] = next_of[tag] + 1
        assert.are.equal(size - 1, #line)
        assert.is_nil(line:find("[^" .. tag .. "]", #tag + #i + 2))
      end
      assert.is_true(a:wait())
      assert.is_true(b:wait())
      c:close(); s:close()
    end)
  end)

  it("closed and unclosed sockets: later calls say closed, finalizers"
     .. " free everything", function()
    green_run(function()
      local c, s = S.pair(dir)
      c:close()
      assert.are.equal(1, c:close())
      assert.are.same({ nil, "closed", "" }, { c:receive() })
      assert.are.same({ nil, "closed", 0 }, { c:send("x") })
      assert.is_nil(c:getpeercertificate())
      assert.is_nil(c:info())
      s:close()
      -- dropped without close: the finalizers free SSL, BIOs, socket
      for _ = 1, 3 do
        local a, b = S.pair(dir)
        a:send("unread")
        local _ = b
      end
      collectgarbage()
      collectgarbage()
    end)
  end)

  it("checks its arguments", function()
    green_run(function()
      local c, s = h.pair()
      assert.has_error(function() green.tls.wrap(42) end)
      assert.has_error(function() green.tls.wrap(c, { mode = "both" }) end)
      assert.has_error(function() green.tls.wrap(c, { verfy = true }) end)
      assert.has_error(function() green.tls.wrap(c, { alpn = { "" } }) end)
      assert.has_error(function()
        green.tls.wrap(c, { min_protocol = "tls9" })
      end)
      assert.has_error(function() green.tls.wrap(c, { mode = "server" }) end)
      local t, err = green.tls.wrap(c, { mode = "server",
                                         certificate = p("nope.pem") })
      assert.is_nil(t)
      assert.matches("cannot load the certificate", err)
      t, err = green.tls.wrap(c, { mode = "server",
                                   certificate = p("leaf.pem"),
                                   key = p("wrong.key") })
      assert.is_nil(t)
      assert.matches("cannot load the key .*mismatch", err)
      -- PEM text works as well as files
      t = assert(green.tls.wrap(c, { mode = "server",
                                     certificate = S.read(p("leaf.pem")),
                                     key = S.read(p("leaf.key")) }))
      t:close()
      s:close()
    end)
  end)
end)

describe("examples/tls_client.lua", function()
  it("fetches twice at once from s_server, verified, then is refused"
     .. " with the system's CAs", function()
    local out, err, code = h.sh(h.greenlua
                                .. " examples/tls_client.lua")
    assert.are.equal(0, code, err)
    assert.are.equal(table.concat({
      "fetch 1: HTTP/1.0 200 ok; TLSv1.3 via http/1.1; server CN=localhost;"
        .. " status page received",
      "fetch 2: HTTP/1.0 200 ok; TLSv1.3 via http/1.1; server CN=localhost;"
        .. " status page received",
      "heartbeat kept beating:\ttrue",
      "with the system's CAs instead:\tcertificate verify failed: "
        .. "self-signed certificate", "" }, "\n"), out)
  end)
end)
