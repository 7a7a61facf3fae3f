-- green.patch(): Debian's unmodified LuaSocket socket.http running green
-- against a greenlua HTTP server in the same process (issue 4).
local green = require "green"

local NAMES = { "socket", "socket.core", "socket.http", "socket.ftp",
                "socket.smtp", "socket.tp" }

-- package.loaded as it was, restored after each test.
local saved
local function save()
  saved = {}
  for _, n in ipairs(NAMES) do saved[n] = package.loaded[n] end
end
local function restore()
  for _, n in ipairs(NAMES) do package.loaded[n] = saved[n] end
end
local function unload()
  for _, n in ipairs(NAMES) do package.loaded[n] = nil end
end

-- A small HTTP/1.1 server: one green thread per connection, the request
-- read up to its blank line, `delay` seconds of pretend work, then a
-- response with a body saying which path was asked for. `log` records
-- "start" and "finish" in the order they happened; `open` counts
-- requests in flight and `maxopen` the most at once.
local function http_server(delay)
  local st = { log = {}, open = 0, maxopen = 0, requests = 0 }
  local srv = assert(green.listen("127.0.0.1", 0))
  st.port = select(2, srv:getsockname())
  st.loop = green.spawn(green.serve, srv, function(c)
    local line = c:receive()
    if not line then return end
    local method, path = line:match("^(%u+) (%S+) HTTP/1%.%d$")
    local headers = {}
    repeat
      local h = assert(c:receive())
      local k, v = h:match("^([^:]+):%s*(.*)$")
      if k then headers[k:lower()] = v end
    until h == ""
    local body = ""
    if headers["content-length"] then
      body = assert(c:receive(tonumber(headers["content-length"])))
    end
    st.requests = st.requests + 1
    st.open = st.open + 1
    st.maxopen = math.max(st.maxopen, st.open)
    st.log[#st.log + 1] = "start"
    if delay then green.sleep(delay) end
    local reply = method .. " " .. path .. " " .. body
    st.open = st.open - 1
    st.log[#st.log + 1] = "finish"
    c:send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
           .. "Content-Length: " .. #reply .. "\r\nConnection: close\r\n"
           .. "X-Agent: " .. (headers["user-agent"] or "") .. "\r\n\r\n"
           .. reply)
  end)
  st.srv = srv
  function st.stop()
    srv:close()
    st.loop:wait()
  end
  return st
end

describe("green.patch()", function()
  before_each(save)
  after_each(restore)

  it("installs green.socket as socket and socket.core, idempotently",
     function()
    unload()
    local gsocket = require "green.socket"
    assert.are.equal(gsocket, green.patch())
    assert.are.equal(gsocket, green.patch())
    assert.are.equal(gsocket, require "socket")
    assert.are.equal(gsocket, require "socket.core")
    assert.are.equal(gsocket, package.loaded.socket)
  end)

  it("re-loads protocol modules that captured the real LuaSocket", function()
    unload()
    local realsocket = require "socket" -- Debian's
    local realhttp = require "socket.http"
    assert.are_not.equal(require "green.socket", realsocket)
    -- The late patch() warns on stderr: capture it (and keep it out of
    -- the test output) by standing in for io.stderr.
    local said, stderr = {}, io.stderr
    io.stderr = { -- luacheck: ignore 122
      write = function(_, ...) said[#said + 1] = table.concat({ ... }) end,
      flush = function() end,
    }
    local ok, err = pcall(green.patch)
    io.stderr = stderr -- luacheck: ignore 122
    assert(ok, err)
    assert.are.equal(1, #said)
    assert.matches("LuaSocket was already loaded", said[1], 1, true)
    local http = require "socket.http"
    assert.are_not.equal(realhttp, http)
    assert.are.equal(http, require("socket").http) -- bound to green.socket
  end)

  describe("called after LuaSocket was loaded", function()
    local h = require "helper"

    it("warns on stderr, naming the problem, the call site and the fix",
       function()
      local out, err, code = h.lua54_run([[
        local real = require "socket"  -- the blocking LuaSocket
        local green = require "green"
        local gs = green.patch()       -- line 3: too late for 'real'
        print(gs == require "socket", gs ~= real)
        green.patch()                  -- patched already: no second warning
      ]])
      assert.are.equal(0, code, err)
      assert.are.equal("true\ttrue\n", out)
      local _, n = err:gsub("green%.patch%(%) warning", "")
      assert.are.equal(1, n, err)
      assert.matches("LuaSocket was already loaded (socket and socket.core "
                     .. "in package.loaded)", err, 1, true)
      assert.matches("called at [^\n]+:3%.", err)
      assert.matches("block the whole hub", err, 1, true)
      assert.matches("Fix: call green.patch() before anything requires "
                     .. '"socket"', err, 1, true)
    end)

    it("names socket.core when only the C module was loaded", function()
      local _, err, code = h.lua54_run([[
        require "socket.core"
        require("green").patch()
      ]])
      assert.are.equal(0, code, err)
      assert.matches("already loaded (socket.core in package.loaded)", err,
                     1, true)
    end)

    it("stays quiet when patch() comes first", function()
      local out, err, code = h.lua54_run([[
        local green = require "green"
        green.patch()
        print(require "socket" == require "green.socket")
        green.patch()
      ]])
      assert.are.equal(0, code, err)
      assert.are.equal("true\n", out)
      assert.are.equal("", err)
    end)

    it("the fix it suggests works: greenlua -e patches before the script",
       function()
      local p = os.tmpname()
      local f = assert(io.open(p, "w"))
      f:write('print(require("socket") == require("green.socket"))')
      f:close()
      local out, err, code = h.sh(h.greenlua
        .. [[ -e 'require("green").patch()' ]] .. p)
      os.remove(p)
      assert.are.equal(0, code, err)
      assert.are.equal("true\n", out)
      assert.are.equal("", err)
    end)
  end)

  describe("Debian's socket.http", function()
    local http
    before_each(function()
      unload()
      green.patch()
      http = require "socket.http"
    end)

    it("fetches from a greenlua server", function()
      green_run(function()
        local st = http_server()
        local url = "http://127.0.0.1:" .. st.port
        local body, code, headers, status =
          http.request(url .. "/hello?x=1")
        assert.are.equal("GET /hello?x=1 ", body)
        assert.are.equal(200, code)
        assert.are.equal("HTTP/1.1 200 OK", status)
        assert.are.equal("LuaSocket 3.0.0", headers["x-agent"])
        -- POST with a body, through LTN12 sources and sinks
        local ltn12 = require "ltn12"
        local out = {}
        local ok, pcode = http.request {
          url = url .. "/post", method = "POST",
          source = ltn12.source.string("payload"),
          headers = { ["content-length"] = 7 },
          sink = ltn12.sink.table(out),
        }
        assert.are.same({ 1, 200 }, { ok, pcode })
        assert.are.equal("POST /post payload", table.concat(out))
        st.stop()
      end)
    end)

    it("runs 20 requests at once from 20 green threads", function()
      green_run(function()
        local st = http_server(0.1)
        local url = "http://127.0.0.1:" .. st.port .. "/item/"
        local threads = {}
        for i = 1, 20 do
          threads[i] = green.spawn(function()
            local body, code = http.request(url .. i)
            return body, code
          end)
        end
        for i = 1, 20 do
          local body, code = threads[i]:wait()
          assert.are.equal(200, code)
          assert.are.equal("GET /item/" .. i .. " ", body)
        end
        -- Every request was in flight before the first one finished.
        assert.are.equal(20, st.requests)
        assert.are.equal(20, st.maxopen)
        for i = 1, 20 do assert.are.equal("start", st.log[i]) end
        assert.are.equal("finish", st.log[21])
        st.stop()
      end)
    end)

    it("keeps other green threads running while it waits", function()
      green_run(function()
        local st = http_server(0.05)
        local ticks, done = 0, false
        local ticker = green.spawn(function()
          while not done do
            ticks = ticks + 1
            green.sleep(0.005)
          end
        end)
        assert.are.equal(200, select(2, http.request(
          "http://127.0.0.1:" .. st.port .. "/")))
        done = true
        ticker:wait()
        assert.is_true(ticks > 1)
        st.stop()
      end)
    end)

    it("returns LuaSocket's errors: refused, unknown host, timeout",
       function()
      green_run(function()
        local srv = assert(green.listen("127.0.0.1", 0))
        local port = select(2, srv:getsockname())
        srv:close()
        assert.are.same({ nil, "connection refused" },
                        { http.request("http://127.0.0.1:" .. port .. "/") })
        assert.are.same({ nil, "host or service not provided, or not known" },
                        { http.request("http://no-such-host.invalid/") })
        -- a server that accepts and never answers
        local mute = assert(green.listen("127.0.0.1", 0))
        local mport = select(2, mute:getsockname())
        local held
        local acceptor = green.spawn(function() held = mute:accept() end)
        local old = http.TIMEOUT
        http.TIMEOUT = 0.05
        local r = { http.request("http://127.0.0.1:" .. mport .. "/") }
        http.TIMEOUT = old
        assert.are.same({ nil, "timeout" }, r)
        acceptor:wait()
        held:close()
        mute:close()
      end)
    end)

    it("reports a peer that closes mid-response as 'closed'", function()
      green_run(function()
        local srv = assert(green.listen("127.0.0.1", 0))
        local port = select(2, srv:getsockname())
        local server = green.spawn(function()
          local c = assert(srv:accept())
          repeat local l = assert(c:receive()) until l == ""
          c:send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
          c:close()
        end)
        assert.are.same({ nil, "closed" },
                        { http.request("http://127.0.0.1:" .. port .. "/") })
        server:wait()
        srv:close()
      end)
    end)
  end)
end)
