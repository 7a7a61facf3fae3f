-- core.http_next (bindings/http.c): green.http.serve's step between two
-- requests on a plain socket, in one call: the next head if it is all
-- buffered; else the output flushed, then (unless srv.stopping, or the
-- output did not all go at once) the wait for the head with conn.idle
-- true meanwhile, as the server's Lua loop did around http_head.
local green = require "green"
local h = require "helper"
local core = green.core

local function parser(conn)
  return core.http_parser("request", 8192, 100, 1e6, {}, {}, conn, nil)
end

describe("core.http_next", function()
  it("returns a head that is all buffered at once, the output left",
     function()
    green_run(function()
      local c, s = h.pair()
      local conn, srv = { idle = false }, { stopping = false }
      local p = parser(conn)
      -- two heads in one write (on loopback, one read: both buffered)
      assert(c:send("GET /a?q=1 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n"
                    .. "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"))
      assert.are.equal("/a", core.http_head(s, p, true, 30, 30).path)
      core.http_output(p, "pending")
      local req, kind, keep, ctl = core.http_next(s, p, conn, 30, 30, srv)
      assert.are.equal("/b", req.path)
      assert.are.same({ 0, true, false }, { kind, keep, ctl })
      assert.is_false(conn.idle)
      -- the output was not flushed: it is still the parser's
      assert.are.equal("pending", core.http_output(p))
      c:close()
      s:close()
    end)
  end)

  it("flushes the output, then waits with conn.idle true, false again "
     .. "with the head", function()
    green_run(function()
      local c, s = h.pair()
      local conn, srv = { idle = false }, { stopping = false }
      local p = parser(conn)
      core.http_output(p, "hello")
      local t = green.spawn(function()
        return core.http_next(s, p, conn, 30, 30, srv)
      end)
      c:settimeout(30)
      assert.are.equal("hello", c:receive(5))
      h.until_suspended(t)
      assert.is_true(conn.idle)
      assert(c:send("GET /x?q=1 HTTP/1.1\r\nHost: a\r\n\r\n"))
      local req, kind, keep = t:wait()
      assert.are.same({ "GET", "/x", "q=1", 0, true },
                      { req.method, req.path, req.query, kind, keep })
      assert.is_false(conn.idle)
      c:close()
      s:close()
    end)
  end)

  it("says a wait's timeout with conn.idle false again", function()
    green_run(function()
      local c, s = h.pair()
      local conn, srv = { idle = false }, { stopping = false }
      local p = parser(conn)
      assert.are.same({ nil, "timeout", false },
                      { core.http_next(s, p, conn, 0.01, 30, srv) })
      assert.is_false(conn.idle)
      -- a head begun: the head's own timeout, and partial true
      assert(c:send("GET /x HT"))
      assert.are.same({ nil, "timeout", true },
                      { core.http_next(s, p, conn, 30, 0.01, srv) })
      assert.is_false(conn.idle)
      c:close()
      s:close()
    end)
  end)

  it("does not wait when srv.stopping: false, then http_flush's true",
     function()
    green_run(function()
      local c, s = h.pair()
      local conn, srv = { idle = false }, { stopping = true }
      local p = parser(conn)
      core.http_output(p, "bye")
      assert.are.same({ false, true },
                      { core.http_next(s, p, conn, 30, 30, srv) })
      assert.is_false(conn.idle)
      c:settimeout(30)
      assert.are.equal("bye", c:receive(3)) -- flushed all the same
      c:close()
      s:close()
    end)
  end)

  it("does not wait when the output cannot go: false, then http_flush's "
     .. "nil, err", function()
    green_run(function()
      local c, s = h.pair()
      local conn, srv = { idle = false }, { stopping = false }
      local p = parser(conn)
      assert(s:shutdown("send"))
      core.http_output(p, "lost")
      local r = { core.http_next(s, p, conn, 30, 30, srv) }
      assert.are.equal(false, r[1])
      assert.is_nil(r[2])
      assert.are.equal("string", type(r[3]))
      assert.is_false(conn.idle)
      assert.is_nil(core.http_output(p)) -- the output is empty after it
      c:close()
      s:close()
    end)
  end)

  it("says a closed socket is closed", function()
    green_run(function()
      local c, s = h.pair()
      local conn, srv = { idle = false }, { stopping = false }
      local p = parser(conn)
      s:close()
      assert.are.same({ nil, "closed" },
                      { core.http_next(s, p, conn, 30, 30, srv) })
      assert.is_false(conn.idle)
      c:close()
    end)
  end)

  it("raises on bad arguments", function()
    green_run(function()
      local c, s = h.pair()
      local conn, srv = { idle = false }, { stopping = false }
      local p = parser(conn)
      assert.has_error(function() core.http_next(s, p, nil, nil, nil, srv) end)
      assert.has_error(function() core.http_next(s, p, conn, nil, nil, 1) end)
      assert.has_error(function() core.http_next(s, p, conn) end)
      assert.has_error(function()
        core.http_next(s, conn, conn, nil, nil, srv)
      end)
      assert.has_error(function() core.http_next(p, p, conn, nil, nil, srv) end)
      -- a userdata of another kind for the parser: refused by its
      -- metatable, the same error as luaL_checkudata's
      assert.has_error(function() core.http_next(s, s, conn, nil, nil, srv) end,
                       "bad argument #2 to 'http_next' (green.http.parser "
                       .. "expected, got green.socket)")
      assert.has_error(function() core.http_state(s) end)
      assert.has_error(function() core.http_output(io.stdout, "x") end)
      assert.has_error(function()
        core.http_next(s, p, conn, 0 / 0, nil, srv)
      end)
      c:close()
      s:close()
    end)
  end)
end)
