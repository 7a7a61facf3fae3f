-- The socket examples (issue 4), each run as a subprocess and checked.
local green = require "green"
local h = require "helper"

local function example(name, args)
  local out, err, code = h.sh(h.greenlua .. " examples/" .. name .. " "
                              .. (args or ""))
  assert.are.equal(0, code, err)
  return out
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local eventually = h.eventually

-- One HTTP response from conn: status line, headers (lower-case names),
-- body by Content-Length.
local function response(conn)
  local status = assert(conn:receive())
  local headers = {}
  for line in function() return assert(conn:receive()) end do
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    headers[k:lower()] = v
  end
  local body = assert(conn:receive(tonumber(headers["content-length"])))
  return status, headers, body
end

describe("socket examples", function()
  it("hello_http.lua: keep-alive, bodies, HTTP/1.0, Connection: close",
     function()
    local out, err, pidfile = os.tmpname(), os.tmpname(), os.tmpname()
    -- In the background: port 0, exit after 4 requests. The subshell
    -- records the server's pid (to clean up if the test fails) and, at
    -- the end, its exit code.
    h.sh(string.format("(%s examples/hello_http.lua 0 4 & echo $! >%s; "
                       .. "wait $!; echo \"exit $?\") >%s 2>%s &",
                       h.greenlua, pidfile, out, err))
    local ok, failure = pcall(green_run, function()
      local port = tonumber(eventually(function()
        return slurp(out):match("^listening on 127%.0%.0%.1:(%d+)\n")
      end, "the 'listening on' line"))

      -- Two requests on one HTTP/1.1 connection: kept alive and reused.
      local c = assert(green.connect("127.0.0.1", port))
      c:settimeout(10)
      for i, path in ipairs { "/a", "/b" } do
        assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
        local status, headers, body = response(c)
        assert.are.equal("HTTP/1.1 200 OK", status)
        assert.are.equal("keep-alive", headers.connection)
        assert.matches("<h1>Hello, green world!</h1>", body, 1, true)
        assert.matches("GET " .. path .. ", request " .. i
                       .. " on this connection", body, 1, true)
      end
      c:close()

      -- HTTP/1.0 with a body and no keep-alive: answered, then closed.
      c = assert(green.connect("127.0.0.1", port))
      c:settimeout(10)
      assert(c:send("POST /form HTTP/1.0\r\nContent-Length: 7\r\n\r\n"
                    .. "a=1&b=2"))
      local status, headers, body = response(c)
      assert.are.equal("HTTP/1.1 200 OK", status)
      assert.are.equal("close", headers.connection)
      assert.matches("POST /form, request 1 on this connection, 7 bytes "
                     .. "of body", body, 1, true)
      assert.are.equal("closed", select(2, c:receive()))
      c:close()

      -- HTTP/1.1 with Connection: close, the 4th and last request.
      c = assert(green.connect("127.0.0.1", port))
      c:settimeout(10)
      assert(c:send("GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        .. "\r\n"))
      status, headers = response(c)
      assert.are.equal("HTTP/1.1 200 OK", status)
      assert.are.equal("close", headers.connection)
      assert.are.equal("closed", select(2, c:receive()))
      c:close()

      -- The server exits by itself after its 4 requests.
      eventually(function() return slurp(out):match("exit %d+\n$") end,
                 "the server's exit")
    end)
    local text, errtext, pid = slurp(out), slurp(err), slurp(pidfile)
    if not ok and tonumber(pid) then -- do not leave it running
      os.execute("kill " .. tonumber(pid) .. " 2>/dev/null")
    end
    os.remove(out); os.remove(err); os.remove(pidfile)
    assert(ok, failure)
    assert.matches("exit 0\n", text, 1, true)
    assert.are.equal("", errtext)
    local port_ = text:match("listening on 127%.0%.0%.1:(%d+)")
    assert.is_true(tonumber(port_) > 0)
    -- one line per request, the first two on the same peer port
    local peers = {}
    for peer, req in text:gmatch("127%.0%.0%.1:(%d+) (%u+ %S+) %(request") do
      peers[#peers + 1] = { peer, req }
    end
    assert.are.equal(4, #peers)
    assert.are.same({ "GET /a", "GET /b", "POST /form", "GET /last" },
                    { peers[1][2], peers[2][2], peers[3][2], peers[4][2] })
    assert.are.equal(peers[1][1], peers[2][1])
    assert.matches("served 4 requests", text, 1, true)
  end)

  it("shared_socket.lua: a clear error for the shared connection, right "
     .. "answers through a pool", function()
    local out = example("shared_socket.lua")
    local shared, pooled = out:match("^1%.(.-)\n2%.(.*)$")
    assert.is_string(shared, out)
    -- the first reader gets its answer; the second is refused at once,
    -- and the error names both threads
    assert.matches("get apple  -> apple=red", shared, 1, true)
    assert.matches("get banana %-> error: [^\n]*Second simultaneous read "
                   .. "on fileno %d+ detected", shared)
    assert.matches("Consider using a pools.Pool", shared, 1, true)
    assert.matches("MY THREAD=GreenThread %d+ 'get banana'", shared)
    assert.matches("THAT THREAD=GreenThread %d+ 'get apple'", shared)
    -- through the pool every request gets its own answer, in order
    local answers = {}
    for a in pooled:gmatch("\n   (%a+=%a+)") do answers[#answers + 1] = a end
    assert.are.same({ "apple=red", "banana=yellow", "apple=red",
                      "banana=yellow" }, answers)
    local n = tonumber(pooled:match("(%d+) connections for 4 requests"))
    assert.is_true(n >= 1 and n <= 2, out) -- max_size = 2
  end)

  it("memcache_pool.lua: one connection per green thread with Local, "
     .. "at most the pool size with a Pool", function()
    local out = example("memcache_pool.lua", "'' 30")
    local port = tonumber(out:match("started memcached on 127%.0%.0%.1:"
                                    .. "(%d+)"))
    assert.is_number(port, out)
    -- The example counts curr_connections at the moment all 30 requests
    -- are in flight, less the connections it had open beforehand (its own
    -- stats connection; memcached 1.6 does not count its listener there,
    -- and that baseline would absorb it if it did). So the Local count is
    -- exactly one connection per green thread.
    local locals = tonumber(out:match("green%.Local, 30 green threads: "
                                      .. "(%d+) connections"))
    assert.are.equal(30, locals, out)
    local pooled = tonumber(out:match("pools%.Pool{max_size = 4}: (%d+) "
                                      .. "connections"))
    assert.is_true(pooled >= 1 and pooled <= 4, out)
    assert.are.equal(2, select(2, out:gsub("30/30 answers right", "")))
    assert.matches("connections opened: 30 with green.Local, "
                   .. pooled .. " with the pool", out, 1, true)
    assert.matches("memcached stopped", out, 1, true)
    -- and it is gone: nothing listens on its port any more
    green_run(function()
      assert.are.same({ nil, "connection refused" },
                      { green.connect("127.0.0.1", port) })
    end)
  end)

  it("crawler.lua: pages fetched concurrently, results in input order",
     function()
    local out = example("crawler.lua", "12 4")
    local pages = {}
    for n, m in out:gmatch("/page/(%d+) %-> 200 page (%d+), %d+ ms\n") do
      assert.are.equal(n, m)
      pages[#pages + 1] = tonumber(n)
    end
    local finished = {}
    for n in out:match("finished them in this order: ([%d ]+)")
                :gmatch("%d+") do
      finished[#finished + 1] = tonumber(n)
    end
    local expected = {}
    for i = 1, 12 do expected[i] = i end
    assert.are.same(expected, pages) -- input order
    table.sort(finished) -- whatever order they completed in: all of them
    assert.are.same(expected, finished)
    assert.matches("12 pages, 4 at a time: [%d.]+ s in all, [%d.]+ s of "
                   .. "delays in sum", out)
  end)
end)
