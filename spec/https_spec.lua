-- HTTPS in green.http (issue 13): the server on a green.listen{tls=...}
-- listener against curl and python3 requests, the client against nginx
-- with ssl and against the green server; verification failures; a client
-- stalled mid-handshake; prefork workers. Certificates are made in setup
-- (spec/tls_support).
local green = require "green"
local h = require "helper"
local quote = h.quote
local bg = h.bg
local tool = h.has_tool
local S = require "tls_support"

local dir

local function p(name) return dir .. "/" .. name end

setup(function() dir = S.certs() end)
teardown(function() S.cleanup(dir) end)





local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- An HTTPS server (certificate `cert`, default leaf) serving `handler`
-- in a thread; returns the port, a stop function and the peers seen
-- (remote addresses of the requests served: one per connection).
local function start(handler, opts, cert)
  cert = cert or "leaf"
  local srv = assert(green.listen("127.0.0.1", 0, { tls = {
    certificate = p(cert .. ".pem"), key = p(cert .. ".key") } }))
  local _, port = srv:getsockname()
  local peers = {}
  opts = opts or {}
  opts.log = function(req) peers[req.remote_addr] = true end
  local gt = green.spawn(green.http.serve, srv, handler, opts)
  return port, function()
    srv:close()
    return gt:wait()
  end, peers
end

