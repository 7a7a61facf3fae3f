-- Options tables take only the names their function lists (docs/api.md,
-- "Options tables"): a misspelt name, or a key that is not a string,
-- raises `bad argument #N to 'f' (unknown option 'k')` at the caller's
-- line, and every documented name is still taken. One case a function;
-- the checks are lua/green/opts.lua's and bindings/lgreen.c's
-- lgreen_checkopts.
local green = require "green"
local h = require "helper"

local SRC = debug.getinfo(1, "S").short_src

local function copy(t, extra)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

-- f(opts) calls the function under test on the line it is defined on
-- (not a tail call: the caller's frame must stay). Raises with `want`.
local function raises_at(f, opts, want)
  local line = debug.getinfo(f, "S").linedefined
  local ok, err = pcall(f, opts)
  assert.is_false(ok, "no error for " .. want)
  assert.equal(("%s:%d: %s"):format(SRC, line, want), err)
end

-- f(opts) with every documented name: whatever it does, it does not
-- refuse a name. `done` (optional) gets f's results to release them.
local function accepts(f, opts, done)
  local r = table.pack(pcall(f, opts))
  if not r[1] then
    assert.is_nil(tostring(r[2]):find("unknown option", 1, true), r[2])
    assert.is_nil(tostring(r[2]):find("option name expected", 1, true),
                  r[2])
  elseif done then
    done(table.unpack(r, 2, r.n))
  end
end

local function closer(s) if s then s:close() end end

-- Runs one function's case: `name` and `arg` as the error names them,
-- `good` its documented options, `bad` a misspelt one.
local function case(f, name, arg, good, bad, done)
  raises_at(f, copy(good, { [bad] = 1 }),
            ("bad argument #%d to '%s' (unknown option '%s')")
            :format(arg, name, bad))
  raises_at(f, copy(good, { [true] = 1 }),
            ("bad argument #%d to '%s' (option name expected, got boolean)")
            :format(arg, name))
  accepts(f, good, done)
end

local function tmppath()
  local p = os.tmpname()
  os.remove(p)
  return p
end

local nop = function() end

-- Every TLS option (docs/api.md "TLS"), with values of the right types.
local function all_tls()
  return { mode = "client", server_name = "x", verify = false,
           cafile = "/nonexistent", capath = "/nonexistent", ca = "x",
           certificate = "/nonexistent", key = "/nonexistent",
           alpn = { "h2" }, min_protocol = "TLSv1.2",
           max_protocol = "TLSv1.3", ciphers = "HIGH",
           context = assert(green.tls.context { verify = false }),
           handshake_timeout = 1 }
end

describe("options tables", function()
  it("green.connect and green.listen (the TCP options and tls)", function()
    green_run(function()
      local l <close> = assert(green.listen("127.0.0.1", 0))
      local port = select(2, l:getsockname())
      case(function(o) local s = green.listen("127.0.0.1", 0, o); return s end,
           "listen", 3, { backlog = 8, reuseport = true, ipv6only = false,
                          family = "inet", timeout = 5, tls = false },
           "reuse_port", closer)
      case(function(o) local s = green.connect(
          "127.0.0.1", port, o); return s end,
           "connect", 3, { timeout = 5, family = "inet", tls = false },
           "timout", closer)
      -- with tls: the TLS path checks the same names, and the tls table's
      raises_at(function(o) local s = green.connect(
          "127.0.0.1", port, o); return s end,
                { tls = true, timout = 5 },
                "bad argument #3 to 'connect' (unknown option 'timout')")
      raises_at(function(o) local s = green.connect(
          "127.0.0.1", port, o); return s end,
                { tls = { verfy = false } },
                "bad argument #3 to 'green.connect' (unknown option "
                .. "'tls.verfy')")
      raises_at(function(o) local s = green.listen(
          "127.0.0.1", 0, o); return s end,
                { tls = { certificate = "x", key = "y" }, backlg = 8 },
                "bad argument #3 to 'listen' (unknown option 'backlg')")
      raises_at(function(o) local s = green.tls.listen(
          "127.0.0.1", 0, o); return s end,
                { tls = { certificat = "x" } },
                "bad argument #3 to 'green.listen' (unknown option "
                .. "'tls.certificat')")
      l:settimeout(0)
      while l:accept() do end
    end)
  end)

  it("green.connect_unix, green.listen_unix, green.udp", function()
    green_run(function()
      local path = tmppath()
      case(function(o) local s = green.listen_unix(path, o); return s end,
           "listen_unix", 2, { backlog = 8, mode = 6 * 64 }, "backlg", closer)
      case(function(o) local s = green.connect_unix(path, o); return s end,
           "connect_unix", 2, { timeout = 5 }, "timout", closer)
      case(function(o) local s = green.udp(o); return s end,
           "udp", 1, { family = "inet" }, "famly", closer)
      os.remove(path)
    end)
  end)

  it("green.getaddrinfo and green.resolver.setup", function()
    green_run(function()
      case(function(o) local a = green.getaddrinfo(
          "127.0.0.1", o); return a end,
           "getaddrinfo", 2, { family = "inet" }, "famly")
      -- (restored below: no options is the system's configuration)
      case(function(o) local r = green.resolver.setup(o); return r end,
           "setup", 1, { servers = { "127.0.0.1" }, timeout = 1, tries = 1 },
           "retries")
      assert.is_true(green.resolver.setup())
    end)
  end)

  it("green.tpool.setup", function()
    green_run(function()
      -- threads = 0 is refused for its value: the pool stays as it is
      case(function(o) local r = green.tpool.setup(o); return r end,
           "setup", 1, { threads = 0 }, "thread")
    end)
  end)

  it("green.serve and green.http.serve (prefork options too)", function()
    green_run(function()
      local server = assert(green.listen("127.0.0.1", 0))
      server:close() -- serve returns nil, "closed" at once
      -- workers = 0 is refused for its value (no master is started)
      local prefork = { workers = 0, graceful_timeout = 1, worker_timeout = 1,
                        on_worker_start = nop, on_worker_exit = nop }
      case(function(o) local r = green.serve(server, nop, o); return r end,
           "serve", 3, copy(prefork, { concurrency = 2, on_stop = nop }),
           "concurency")
      -- green.serve takes no options table but a number too
      accepts(function(o) local r = green.serve(server, nop, o); return r end,
              2)
      case(function(o) local r = green.http.serve(server, nop, o); return r end,
           "serve", 3, copy(prefork, {
             concurrency = 2, max_header_size = 100, max_headers = 10,
             max_body_size = 100, header_timeout = 1, keepalive_timeout = 1,
             body_timeout = 1, send_timeout = 1, log = nop }),
           "max_bodysize")
      -- without the prefork ones: it serves, and returns on the closed socket
      local r1, r2 = green.http.serve(server, nop, { concurrency = 2, log = nop,
                                                     graceful_timeout = 1 })
      assert.same({ nil, "closed" }, { r1, r2 })
    end)
  end)

  it("the HTTP client: request, Client, Client:request, websocket, "
     .. "upgrade_websocket", function()
    green_run(function()
      local upgrade = {}
      local port, stop = h.http_serve(function(req)
        if upgrade.line then return 200, {}, "ok" end -- the first request's
        local function bad(o) local ws = req:upgrade_websocket(
            nil, o); return ws end
        upgrade.line = debug.getinfo(bad, "S").linedefined
        upgrade.ok, upgrade.err = pcall(bad, { timout = 1 })
        local ws, err = req:upgrade_websocket(nil, { max_message_size = 100,
                                                     timeout = 1 })
        upgrade.ws, upgrade.ws_err = ws, err
        return 200, {}, "ok"
      end)
      local url = "http://127.0.0.1:" .. port .. "/"
      local good = { url = url, method = "GET", headers = { x = "y" },
                     timeout = 10, max_body_size = 100, redirects = 0,
                     stream = false, tls = all_tls() }
      local function body(resp)
        assert.equal("ok", resp.body)
        resp:close()
      end
      case(function(o) local r = green.http.request(o); return r end,
           "request", 1, good, "urll", body)
      accepts(function(o) local r = green.http.request(o); return r end,
              { url = url, body = "x" }, body)
      local client = green.http.Client()
      case(function(o) local r = client:request(o); return r end,
           "request", 2, good, "methd", body)
      client:close()
      case(function(o) local c = green.http.Client(o); return c end,
           "Client", 1, { max_per_host = 2, idle_timeout = 1,
                          tls = all_tls() }, "idle")
      -- a plain HTTP answer: the handshake is refused, the names taken
      case(function(o) local ws = green.http.websocket(url, o); return ws end,
           "websocket", 2, { protocols = "chat", headers = { x = "y" },
                             timeout = 10, max_message_size = 100,
                             tls = all_tls() }, "protocol")
      -- the names of their tls table are checked as they are called, not
      -- at the first https:// connection (in tls.lua's terms)
      local badtls = { tls = { verfy = false } }
      raises_at(function(o) local r = green.http.request(
          copy(o, { url = url })); return r end, badtls,
        "bad argument #1 to 'request' (unknown option 'tls.verfy')")
      raises_at(function(o) local r = client:request(
          copy(o, { url = url })); return r end, badtls,
        "bad argument #2 to 'request' (unknown option 'tls.verfy')")
      raises_at(function(o) local c = green.http.Client(o); return c end,
        badtls, "bad argument #1 to 'Client' (unknown option 'tls.verfy')")
      raises_at(function(o) local ws = green.http.websocket(url, o)
          return ws end, badtls,
        "bad argument #2 to 'websocket' (unknown option 'tls.verfy')")
      stop()
      -- the handler's upgrade_websocket: a plain GET is no upgrade
      assert.is_false(upgrade.ok)
      assert.equal(("%s:%d: bad argument #2 to 'upgrade_websocket' (unknown "
                    .. "option 'timout')"):format(SRC, upgrade.line),
                   upgrade.err)
      assert.is_nil(upgrade.ws)
      assert.equal("not a WebSocket upgrade request", upgrade.ws_err)
    end)
  end)

  it("green.tls.context and green.tls.wrap (every TLS option)", function()
    green_run(function()
      local all = all_tls()
      local ctx = all.context
      case(function(o) local c = green.tls.context(o); return c end,
           "green.tls.context", 1, all, "verfy")
      local l <close> = assert(green.listen("127.0.0.1", 0))
      local _, port = l:getsockname()
      local sock <close> = assert(green.connect("127.0.0.1", port))
      case(function(o) local t = green.tls.wrap(sock, o); return t end,
           "green.tls.wrap", 2, all, "verfy")
      case(function(o) local t = green.tls.wrap(sock, o); return t end,
           "green.tls.wrap", 2, { context = ctx, server_name = false,
                                  handshake_timeout = 1 }, "servername")
    end)
  end)

  it("green.process.spawn and green.process.run", function()
    green_run(function()
      local streams = { cwd = "/", env = { GREEN_OPTS_SPEC = "1" },
                        stdin = "null", stdout = "null", stderr = "null" }
      case(function(o) local p = green.process.spawn(o); return p end,
           "spawn", 1, copy(streams, { "true" }), "stdot",
           function(p) assert.equal(0, select(2, p:wait(10))) end)
      -- the array part is the program: an index past it is no option
      raises_at(function(o) local p = green.process.spawn(o); return p end,
                { "true", [3] = "x" },
                "bad argument #1 to 'spawn' (option name expected, got "
                .. "number)")
      case(function(o) local ok = green.process.run("cat", o); return ok end,
           "run", 2, { input = "x", timeout = 10, cwd = "/",
                       env = { GREEN_OPTS_SPEC = "1" }, stdin = "pipe",
                       stdout = "pipe", stderr = "pipe" }, "timout",
           function(ok) assert.is_true(ok) end)
    end)
  end)

  it("green.pools.Pool, green.backdoor, green.patch", function()
    green_run(function()
      case(function(o) local p = green.pools.Pool(o); return p end,
           "Pool", 1, { create = function() return {} end, min_size = 1,
                        max_size = 2, order_as_stack = true }, "maxsize")
      case(function(o) local s = green.backdoor(o); return s end,
           "backdoor", 1, { host = "127.0.0.1", port = 0,
                            allow_remote = false }, "hots", closer)
      local path = tmppath()
      accepts(function(o) local s = green.backdoor(o); return s end,
              { path = path }, closer)
      os.remove(path)
      -- (its names' use is patch_spec's: patching here would last)
      raises_at(function(o) local m = green.patch(o); return m end,
                { fs = false, process = false, ssl = false, sll = false },
                "bad argument #1 to 'patch' (unknown option 'sll')")
    end)
  end)
end)
