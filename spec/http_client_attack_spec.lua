-- green.http's client against hostile servers: raw green sockets on
-- 127.0.0.1 that answer with malformed, lying, stalled, reset or endless
-- responses. Each case checks the client's answer (a clear error, never a
-- wrong response) and what became of the connection: one whose stream is
-- in doubt never goes back to the pool, and no slot of max_per_host is
-- lost whatever happens to the threads that use the client.
local green = require "green"
local h = require "helper"

-- A hostile server: `script(c, n, srv)` runs in a thread of its own for
-- each connection it accepts (n: 1 for the first, ...), and the socket is
-- closed when it returns. Returns the base URL and an object: `n` (the
-- connections accepted so far), `stop()` (closes the listener, kills the
-- scripts still running, waits for them).
local function hostile(script, host)
  host = host or "127.0.0.1"
  local port, st = h.raw_server(script, host)
  return "http://" .. host .. ":" .. port, st
end

-- Read one request from `c`: the request line, its headers (lowercased
-- names) and its body (by Content-Length, or chunked); nil at the end of
-- the stream.
local function read_request(c)
  local line = c:receive("*l")
  if not line then return nil end
  local hs = {}
  while true do
    local l = assert(c:receive("*l"))
    if l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.-)%s*$")
    hs[k:lower()] = v
  end
  local body = ""
  if hs["content-length"] then
    body = assert(c:receive(tonumber(hs["content-length"])))
  elseif hs["transfer-encoding"] == "chunked" then
    local t = {}
    while true do
      local n = tonumber(assert(c:receive("*l")), 16)
      if n == 0 then assert(c:receive("*l")) break end
      t[#t + 1] = assert(c:receive(n))
      assert(c:receive("*l"))
    end
    body = table.concat(t)
  end
  return { line = line, headers = hs, body = body,
           method = line:match("^(%S+)"), path = line:match("^%S+ (%S+)") }
end

local function ok_response(body, extra)
  return "HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\n"
    .. (extra or "") .. "\r\n" .. body
end

-- A script answering every request on its connection with
-- `answer(req, c, n)` (a string sent as is; nil: close).
local function answering(answer)
  return function(c, n, st)
    while true do
      local req = read_request(c)
      if not req then return end
      local a = answer(req, c, n, st)
      if not a then return end
      c:send(a)
    end
  end
end

-- A script answering each request with answers[path], or a 200 whose
-- body is "real " .. path.
local function by_path(answers)
  return answering(function(req)
    return answers[req.path] or ok_response("real " .. req.path)
  end)
end

-- Read a streamed response to its end: the body read, and the error
-- that ended it (nil at a clean end). Bounded: fails past `limit` bytes.
local function drain(resp, limit)
  local t, n = {}, 0
  local next_piece = resp:body_reader()
  while true do
    local piece, err = next_piece(resp)
    if not piece then return table.concat(t), err end
    n = n + #piece
    assert(n <= (limit or 1e7), "read past the limit")
    t[#t + 1] = piece
  end
end

-- Idle connections in a client's pools.
local function idle(client)
  local n = 0
  for _, p in pairs(client.pools) do n = n + #p.idle end
  return n
end

-- The one pool of a client (one host:port used).
-- A server answering "done <path>", and a client with a pool of one
-- connection to it: the base URL, the client, stop.
local function pool_of_one()
  local port, stop = h.http_serve(function(req)
    return 200, {}, "done " .. req.path
  end)
  return "http://127.0.0.1:" .. port, green.http.Client { max_per_host = 1 },
         stop
end

local function the_pool(client)
  local k = next(client.pools)
  assert(k and next(client.pools, k) == nil, "one pool expected")
  return client.pools[k]
end

-- A streamed response `r` holding the one slot of `client`'s pool, and
-- a thread `w` whose request (timeout 20 s) will wait for it.
local function held_and_waiting(client, base)
  local r = assert(client:request { url = base .. "/s", stream = true })
  local w = green.spawn(function()
    return assert(client:request { url = base .. "/w", timeout = 20 })
  end)
  return r, w
end

-- Kill pool `p`'s watcher while a take waits: another takes its place
-- (the take would wait until its timeout). Then lose streamed response
-- `r`'s lease as Lua loses one whose __gc it skipped (its weak key gone,
-- its count and slot left).
local function kill_watcher_lose_lease(p, r)
  local killed = p.watcher
  killed:kill()
  assert.is_truthy(p.watcher)
  assert.are_not.equal(killed, p.watcher)
  assert.is_false(p.watcher:dead())
  local l = r._lease
  r._lease = nil
  p.streams[l] = nil
  l.conn.sock:close()
  l.conn = nil
end

describe("green.http client against hostile servers", function()
  it("refuses malformed status lines and headers, pools none of them",
     function()
    green_run(function()
      local bad = {
        "HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/9.9.9 200 OK\r\nContent-Length: 0\r\n\r\n",
        "hello world\r\n\r\n",
        "\0\1\2\3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nX-A\0B: 1\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        -- what libhttp-parser, built without its strict mode, took: a
        -- version that is not "HTTP/1.<digit>", a status line out of
        -- form, an empty line before it
        "HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HXXX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200\tOK\r\nContent-Length: 0\r\n\r\n",
        "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        -- a bare CR (the byte after it was taken for the LF), at the end
        -- of the status line, of a header line, of the head
        "HTTP/1.1 200 OK\rXContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\rXContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\rX",
        "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
        -- NUL and other controls in the reason and in values
        "HTTP/1.1 200 O\0K\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 O\27K\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: \0\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A:\1\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: a\127b\r\nContent-Length: 0\r\n\r\n",
        -- a fold with no header line above it
        "HTTP/1.1 200 OK\r\n X-A: 1\r\nContent-Length: 0\r\n\r\n",
      }
      local base, st = hostile(answering(function(req)
        return bad[tonumber(req.path:sub(2))]
      end))
      local client = green.http.Client()
      local wrong = {}
      for i = 1, #bad do
        local r, err = client:get(base .. "/" .. i)
        if r or not tostring(err):match("^bad response") then
          wrong[#wrong + 1] = ("%q: %s %s"):format(bad[i],
            tostring(r and r.status), tostring(err))
        end
        assert.are.equal(0, idle(client), bad[i])
      end
      assert.are.same({}, wrong)
      -- the end of the stream before any byte, and in the middle of a head
      local r, err = client:get(base .. "/" .. (#bad + 1))
      assert.is_nil(r)
      assert.are.equal("closed", err)
      assert.are.equal(#bad + 1, st.n)
      st.stop()
      base, st = hostile(function(c)
        read_request(c)
        c:send("HTTP/1.1 200 OK\r\nContent-Le")
      end)
      assert.are.same({ nil, "closed" }, { client:get(base .. "/") })
      assert.are.equal(0, idle(client))
      st.stop()
    end)
  end)

  it("reports a body cut short of its Content-Length", function()
    green_run(function()
      local base, st = hostile(function(c)
        read_request(c)
        c:send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
      end)
      local client = green.http.Client()
      assert.are.same({ nil, "closed" }, { client:get(base .. "/") })
      assert.are.equal(0, idle(client))
      -- streamed: the pieces that came, then the error
      local r = assert(client:request { url = base .. "/", stream = true })
      assert.are.same({ "12345", "closed" }, { drain(r) })
      assert.are.same({}, { r:body_reader()(r) }) -- done: nil
      assert.are.equal(0, idle(client))
      st.stop()
    end)
  end)

  it("never attributes bytes beyond a response to the next request",
     function()
    green_run(function()
      local spurious = ok_response("FAKE!")
      local send_late = green.Event()
      local base, st = hostile(answering(function(req, c)
        if req.path == "/short" then -- a Content-Length that lies short
          return ok_response("abc"):gsub("abc$", "abcdef") .. spurious
        elseif req.path == "/late" then -- more bytes once it is idle
          c:send(ok_response("late"))
          send_late:wait()
          return spurious
        end
        return ok_response("real " .. req.path)
      end))
      local client = green.http.Client()
      local r = assert(client:get(base .. "/short"))
      assert.are.equal("abc", r.body)
      assert.are.equal(0, idle(client)) -- bytes beyond it: not pooled
      r = assert(client:get(base .. "/next"))
      assert.are.equal("real /next", r.body)
      assert.are.equal(2, st.n)
      -- the same over a reused connection that receives bytes while idle
      r = assert(client:get(base .. "/late"))
      assert.are.equal("late", r.body)
      assert.are.equal(1, idle(client))
      send_late:send()
      local conn = the_pool(client).idle[1]
      h.eventually(function() return conn.sock:dirty() end)
      r = assert(client:get(base .. "/after"))
      assert.are.equal("real /after", r.body)
      assert.are.equal(3, st.n)
      client:close()
      st.stop()
    end)
  end)

  it("refuses two Content-Lengths, and Content-Length with a coding"
     .. " other than chunked",
     function()
    green_run(function()
      local bad = {
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\n"
          .. "abcde",
        "HTTP/1.1 200 OK\r\nContent-Length: 3, 5\r\n\r\nabcde",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n"
          .. "\r\nabc",
        -- a coding other than chunked with a length: libhttp-parser
        -- refuses it (RFC 9112 6.3: to be handled as an error)
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: "
          .. "gzip\r\n\r\nabc",
      }
      local base, st = hostile(answering(function(req)
        return bad[tonumber(req.path:sub(2))]
      end))
      local client = green.http.Client()
      for i = 1, #bad do
        local r, err = client:get(base .. "/" .. i)
        assert.is_nil(r, bad[i])
        assert.matches("^bad response", err, nil, false, bad[i])
        assert.are.equal(0, idle(client))
      end
      st.stop()
    end)
  end)

  it("reads a chunked body whose head has a Content-Length too by its"
     .. " chunks, and reuses not its connection", function()
    green_run(function()
      local base, st = hostile(by_path {
        -- (the length would take "3\r\nabc" for the body, and the rest
        -- for the next response)
        ["/both"] = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n"
          .. "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ["/both-after"] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, "
          .. "chunked\r\nContent-Length: 3\r\n\r\n3\r\nxyz\r\n0\r\n\r\n",
      })
      local client = green.http.Client()
      for i, p in ipairs { "/both", "/both-after" } do
        local r = assert(client:get(base .. p))
        assert.are.equal(i == 1 and "abc" or "xyz", r.body)
        assert.are.equal(0, idle(client), p)
        assert.are.equal("real /x", assert(client:get(base .. "/x")).body)
        assert.are.equal(2 * i, st.n, p)
        client:close()
      end
      st.stop()
    end)
  end)

  it("reads a body to the end of the stream when the last coding is not"
     .. " chunked; reuses not its connection", function()
    green_run(function()
      local heads = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
          .. "Transfer-Encoding: identity\r\n\r\n",
      }
      local base, st = hostile(function(c, n)
        read_request(c)
        -- a chunk's framing, a response's head: the body, as sent
        c:send(heads[n] .. "3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n")
      end)
      local client = green.http.Client()
      for i = 1, #heads do
        local r = assert(client:get(base .. "/" .. i))
        assert.are.equal("3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n", r.body)
        assert.are.equal(0, idle(client), heads[i])
      end
      st.stop()
    end)
  end)

  it("takes a status line without a reason and bare LF line ends, and"
     .. " unfolds a folded header value to spaces", function()
    green_run(function()
      local answers = {
        ["/noreason"] = "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
        ["/noreason-sp"] = "HTTP/1.1 204 \r\n\r\n",
        ["/lf"] = "HTTP/1.1 200 OK\nContent-Length: 2\nX-A: 1\n\nok",
        -- obs-fold (RFC 9112 5.2): the value's lines joined by spaces;
        -- before, the value ran into the CRLF and lost its end
        ["/fold"] = "HTTP/1.1 200 OK\r\nX-A: a,\r\n  b\r\nX-B: c\r\n"
          .. "\t d \r\n\te\r\nContent-Length: 2\r\n\r\nok",
      }
      local base, st = hostile(by_path(answers))
      local client = green.http.Client()
      local r = assert(client:get(base .. "/noreason"))
      assert.are.same({ 200, "", "ok" }, { r.status, r.reason, r.body })
      r = assert(client:get(base .. "/noreason-sp"))
      assert.are.same({ 204, "", "" }, { r.status, r.reason, r.body })
      r = assert(client:get(base .. "/lf"))
      assert.are.same({ 200, "OK", "ok", "1" },
                      { r.status, r.reason, r.body, r.headers["x-a"] })
      r = assert(client:get(base .. "/fold"))
      assert.are.equal("ok", r.body)
      assert.matches("^a, +b$", r.headers["x-a"])
      assert.matches("^c +d +e$", r.headers["x-b"])
      assert.are.equal(1, st.n) -- each kept, the stream in step
      client:close()
      st.stop()
    end)
  end)

  it("refuses bad chunk framing; keeps trailers out of the body", function()
    green_run(function()
      local head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      local bad = {
        head .. "zz\r\nabc\r\n0\r\n\r\n",
        head .. "fffffffffffffffff\r\nabc\r\n0\r\n\r\n", -- beyond 64 bits
        head .. "10000000000000000\r\nabc\r\n0\r\n\r\n",
        head .. "-3\r\nabc\r\n0\r\n\r\n",
        head .. "3\r\nabcX\r\n0\r\n\r\n", -- no CRLF after the data
        head .. "3\nabc\r\n0\r\n\r\n",
        head .. "3\r\nabc\r\n0\r\nbad trailer\r\n\r\n",
      }
      local base, st = hostile(answering(function(req)
        local i = tonumber(req.path:sub(2))
        if i then return bad[i] end
        return head .. "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n"
          .. "X-Other: u\r\n\r\n"
      end))
      local client = green.http.Client()
      for i = 1, #bad do
        local r, err = client:get(base .. "/" .. i)
        assert.is_nil(r, bad[i])
        assert.matches("^bad response", err, nil, false, bad[i])
        assert.are.equal(0, idle(client))
      end
      for _ = 1, 3 do -- trailers: the body is right, the connection kept
        local r = assert(client:get(base .. "/trailers"))
        assert.are.equal("abcde", r.body)
        assert.are.equal(1, idle(client))
      end
      assert.are.equal(#bad + 1, st.n)
      client:close()
      st.stop()
    end)
  end)

  it("stops an endless body at max_body_size, streamed or not", function()
    green_run(function()
      local base, st = hostile(function(c)
        local req = read_request(c)
        if req.path == "/chunked" then
          c:send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
          for _ = 1, 100000 do
            if not c:send("400\r\n" .. ("c"):rep(1024) .. "\r\n") then
              return
            end
          end
        elseif req.path == "/extensions" then -- framing, never a byte
          c:send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;")
          local junk = ("x"):rep(65536)
          for _ = 1, 2000 do
            if not c:send(junk) then return end
          end
        elseif req.path == "/length" then
          c:send("HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
          for _ = 1, 100000 do
            if not c:send(("l"):rep(1024)) then return end
          end
        else -- until the end of the stream
          c:send("HTTP/1.0 200 OK\r\n\r\n")
          for _ = 1, 100000 do
            if not c:send(("e"):rep(1024)) then return end
          end
        end
      end)
      local client = green.http.Client()
      for _, path in ipairs { "/chunked", "/length", "/eof",
                              "/extensions" } do
        -- endless chunk extensions: libhttp-parser's bound on a head's
        -- size (80 KB) bounds a chunk's size line too
        local want = path == "/extensions" and "bad response (431)"
                     or "too large"
        assert.are.same({ nil, want }, { client:request {
          url = base .. path, max_body_size = 100000, timeout = 20 } },
          path)
        local r = assert(client:request { url = base .. path, stream = true,
                                          max_body_size = 50000,
                                          timeout = 20 })
        local got, err = drain(r, 1e6)
        assert.are.equal(want, err, path)
        assert(#got <= 50000, path)
        assert.are.equal(0, idle(client))
      end
      st.stop()
    end)
  end)

  it("refuses heads beyond its limits: header count and size", function()
    green_run(function()
      local base, st = hostile(answering(function(req, c)
        local t = { "HTTP/1.1 200 OK\r\n" }
        if req.path == "/count" then
          for i = 1, 300 do t[#t + 1] = "X-H" .. i .. ": v\r\n" end
        elseif req.path == "/size" then
          t[#t + 1] = "X-Big: " .. ("b"):rep(100 * 1024) .. "\r\n"
        else -- endless header lines
          c:send(t[1])
          for i = 1, 100000 do
            if not c:send("X-E" .. i .. ": " .. ("e"):rep(100) .. "\r\n") then
              return
            end
          end
        end
        t[#t + 1] = "Content-Length: 2\r\n\r\nok"
        return table.concat(t)
      end))
      local client = green.http.Client()
      for _, path in ipairs { "/count", "/size", "/endless" } do
        local r, err = client:request { url = base .. path, timeout = 20 }
        assert.is_nil(r, path)
        assert.are.equal("bad response (431)", err, path)
        assert.are.equal(0, idle(client))
      end
      st.stop()
    end)
  end)

  it("skips 1xx interim responses, and bounds how many", function()
    green_run(function()
      local base, st = hostile(answering(function(req, c)
        if req.path == "/interim" then
          -- (a 1xx has no body, whatever its head says)
          return "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n"
            .. "HTTP/1.1 103 Early Hints"
            .. "\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 102 "
            .. "Processing\r\n\r\n" .. ok_response("final")
        elseif req.path == "/endless" then
          for _ = 1, 100000 do
            if not c:send("HTTP/1.1 100 Continue\r\n\r\n") then return end
          end
          return
        end
        return ok_response("next")
      end))
      local client = green.http.Client()
      for _ = 1, 2 do
        local r = assert(client:post(base .. "/interim", "body"))
        assert.are.equal(200, r.status)
        assert.are.equal("final", r.body)
        assert.are.equal(1, idle(client)) -- kept: the stream is in step
      end
      assert.are.equal("next", assert(client:get(base .. "/n")).body)
      assert.are.equal(1, st.n)
      local r, err = client:request { url = base .. "/endless",
                                      timeout = 20 }
      assert.is_nil(r)
      assert.matches("^bad response", err)
      assert.are.equal(0, idle(client))
      st.stop()
    end)
  end)

  it("reads no body after HEAD, 204 and 304, and reuses nothing that"
     .. " sent one", function()
    green_run(function()
      local base, st = hostile(answering(function(req)
        local p = req.path
        if p == "/head" then -- a length, no body: right
          return "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        elseif p == "/head-chunked" then
          return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        elseif p == "/head-body" then -- a body after all: wrong
          return ok_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                             .. "\r\nFAKE!")
        elseif p == "/204" or p == "/304" then
          return "HTTP/1.1 " .. p:sub(2) .. " X\r\nContent-Length: 40\r\n\r\n"
            .. ok_response("FAKE!")
        elseif p == "/204-chunked" then
          return "HTTP/1.1 204 X\r\nTransfer-Encoding: chunked\r\n\r\n"
            .. "5\r\nFAKE!\r\n0\r\n\r\n"
        end
        return ok_response("real " .. p)
      end))
      local client = green.http.Client()
      for _, p in ipairs { "/head", "/head-chunked" } do
        local r = assert(client:request { method = "HEAD", url = base .. p })
        assert.are.equal("", r.body)
        assert.are.equal(1, idle(client), p)
        assert.are.equal("real /x", assert(client:get(base .. "/x")).body)
      end
      assert.are.equal(1, st.n)
      client:close()
      for _, p in ipairs { "/head-body", "/204", "/304", "/204-chunked" } do
        local n = st.n
        local r = assert(client:request {
          method = p:match("^/head") and "HEAD" or "GET", url = base .. p })
        assert.are.equal("", r.body, p)
        assert.are.equal(0, idle(client), p)
        -- the next request: a new connection, its own response
        assert.are.equal("real /y", assert(client:get(base .. "/y")).body, p)
        assert.are.equal(n + 2, st.n, p)
        client:close()
      end
      st.stop()
    end)
  end)

  it("refuses a 101 it did not ask for and a 2xx to CONNECT, returns a 101"
     .. " it asked for; keeps no connection that switched protocols",
     function()
    green_run(function()
      local switched = {}
      local base, st = hostile(answering(function(req, _, n)
        if switched[n] then return "\0\1other protocol" end
        if req.path == "/switch" then
          switched[n] = true
          -- (the other protocol's first bytes in the same write)
          return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: other\r\n"
            .. "Connection: Upgrade\r\n\r\n\0\1other"
        elseif req.method == "CONNECT" then
          switched[n] = true
          -- a tunnel from here: no HTTP (nor a body) follows
          return "HTTP/1.1 " .. req.path:sub(2) .. " Connection established"
            .. "\r\nContent-Length: 2\r\n\r\nok tunnelled bytes"
        end
        return ok_response("real " .. req.path)
      end))
      local client = green.http.Client()
      -- unasked: the server's error, not a response
      local r, err = client:get(base .. "/switch")
      assert.is_nil(r)
      assert.are.equal("bad response", err)
      assert.are.equal(0, idle(client))
      assert.are.equal("real /x", assert(client:get(base .. "/x")).body)
      assert.are.equal(2, st.n)
      -- asked for: the answer, and the connection is not kept
      for _, upgrade in ipairs { "Upgrade", "upgrade" } do
        r = assert(client:request {
          url = base .. "/switch",
          headers = { [upgrade] = "other", Connection = "Upgrade" } })
        assert.are.same({ 101, "" }, { r.status, r.body })
        assert.are.equal(0, idle(client))
      end
      assert.are.equal(3, st.n) -- (the first on /x's kept connection)
      -- a 2xx to CONNECT: a tunnel the client has no use for
      for _, status in ipairs { 200, 204, 299 } do
        r, err = client:request { method = "CONNECT",
                                  url = base .. "/" .. status }
        assert.is_nil(r)
        assert.are.equal("bad response", err)
        assert.are.equal(0, idle(client))
      end
      assert.are.equal("real /y", assert(client:get(base .. "/y")).body)
      assert.are.equal(7, st.n)
      client:close()
      st.stop()
    end)
  end)

  it("reads a CONNECT refused (non-2xx) as any response, and ignores an"
     .. " Upgrade header outside a 101", function()
    green_run(function()
      local base, st = hostile(by_path {
        ["/h"] = "HTTP/1.1 407 Proxy Authentication Required\r\n" -- CONNECT
          .. "Content-Length: 6\r\n\r\ndenied",
        ["/upgrade"] = "HTTP/1.1 200 OK\r\nUpgrade: other\r\nConnection: "
          .. "Upgrade\r\nContent-Length: 2\r\n\r\nok",
        ["/upgrade-426"] = "HTTP/1.1 426 Upgrade Required\r\nUpgrade: "
          .. "other\r\nConnection: Upgrade\r\nContent-Length: 4\r\n\r\nup!!",
      })
      local client = green.http.Client()
      local r = assert(client:request { method = "CONNECT",
                                        url = base .. "/h" })
      assert.are.same({ 407, "denied" }, { r.status, r.body })
      assert.are.equal(1, idle(client))
      for _, headers in ipairs { {}, { Upgrade = "other",
                                       Connection = "Upgrade" } } do
        r = assert(client:get(base .. "/upgrade", headers))
        assert.are.same({ 200, "ok" }, { r.status, r.body })
        r = assert(client:get(base .. "/upgrade-426", headers))
        assert.are.same({ 426, "up!!" }, { r.status, r.body })
        assert.are.equal(1, idle(client))
      end
      assert.are.equal("real /x", assert(client:get(base .. "/x")).body)
      assert.are.equal(1, st.n) -- one connection, in step throughout
      client:close()
      st.stop()
    end)
  end)

  it("times out a server that stalls mid-head or mid-body; reuses"
     .. " neither", function()
    green_run(function()
      local stalled = green.Event()
      local base, st = hostile(function(c)
        local req = read_request(c)
        if req.path == "/head" then
          c:send("HTTP/1.1 200 OK\r\nContent-Len")
        elseif req.path == "/body" then
          c:send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        elseif req.path == "/chunk" then
          c:send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 .. "a\r\n12345")
        else
          c:send("HTTP/1.1 200 OK\r\n")
        end
        stalled:wait()
      end)
      local client = green.http.Client()
      for _, p in ipairs { "/head", "/body", "/chunk", "/nothing" } do
        assert.are.same({ nil, "timeout" },
          { client:request { url = base .. p, timeout = 0.1 } }, p)
        assert.are.equal(0, idle(client), p)
        if p == "/body" or p == "/chunk" then
          local r = assert(client:request { url = base .. p, timeout = 0.1,
                                            stream = true }, p)
          assert.are.same({ "12345", "timeout" }, { drain(r) }, p)
        end
      end
      assert.are.equal(0, idle(client))
      stalled:send()
      st.stop()
    end)
  end)

  it("reports a reset in the middle of a body", function()
    green_run(function()
      local base, st = hostile(function(c)
        read_request(c)
        c:send("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
               .. ("r"):rep(1000))
        c:setoption("linger", { on = true, timeout = 0 })
        c:close() -- a reset
      end)
      local client = green.http.Client()
      local r, err = client:get(base .. "/")
      assert.is_nil(r)
      assert.matches("^[cr]", err) -- "closed" or "connection reset by peer"
      assert.are.equal(0, idle(client))
      r = assert(client:request { url = base .. "/", stream = true })
      local got
      got, err = drain(r)
      assert.is_true(#got <= 1000)
      assert.matches("^[cr]", err)
      assert.are.equal(0, idle(client))
      st.stop()
    end)
  end)

  it("retries only an idempotent request that a pooled connection lost"
     .. " unanswered", function()
    green_run(function()
      local seen = {}
      -- each connection answers its first request, then takes the next
      -- and closes (or resets) without a word
      local mode = "close"
      local base, st = hostile(function(c, n)
        local first = true
        while true do
          local req = read_request(c)
          if not req then return end
          seen[#seen + 1] = n .. " " .. req.method .. " " .. req.path
            .. " " .. req.body
          if not first then
            if mode == "reset" then
              c:setoption("linger", { on = true, timeout = 0 })
            elseif mode == "partial" then
              c:send("HTTP/1.1 200 OK\r\nContent-Le")
            end
            return
          end
          first = false
          c:send(ok_response(n .. " " .. req.method .. " " .. req.path))
        end
      end)
      local function once(client, method, want, wanterr)
        local a = assert(client:request { method = "GET", url = base .. "/a" })
        assert.matches("GET /a$", a.body)
        assert.are.equal(1, idle(client))
        local body = (method == "POST" or method == "PUT") and "data" or nil
        local r, err = client:request { method = method, url = base .. "/b",
                                        body = body }
        if want then
          assert.are.equal(want, r and r.body, method .. " " .. mode
                           .. " " .. tostring(err))
        else
          assert.is_nil(r, method .. " " .. mode)
          assert.matches(wanterr, err)
        end
        client:close()
      end
      local client = green.http.Client()
      for _, m in ipairs { "close", "reset" } do
        mode = m
        -- idempotent: sent again on a new connection
        once(client, "GET", (st.n + 2) .. " GET /b")
        once(client, "PUT", (st.n + 2) .. " PUT /b")
        once(client, "DELETE", (st.n + 2) .. " DELETE /b")
        -- not idempotent: an error, sent once
        local before = #seen
        once(client, "POST", nil, "^[cr]")
        assert.are.equal(2, #seen - before) -- /a, then /b once
      end
      -- part of an answer came: an error, never a retry
      mode = "partial"
      local before = #seen
      once(client, "GET", nil, "^closed$")
      assert.are.equal(2, #seen - before)
      st.stop()
    end)
  end)

  it("bounds redirect loops; resolves Locations; refuses bad ones",
     function()
    green_run(function()
      local other_base, other = hostile(answering(function(req)
        return ok_response(("other %s %s auth=%s cookie=%s host=%s"):format(
          req.method, req.path, tostring(req.headers.authorization),
          tostring(req.headers.cookie), req.headers.host))
      end), "127.0.0.2")
      local loops = 0
      local base, st
      base, st = hostile(answering(function(req)
        local p = req.path
        local function go(loc, status)
          return "HTTP/1.1 " .. (status or 302) .. " Moved\r\nLocation: "
            .. loc .. "\r\nContent-Length: 0\r\n\r\n"
        end
        if p == "/loop" then
          loops = loops + 1
          return go("/loop")
        elseif p == "/ftp" then return go("ftp://127.0.0.1/x")
        elseif p == "/bad" then return go("http://[::1")
        elseif p == "/space" then return go("http://exa mple/")
        elseif p == "/nohost" then return go("http:///x")
        elseif p == "/dir/rel?q=/a/b" then return go("sib?x=1")
        elseif p:match("dotdot$") then return go("../up")
        elseif p == "/proto-rel" then
          return go("//" .. other_base:match("//(.*)$") .. "/pr")
        elseif p == "/other" then return go(other_base .. "/o")
        elseif p == "/other-307" then return go(other_base .. "/o7", 307)
        elseif p == "/same-307" then return go("/echo", 307)
        elseif p == "/empty" then return go("")
        end
        return ok_response(("same %s %s %s auth=%s"):format(req.method, p,
          req.body, tostring(req.headers.authorization)))
      end))
      local client = green.http.Client()
      -- a loop: followed `redirects` times, then the redirect itself
      local r = assert(client:get(base .. "/loop"))
      assert.are.equal(302, r.status)
      assert.are.equal(6, loops)
      loops = 0
      r = assert(client:request { url = base .. "/loop", redirects = 0 })
      assert.are.equal(302, r.status)
      assert.are.equal(1, loops)
      assert.are.same({ nil, "unsupported URL scheme: ftp" },
        { client:get(base .. "/ftp") })
      for _, p in ipairs { "/bad", "/space", "/nohost" } do
        local rr, err = client:get(base .. p)
        assert.is_nil(rr, p)
        assert.matches("^invalid URL", err, nil, false, p)
      end
      -- relative references: against the path, not the query
      r = assert(client:get(base .. "/dir/rel?q=/a/b"))
      assert.are.equal("same GET /dir/sib?x=1  auth=nil", r.body)
      r = assert(client:get(base .. "/dotdot"))
      assert.are.equal("same GET /up  auth=nil", r.body)
      r = assert(client:get(base .. "/a/b/dotdot"))
      assert.are.equal("same GET /a/up  auth=nil", r.body)
      r = assert(client:get(base .. "/empty"))
      assert.are.equal(302, r.status) -- itself, up to the limit
      -- a scheme-relative Location goes to its host
      r = assert(client:get(base .. "/proto-rel"))
      assert.matches("^other GET /pr ", r.body)
      -- credentials stay with their host
      local secret = { Authorization = "Bearer s3cret", Cookie = "id=1" }
      r = assert(client:get(base .. "/other", secret))
      assert.matches("^other GET /o auth=nil cookie=nil host=127%.0%.0%.2:",
                     r.body)
      r = assert(client:get(base .. "/same-307", secret))
      assert.are.equal("same GET /echo  auth=Bearer s3cret", r.body)
      -- 307 keeps the method and body: a string body is sent again
      r = assert(client:post(base .. "/same-307", "payload"))
      assert.are.equal("same POST /echo payload auth=nil", r.body)
      -- ... but a body read from a function cannot be: the 307 is the
      -- answer
      local pieces = { "a", "b" }
      r = assert(client:request { method = "POST", url = base .. "/same-307",
                                  body = function()
                                    return table.remove(pieces, 1)
                                  end })
      assert.are.equal(307, r.status)
      r = assert(client:request { method = "PUT", url = base .. "/other-307",
                                  body = "x", headers = secret })
      assert.matches("^other PUT /o7 auth=nil", r.body)
      client:close()
      st.stop()
      other.stop()
    end)
  end)

  it("never reuses a streamed response's connection abandoned half-read,"
     .. " closed, or whose reader was killed", function()
    green_run(function()
      local stall = green.Event()
      local base, st = hostile(answering(function(req, c)
        if req.path == "/big" then
          return ok_response(("s"):rep(200000))
        elseif req.path == "/stall" then
          c:send("HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\n"
                 .. ("s"):rep(1000))
          stall:wait()
          return
        end
        return ok_response("small " .. req.path)
      end))
      local client = green.http.Client { max_per_host = 1 }
      -- closed half-read
      local r = assert(client:request { url = base .. "/big", stream = true })
      assert.are.equal("string", type(r:body_reader()(r)))
      r:close()
      r:close() -- twice: nothing
      assert.are.equal(0, idle(client))
      assert.are.equal("small /1", assert(client:get(base .. "/1")).body)
      assert.are.equal(2, st.n)
      -- its reader killed while it waits for more
      r = assert(client:request { url = base .. "/stall", stream = true,
                                  timeout = 20 })
      local started = green.Event()
      local reader = green.spawn(function()
        local next_piece = r:body_reader()
        started:send()
        while next_piece(r) do end
        error("the body ended: the server stalls")
      end)
      started:wait()
      h.until_suspended(reader)
      reader:kill()
      -- dropped without close: collected, its slot comes back
      r, reader = nil, nil -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
      assert.are.equal("small /2", assert(client:request {
        url = base .. "/2", timeout = 20 }).body)
      assert.are.equal(0, #the_pool(client).idle - 1)
      -- abandoned half-read, never closed
      for i = 1, 3 do
        local rr = assert(client:request { url = base .. "/big",
                                           stream = true, timeout = 20 })
        assert(rr:body_reader()(rr))
        rr = nil -- luacheck: ignore 311
        collectgarbage()
        collectgarbage()
        assert.are.equal("small /" .. i, assert(client:request {
          url = base .. "/" .. i, timeout = 20 }).body)
      end
      stall:send()
      client:close()
      st.stop()
    end)
  end)

  it("loses no max_per_host slot to killed or timed-out requests and"
     .. " waiters", function()
    green_run(function()
      local hold = green.Event()
      local base, st = hostile(answering(function(req, c)
        if req.path == "/hold" then hold:wait() end
        if req.path == "/hold-body" then
          c:send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
          hold:wait()
        end
        return ok_response("done " .. req.path)
      end))
      local client = green.http.Client { max_per_host = 2 }
      local function req(path, timeout)
        return client:request { url = base .. path, timeout = timeout }
      end
      local function balance()
        return the_pool(client).sem:balance()
      end
      -- a Timeout raising out of a request in flight (waiting for the
      -- head, then for the body)
      for _, path in ipairs { "/hold", "/hold-body" } do
        for _ = 1, 3 do
          local t = green.Timeout(0.05)
          local ok, e = pcall(req, path)
          t:cancel()
          assert.is_false(ok)
          assert.are.equal(t, e)
          assert.are.equal(2, balance())
        end
      end
      for round = 1, 3 do
        local holders = {}
        for i = 1, 2 do -- both slots held by requests in flight
          holders[i] = green.spawn(req, "/hold")
          h.until_suspended(holders[i])
        end
        -- waiters: one times out, one is killed, one gets a Timeout
        assert.are.same({ nil, "timeout" }, { req("/w", 0.05) })
        local killed = green.spawn(req, "/w")
        h.until_suspended(killed)
        killed:kill()
        local t = green.Timeout(0.05)
        local ok, e = pcall(req, "/w")
        t:cancel()
        assert.is_false(ok)
        assert.are.equal(t, e)
        local waiter = green.spawn(req, "/w" .. round)
        h.until_suspended(waiter)
        holders[1]:kill() -- its slot goes to the waiter
        assert.are.equal("done /w" .. round, waiter:wait().body)
        holders[2]:kill()
        assert.are.equal(2, balance())
        assert.are.equal("done /after", assert(req("/after", 20)).body)
      end
      hold:send()
      client:close()
      st.stop()
    end)
  end)

  it("keeps the place of takes waiting while a streamed response is out; "
     .. "the pool's watcher for lost ones ends with the last wait",
     function()
    green_run(function()
      local base, client, stop = pool_of_one()
      local order = {}
      local function req(path)
        local r = assert(client:request { url = base .. path, timeout = 20 })
        order[#order + 1] = r.body
      end
      for _ = 1, 2 do -- (and again: the watcher is made anew)
        local r = assert(client:request { url = base .. "/s", stream = true })
        local w1 = green.spawn(req, "/1")
        h.until_suspended(w1)
        local w2 = green.spawn(req, "/2")
        h.until_suspended(w2)
        local p = the_pool(client)
        assert.is_truthy(p.watcher) -- (reconciles every second)
        assert.are.equal(2, p.sem:waiting())
        r:close() -- the slot to the first waiter, then the second
        w1:wait()
        w2:wait()
        assert.are.same({ "done /1", "done /2" }, order)
        -- it ends at its next tick (which keeps no program alive: below)
        h.eventually(function() return p.watcher == nil end, "watcher ended")
        assert.are.equal(0, p.sem:waiting())
        assert.are.equal(1, p.sem:balance())
        order = {}
      end
      client:close()
      stop()
    end)
  end)

  it("makes the pool's watcher anew when it is killed while takes wait, "
     .. "and a lease lost after still gives its slot to them", function()
    green_run(function()
      local base, client, stop = pool_of_one()
      local r, w = held_and_waiting(client, base)
      h.until_suspended(w)
      local p = the_pool(client)
      assert.is_truthy(p.watcher)
      kill_watcher_lose_lease(p, r)
      assert.are.equal("done /w", w:wait().body) -- (at the watcher's tick)
      assert.are.equal(0, p.nstreams)
      assert.are.equal(0, p.sem:waiting())
      assert.are.equal(1, p.sem:balance())
      h.eventually(function() return p.watcher == nil end, "watcher gone")
      -- With no take waiting, a watcher killed is not made anew.
      r = assert(client:request { url = base .. "/s", stream = true })
      w = green.spawn(function()
        return client:request { url = base .. "/w", timeout = 20 }
      end)
      h.until_suspended(w)
      local killed = p.watcher
      w:kill()
      killed:kill()
      assert.is_nil(p.watcher)
      r:close()
      assert.are.equal(1, p.sem:balance())
      client:close()
      stop()
    end)
  end)

  -- A take waiting (no timeout) behind a streamed response that a thread
  -- blocked for good holds: the watcher's tick kept such a program
  -- running for ever; now it ends as it would without the watcher (a main
  -- thread blocked in the take gets its deadlock error).
  for _, case in ipairs {
    { "a green thread's take", "green.spawn(take)", 0 },
    { "the main thread's take", "take()", 1 },
  } do
    it("lets a program end whose " .. case[1] .. " waits for good behind "
       .. "a streamed response", function()
      green_run(function()
        local base, _, stop = pool_of_one()
        local script = os.tmpname()
        local f = assert(io.open(script, "w"))
        f:write([[
local green = require "green"
local client = green.http.Client { max_per_host = 1 }
local base = arg[1]
local r = assert(client:request { url = base .. "/s", stream = true })
green.spawn(function() green.Event():wait(); r:close() end)
local function take()
  green.spawn(function() -- the watcher is made; then, watched:
    local p = client.pools[next(client.pools)]
    assert(p.watcher and p.sem:waiting() == 1, "a take waits, watched")
    io.stdout:write("waiting\n")
  end)
  return client:request { url = base .. "/w" }
end
]] .. case[2] .. "\n")
        f:close()
        local ok, out, err, how, code = green.process.run {
          "timeout", "-k", "5", "30", h.greenlua, script, base }
        os.remove(script)
        assert.are.equal("waiting\n", out)
        assert.are.same({ "exit", case[3] }, { how, code }, err)
        assert.are.equal(case[3] == 0, ok)
        if case[3] ~= 0 then
          assert.matches("deadlock: the main thread is blocked in", err)
        else
          assert.are.equal("", err)
        end
        stop()
      end)
    end)
  end

  it("makes the pool's watcher anew when it is killed before it ran",
     function()
    green_run(function()
      local base, client, stop = pool_of_one()
      local r, w = held_and_waiting(client, base)
      -- w runs at this yield, makes the watcher (queued behind this
      -- thread) and waits; this thread runs before the watcher does
      green.sleep(0)
      local p = the_pool(client)
      assert.are.equal("new", p.watcher:status())
      assert.are.equal(1, p.sem:waiting())
      -- replaced at once; a lease lost still gives the take its slot
      kill_watcher_lose_lease(p, r)
      assert.are.equal("done /w", w:wait().body)
      assert.are.equal(1, p.sem:balance())
      client:close()
      stop()
    end)
  end)

  it("loses no max_per_host slot to a request killed while it connects",
     function()
    green_run(function()
      -- a listener whose backlog is full: connects hang
      local srv = assert(green.listen("127.0.0.1", 0, { backlog = 0 }))
      local _, port = srv:getsockname()
      local filler = assert(green.connect("127.0.0.1", port))
      local url = "http://127.0.0.1:" .. port .. "/"
      local client = green.http.Client { max_per_host = 1 }
      for _ = 1, 3 do
        local gt = green.spawn(client.get, client, url)
        h.until_suspended(gt)
        gt:kill()
        assert.are.equal(1, the_pool(client).sem:balance())
        local t = green.Timeout(0.05)
        local ok, e = pcall(client.get, client, url)
        t:cancel()
        assert.is_false(ok)
        assert.are.equal(t, e)
        assert.are.equal(1, the_pool(client).sem:balance())
      end
      filler:close()
      srv:close()
    end)
  end)

  it("runs many concurrent requests to one host within max_per_host",
     function()
    green_run(function()
      local open, most = 0, 0
      local base, st = hostile(function(c)
        open = open + 1
        most = math.max(most, open)
        while true do
          local req = read_request(c)
          if not req then break end
          green.sleep(0)
          c:send(ok_response("r " .. req.path))
        end
        open = open - 1
      end)
      local client = green.http.Client { max_per_host = 4 }
      local pile = green.GreenPile()
      for i = 1, 300 do
        pile:spawn(function()
          local r, err = client:request { url = base .. "/" .. i,
                                          timeout = 30 }
          return r and r.body or err
        end)
      end
      local i = 0
      for body in pile do
        i = i + 1
        assert.are.equal("r /" .. i, body)
      end
      assert.are.equal(300, i)
      assert(most <= 4 and st.n <= 4, most .. " " .. st.n)
      client:close()
      st.stop()
    end)
  end)

  it("gives a clear error for https:// to a server that does not speak"
     .. " TLS", function()
    green_run(function()
      local hold = green.Event()
      local base, st = hostile(function(c, n)
        if n == 1 then return end -- closes at once
        if n == 2 then -- plain HTTP
          c:receive(5)
          c:send(ok_response("plain"))
          return
        end
        hold:wait() -- says nothing
      end)
      local url = base:gsub("^http:", "https:") .. "/"
      local client = green.http.Client()
      for i = 1, 3 do
        local r, err = client:request { url = url, timeout = i == 3 and 0.1
                                        or 20 }
        assert.is_nil(r)
        assert.matches("^https://127%.0%.0%.1:%d+: .", err)
        if i == 3 then assert.matches("timeout$", err) end
      end
      assert.are.equal(0, idle(client))
      assert.are.equal(10, the_pool(client).sem:balance()) -- none lost
      hold:send()
      st.stop()
    end)
  end)
end)