local function echo(req)
  local body = req:body()
  return 200, { ["Content-Type"] = "text/plain" },
    ("%s %s %d %s\n"):format(req.method, req.path, #body, body:sub(1, 8))
end

describe("green.http over TLS", function()
  it("holds no parser buffers on an idle keep-alive TLS connection, and "
     .. "retakes them for its next request", function()
    green_run(function()
      local conn
      local port, stop = start(function(req)
        conn = req.conn
        return 200, { ["Content-Type"] = "text/plain" }, "hi " .. req.path
      end, { keepalive_timeout = 600 })
      local c = green.http.Client { tls = { cafile = p("ca.pem") } }
      for round = 1, 2 do
        local r = assert(c:get("https://localhost:" .. port .. "/" .. round))
        assert.are.equal("hi /" .. round, r.body)
        -- the server's connection waits for its next head: nothing held
        assert.are.equal(0, h.idle_parser_bytes(conn))
      end
      c:close()
      stop()
    end)
  end)

  it("reads every header of a head begun behind a response whose grown "
     .. "output is given back (the head's spans share its allocation)",
     function()
    green_run(function()
      local conn
      local port, stop = start(function(req)
        conn = req.conn
        return h.x_headers_answer(req, "x-big")
      end, { keepalive_timeout = 600, max_header_size = 128 * 1024 })
      local c = assert(green.connect("127.0.0.1", port, { tls = {
        cafile = p("ca.pem"), server_name = "localhost" } }))
      c:settimeout(20)
      local function response() return h.http_ok_body(c) end
      -- a 70 KB head: its copy grows the output past 64 KB (given back
      -- when the response goes); the next head begun behind it, 3 lines
      -- parsed before that (over TLS the server feeds what is buffered,
      -- then flushes, then waits)
      assert(c:send("GET /big HTTP/1.1\r\nHost: h\r\nX-Big: "
                    .. ("b"):rep(70 * 1024) .. "\r\n\r\nGET /after HTTP/1.1"
                    .. "\r\nHost: h\r\nX-01: v1\r\nX-02: v2\r\nX-03: v3\r\n"))
      assert.are.equal("/big ", response())
      assert(c:send("X-Last: z\r\n\r\n"))
      assert.are.equal("/after x-01=v1,x-02=v2,x-03=v3,x-last=z", response())
      assert.are.equal(0, h.idle_parser_bytes(conn))
      c:close()
      stop()
    end)
  end)

  it("green client and server: keep-alive on one TLS connection, bodies"
     .. " both ways (length and chunked), HEAD", function()
    green_run(function()
      local port, stop, peers = start(function(req)
        if req.path == "/chunks" then
          local i = 0
          return 200, nil, function()
            i = i + 1
            if i <= 3 then return ("x"):rep(20000) .. i end
          end
        end
        return echo(req)
      end, { keepalive_timeout = 600, graceful_timeout = 3600 })
      local base = "https://localhost:" .. port
      local c = green.http.Client { tls = { cafile = p("ca.pem") } }
      for i = 1, 3 do
        local r = assert(c:get(base .. "/get" .. i))
        assert.are.equal(200, r.status)
        assert.are.equal("GET /get" .. i .. " 0 \n", r.body)
      end
      local big = ("0123456789"):rep(20000)
      local r = assert(c:post(base .. "/post", big))
      assert.are.equal("POST /post 200000 01234567\n", r.body)
      local n = 0
      r = assert(c:request { url = base .. "/up", method = "PUT",
                             body = function()
                               n = n + 1
                               if n <= 4 then return ("ab"):rep(5000) end
                             end })
      assert.are.equal("PUT /up 40000 abababab\n", r.body)
      r = assert(c:get(base .. "/chunks"))
      assert.are.equal("chunked", r.headers["transfer-encoding"])
      assert.are.equal(("x"):rep(20000) .. "1" .. ("x"):rep(20000) .. "2"
                       .. ("x"):rep(20000) .. "3", r.body)
      r = assert(c:request { method = "HEAD", url = base .. "/head" })
      assert.are.equal("", r.body)
      assert.are.equal(1, count(peers)) -- every request on one connection
      -- a graceful stop closes the idle keep-alive TLS connection at once
      -- (its thread waits for ciphertext in the green socket): with the
      -- keep-alive and graceful timeouts far past green_run's deadline, a
      -- stop that waited for either fails with a dump of the threads
      stop()
      c:close()
    end)
  end)

  it("curl --cacert: keep-alive reuse of one TLS connection, chunked"
     .. " upload", function()
    if not tool("curl") then pending("curl is not installed") return end
    green_run(function()
      local port, stop, peers = start(echo)
      local url = "https://localhost:" .. port
      local ca = p("ca.pem")
      local out, err, rc = bg(("curl -sS -v --cacert %s %s/one %s/two %s/three")
                              :format(ca, url, url, url))()
      assert.are.equal(0, rc, err)
      assert.are.equal("GET /one 0 \nGET /two 0 \nGET /three 0 \n", out)
      assert.matches("Re%-using existing connection", err)
      assert.matches("SSL certificate verify ok", err)
      assert.are.equal(1, count(peers))
      local file = os.tmpname()
      local f = assert(io.open(file, "w"))
      f:write(("0123456789"):rep(5000))
      f:close()
      out, err, rc = bg(("curl -sS --cacert %s -H 'Transfer-Encoding: "
        .. "chunked' --data-binary @%s %s/up"):format(ca, file, url))()
      os.remove(file)
      assert.are.equal(0, rc, err)
      assert.are.equal("POST /up 50000 01234567\n", out)
      -- without the CA curl refuses the server
      local _
      _, err, rc = bg(("curl -sS %s/x"):format(url))()
      assert.are_not.equal(0, rc)
      assert.matches("certificate", err)
      stop()
    end)
  end)

  it("python3 requests with verify=cafile", function()
    if not tool("/usr/bin/python3") or not os.execute(
        "env -u LD_PRELOAD /usr/bin/python3 -c 'import requests' "
        .. "2>/dev/null") then
      pending("python3-requests is not installed")
      return
    end
    green_run(function()
      local port, stop, peers = start(echo)
      local py = ([[
import requests
s = requests.Session()
for i in range(3):
    r = s.post("https://localhost:%d/p%%d" %% i, data=b"z" * (1000 * i),
               verify=%q, timeout=20)
    print(r.status_code, r.text.strip())
try:
    requests.get("https://localhost:%d/", timeout=20)
    print("verified without the CA")
except requests.exceptions.SSLError:
    print("refused")
]]):format(port, p("ca.pem"), port)
      local out, err, rc = bg("/usr/bin/python3 -c " .. quote(py))()
      assert.are.equal(0, rc, err)
      assert.are.equal(table.concat({
        "200 POST /p0 0", "200 POST /p1 1000 zzzzzzzz",
        "200 POST /p2 2000 zzzzzzzz", "refused", "" }, "\n"), out)
      -- the session's three requests on one connection, the refused one
      -- another (its handshake failed: nothing was served on it)
      assert.are.equal(1, count(peers))
      stop()
    end)
  end)

  it("client verification: unknown CA, wrong host name, verify = false",
     function()
    green_run(function()
      local port, stop = start(echo, nil, "wrong") -- other.example only
      local url = "https://localhost:" .. port .. "/"
      -- the system store does not know the test CA
      local r, err = green.http.get(url)
      assert.is_nil(r)
      assert.matches("^https://localhost:%d+: certificate verify failed",
                     err)
      -- the CA is known, the name is not the certificate's
      r, err = green.http.request { url = url,
                                    tls = { cafile = p("ca.pem") } }
      assert.is_nil(r)
      assert.matches("certificate verify failed", err)
      assert.matches("hostname mismatch", err)
      -- explicitly unverified: accepted
      r = assert(green.http.request { url = url, tls = { verify = false } })
      assert.are.equal("GET / 0 \n", r.body)
      -- misuse raises
      assert.has_error(function()
        green.http.request { url = url, tls = "yes" }
      end, "bad argument #1 to 'request' (tls: table expected, got string)")
      assert.has_error(function() green.http.Client { tls = 1 } end,
        "bad argument #1 to 'Client' (tls: table expected, got number)")
      -- a bad TLS option raises too, and leaves the pool usable
      local c1 = green.http.Client { max_per_host = 1,
                                     tls = { verify = false } }
      for _ = 1, 2 do
        assert.has_error(function()
          c1:request { url = url, tls = { cafile = 42 } }
        end)
      end
      assert.are.equal("GET / 0 \n", assert(c1:get(url)).body)
      c1:close()
      stop()
    end)
  end)

  it("a client stalled mid-handshake does not stop others being served",
     function()
    green_run(function()
      local port, stop, peers = start(echo)
      -- a TLS record header and part of a ClientHello, then nothing
      local stalled = {}
      for i = 1, 3 do
        stalled[i] = assert(green.connect("127.0.0.1", port))
        assert(stalled[i]:send("\22\3\1\2\0\1\0\1\252\3\3"))
      end
      local c = green.http.Client { tls = { cafile = p("ca.pem") } }
      for i = 1, 5 do
        local r = assert(c:get(("https://localhost:%d/%d"):format(port, i)))
        assert.are.equal(("GET /%d 0 \n"):format(i), r.body)
      end
      -- a second client, a second connection
      local r = assert(green.http.request {
        url = ("https://127.0.0.1:%d/ip"):format(port),
        tls = { cafile = p("ca.pem") } })
      assert.are.equal("GET /ip 0 \n", r.body)
      assert.are.equal(2, count(peers))
      for i = 1, 3 do -- still open: their handshakes wait
        stalled[i]:settimeout(0)
        local _, e = stalled[i]:receive(1)
        assert.are.equal("timeout", e)
        stalled[i]:close()
      end
      c:close()
      stop()
    end)
  end)

  it("a body that ends with the stream: complete at close_notify, an error"
     .. " without it (truncation)", function()
    green_run(function()
      local srv = assert(green.listen("127.0.0.1", 0, { tls = {
        certificate = p("leaf.pem"), key = p("leaf.key") } }))
      local _, port = srv:getsockname()
      local acceptor = green.spawn(function()
        for _, clean in ipairs { true, false } do
          local c = assert(srv:accept())
          c:settimeout(20)
          repeat local l = assert(c:receive("*l")) until l == ""
          assert(c:send("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                        .. ("body "):rep(1000)))
          if clean then
            c:close() -- close_notify, then the socket
          else
            c:getsocket():close() -- the TCP connection only
          end
        end
      end)
      local url = "https://localhost:" .. port .. "/"
      local tls = { cafile = p("ca.pem") }
      local r = assert(green.http.request { url = url, tls = tls })
      assert.are.equal(("body "):rep(1000), r.body)
      local r2, err = green.http.request { url = url, tls = tls }
      assert.is_nil(r2)
      assert.are.equal("closed", err)
      acceptor:wait()
      srv:close()
    end)
  end)

  it("refuses the response heads it refuses in plain text",
     function()
    green_run(function()
      local srv = assert(green.listen("127.0.0.1", 0, { tls = {
        certificate = p("leaf.pem"), key = p("leaf.key") } }))
      local _, port = srv:getsockname()
      local answers = {
        "HTTX/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 200 OK\rXContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nX-A: \0\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
      }
      local acceptor = green.spawn(function()
        for i = 1, #answers do
          local c = assert(srv:accept())
          c:settimeout(20)
          repeat local l = assert(c:receive("*l")) until l == ""
          assert(c:send(answers[i]))
          c:receive("*a") -- until the client closes
          c:close()
        end
      end)
      local client = green.http.Client { tls = { cafile = p("ca.pem") } }
      local url = "https://localhost:" .. port .. "/"
      for i = 1, #answers - 1 do
        local r, err = client:get(url)
        assert.is_nil(r, answers[i])
        assert.are.equal("bad response", err)
      end
      local r = assert(client:get(url)) -- a folded value: unfolded
      assert.are.same({ "ok", "a   b" }, { r.body, r.headers["x-a"] })
      client:close()
      acceptor:wait()
      srv:close()
    end)
  end)

  it("the server answers a plain-HTTP request on its TLS port by closing",
     function()
    green_run(function()
      local port, stop, peers = start(echo)
      local s = assert(green.connect("127.0.0.1", port))
      s:settimeout(20)
      assert(s:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
      local got, err, partial = s:receive("*a")
      s:close()
      -- no HTTP answer: at most a TLS alert record
      local data = got or partial
      assert.is_nil(data:match("^HTTP"), err)
      assert.are.equal(0, count(peers))
      stop()
    end)
  end)

  it("talks to nginx with ssl: a static file, keep-alive on one TLS"
     .. " connection", function()
    local content = ("static line\n"):rep(5000)
    local port, stop = h.nginx {
      files = { ["file.txt"] = content },
      ssl = { certificate = p("leaf.pem"), key = p("leaf.key") },
      server = "add_header X-Conn $connection;" }
    if not port then return pending(stop) end
    finally(stop)
    green_run(function()
      local base = "https://localhost:" .. port
      local client = green.http.Client { tls = { cafile = p("ca.pem") } }
      local r = assert(client:get(base .. "/file.txt"))
      assert.are.equal(200, r.status)
      assert.are.equal(content, r.body)
      local conn = r.headers["x-conn"]
      for _ = 1, 3 do
        r = assert(client:get(base .. "/file.txt"))
        assert.are.equal(content, r.body)
        assert.are.equal(conn, r.headers["x-conn"]) -- the same connection
      end
      r = assert(client:get(base .. "/missing"))
      assert.are.equal(404, r.status)
      client:close()
      -- without the CA: refused
      local r2, e2 = green.http.get(base .. "/file.txt")
      assert.is_nil(r2)
      assert.matches("certificate verify failed", e2)
    end)
  end)

  it("WebSocket over TLS: the green client (wss://) and python3"
     .. " websockets against the green server", function()
    green_run(function()
      local ended = {}
      local port, stop = start(function(req)
        local ws = assert(req:upgrade_websocket())
        while true do
          local m, kind, code, reason = ws:receive()
          if not m then
            ended[#ended + 1] = { kind, code, reason }
            return
          end
          assert(ws:send(m:upper(), kind))
        end
      end)
      local url = "wss://localhost:" .. port .. "/"
      local ws = assert(green.http.websocket(url, { timeout = 20,
        tls = { cafile = p("ca.pem") } }))
      assert(ws:send("hello"))
      assert.are.same({ "HELLO", "text" }, { ws:receive() })
      local big = ("abc"):rep(100000)
      assert(ws:send(big, "binary"))
      assert.are.same({ big:upper(), "binary" }, { ws:receive() })
      assert(ws:ping("p"))
      assert(ws:send("after ping"))
      assert.are.same({ "AFTER PING", "text" }, { ws:receive() })
      ws:close(4000, "bye")
      h.eventually(function() return #ended == 1 end, 20, "server end")
      assert.are.same({ "closed", 4000, "bye" }, ended[1])
      -- unverified: refused, clearly
      local w2, err = green.http.websocket(url)
      assert.is_nil(w2)
      assert.matches("^wss://localhost:%d+: certificate verify failed", err)
      if os.execute("env -u LD_PRELOAD /usr/bin/python3 -c "
                    .. "'import websockets' >/dev/null 2>&1") then
        local py = ([[
import asyncio, ssl, websockets
async def main():
    ctx = ssl.create_default_context(cafile=%q)
    async with websockets.connect("wss://localhost:%d/", ssl=ctx) as ws:
        await ws.send("hi")
        print(await ws.recv())
        await ws.send(["frag1-", "frag2"])
        print(await ws.recv())
        await ws.close(code=4001, reason="py done")
asyncio.run(main())
]]):format(p("ca.pem"), port)
        local out, perr, rc = bg("/usr/bin/python3 -c " .. quote(py))()
        assert.are.equal(0, rc, perr)
        assert.are.equal("HI\nFRAG1-FRAG2\n", out)
        h.eventually(function() return #ended == 2 end, 20, "server end")
        assert.are.same({ "closed", 4001, "py done" }, ended[2])
      end
      stop()
    end)
  end)

  it("serves HTTPS with prefork workers", function()
    if not tool("curl") then pending("curl is not installed") return end
    green_run(function()
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write(([[
local green = require "green"
local l = assert(green.listen("127.0.0.1", 0, { tls = {
  certificate = %q, key = %q } }))
local _, port = l:getsockname()
io.stdout:write("port ", port, "\n")
io.stdout:flush()
green.http.serve(l, function(req)
  return 200, nil, "worker " .. green.worker_id() .. " " .. req.path .. "\n"
end, { workers = 2 })
]]):format(p("leaf.pem"), p("leaf.key")))
      f:close()
      local proc = assert(green.process.spawn { h.greenlua, path,
                                                stdout = "pipe" })
      proc.stdout:settimeout(30)
      local line = proc.stdout:receive("*l")
      os.remove(path)
      local ok, err = pcall(function()
        local port = assert(math.tointeger(tonumber(line:match("port (%d+)"))))
        local url = "https://localhost:" .. port
        local out, cerr, rc = bg(("curl -sS --cacert %s %s/a %s/b")
                                 :format(p("ca.pem"), url, url))()
        assert.are.equal(0, rc, cerr)
        assert.matches("^worker %d /a\nworker %d /b\n$", out)
        local c = green.http.Client { tls = { cafile = p("ca.pem") } }
        for i = 1, 4 do
          local r = assert(c:get(url .. "/g" .. i))
          assert.matches("^worker %d /g" .. i .. "\n$", r.body)
        end
        c:close()
      end)
      proc:kill("TERM")
      local how = proc:wait(60)
      if not ok then error(err, 0) end
      assert.are.equal("exit", how)
    end)
  end)
end)
