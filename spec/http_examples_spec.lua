-- The green.http examples (issue 12), each run as a subprocess and
-- driven with green.http's client and WebSocket.
local green = require "green"
local h = require "helper"
local slurp = h.slurp


-- Start `greenlua examples/<name> args` in the background; returns the
-- port from its first line, and a function that waits for its exit and
-- returns its output and exit code.
local function run(name, args, pattern)
  local base = os.tmpname()
  os.execute(("(timeout -k 5 60 %s examples/%s %s >%s.out 2>%s.err "
              .. "</dev/null; echo $? >%s.rc) >/dev/null 2>&1 &")
             :format(h.greenlua, name, args, base, base, base))
  local port = tonumber(h.eventually(function()
    return (slurp(base .. ".out") or ""):match(pattern)
  end, 30, name .. " listening"))
  return port, function()
    local rc = h.eventually(function()
      return (slurp(base .. ".rc") or ""):match("%d+")
    end, 60, name .. " exiting")
    local out, err = slurp(base .. ".out"), slurp(base .. ".err")
    for _, x in ipairs { "", ".out", ".err", ".rc" } do os.remove(base .. x) end
    return out, err, tonumber(rc)
  end
end

describe("green.http examples", function()
  it("http_hello.lua answers and stops on /stop", function()
    green_run(function()
      local port, done = run("http_hello.lua", "0",
                             "listening on 127%.0%.0%.1:(%d+)")
      local base = "http://127.0.0.1:" .. port
      assert.are.equal("Hello, world!\n", assert(green.http.get(base)).body)
      assert.are.equal("Hello, green!\n",
                       assert(green.http.get(base .. "/?green")).body)
      assert.are.equal(200, assert(green.http.get(base .. "/stop")).status)
      local _, err, rc = done()
      assert.are.equal(0, rc, err)
    end)
  end)

  it("https_hello.lua serves HTTPS, its client verifies, and it stops on"
     .. " /stop", function()
    green_run(function()
      local port, done = run("https_hello.lua", "0",
                             "listening on https://127%.0%.0%.1:(%d+)")
      local base = "https://localhost:" .. port
      local r, err = green.http.get(base .. "/")
      assert.is_nil(r) -- a certificate no system store knows
      assert.matches("certificate verify failed", err)
      r = assert(green.http.request { url = base .. "/?green",
                                      tls = { verify = false } })
      assert.are.equal("Hello, green!\n", r.body)
      assert.are.equal(200, assert(green.http.request {
        url = base .. "/stop", tls = { verify = false } }).status)
      local out, errs, rc = done()
      assert.are.equal(0, rc, errs)
      local cert = out:match("certificate: (%S+)%)")
      assert.is_string(cert)
      assert.matches("client got 200: Hello, world!\n", out, 1, true)
      assert.matches("client got 200: Hello, TLS!\n", out, 1, true)
      assert.is_nil(io.open(cert)) -- its temp certificate is gone
    end)
  end)

  it("http_proxy.lua forwards to a backend over a bounded pool", function()
    green_run(function()
      local srv = assert(green.listen("127.0.0.1", 0))
      local bport = select(2, srv:getsockname())
      local peers = {}
      local backend = green.spawn(green.http.serve, srv, function(req)
        peers[req.remote_addr] = true
        if req.path == "/big" then
          local n = 0
          return 200, { ["X-Backend"] = "yes" }, function()
            n = n + 1
            if n <= 100 then return ("%05d\n"):format(n) end
          end
        end
        return 201, { ["X-Backend"] = "yes" },
          ("%s %s %s via %s"):format(req.method, req.path,
                                     req:body(), req.headers["x-forwarded-for"])
      end)
      local port, done = run("http_proxy.lua",
                             "0 http://127.0.0.1:" .. bport,
                             "proxying 127%.0%.0%.1:(%d+)")
      local base = "http://127.0.0.1:" .. port
      local r = assert(green.http.post(base .. "/x?y=1", "body"))
      assert.are.equal(201, r.status)
      assert.are.equal("yes", r.headers["x-backend"])
      assert.are.equal("POST /x body via 127.0.0.1", r.body)
      local pile = green.GreenPile()
      for _ = 1, 12 do
        pile:spawn(function()
          return assert(green.http.Client():get(base .. "/big")).body
        end)
      end
      local want = {}
      for n = 1, 100 do want[n] = ("%05d\n"):format(n) end
      for body in pile do assert.are.equal(table.concat(want), body) end
      local n = 0
      for _ in pairs(peers) do n = n + 1 end
      assert.is_true(n <= 4, n .. " backend connections")
      green.http.get(base .. "/proxy-stop")
      local _, err, rc = done()
      assert.are.equal(0, rc, err)
      srv:close()
      backend:wait()
    end)
  end)

  it("ws_chat.lua relays each message to every member", function()
    green_run(function()
      local port, done = run("ws_chat.lua", "0",
                             "chat on ws://127%.0%.0%.1:(%d+)/")
      local url = "ws://127.0.0.1:" .. port .. "/"
      local a = assert(green.http.websocket(url, { timeout = 20 }))
      assert.matches("joined$", a:receive())
      local b = assert(green.http.websocket(url, { timeout = 20 }))
      assert.matches("joined$", a:receive()) -- b joined
      assert.matches("joined$", b:receive())
      assert(a:send("hello all"))
      assert.matches(": hello all$", a:receive())
      assert.matches(": hello all$", b:receive())
      assert(b:send("/quit"))
      assert.are.same({ nil, "closed", 1000, "bye" }, { b:receive() })
      assert.matches("left$", a:receive())
      assert(a:send("/stop"))
      assert.are.equal("closed", select(2, a:receive()))
      local _, err, rc = done()
      assert.are.equal(0, rc, err)
    end)
  end)

  it("ws_prefork_chat.lua (seed 003): WebSocket members of two workers "
     .. "see each other's messages through Redis", function()
    if not os.execute("command -v redis-server >/dev/null") then
      pending("redis-server is not installed")
      return
    end
    local out, err, code = h.sh(h.greenlua
                                .. " examples/ws_prefork_chat.lua 0 demo")
    assert.are.equal(0, code, err)
    assert.matches("started redis%-server on 127%.0%.0%.1:%d+", out)
    assert.is_nil(out:find("demo failed", 1, true), out)
    local n = 0
    for i, w, got, all, lines in out:gmatch(
        "client (%d) %(worker (%d)%) got (%d)/(%d): ([^\n]*)") do
      n = n + 1
      assert.are.equal("4", got, out)
      assert.are.equal("4", all, out)
      assert.are.equal(tonumber(i) <= 2 and "1" or "2", w)
      -- every client has the lines sent to both workers, each tagged
      -- with the worker that published it
      for c = 1, 4 do
        assert.matches("%[worker " .. (c <= 2 and 1 or 2)
                       .. "%] hello from client " .. c, lines)
      end
    end
    assert.are.equal(4, n, out)
    assert.matches("redis-server stopped", out, 1, true)
  end)
end)
