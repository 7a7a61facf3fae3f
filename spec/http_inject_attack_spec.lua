-- green.http against request and response splitting, and against
-- smuggling: what a caller, a handler or a peer gives that would put
-- bytes of its choice into the framing of a message (a request line, a
-- header line, a body's length) is refused with a clear error and never
-- sent. Complements spec/http_attack_spec.lua and
-- spec/http_client_attack_spec.lua (which do not repeat here).
local green = require "green"
local h = require "helper"

-- A peer that records all it is sent on each connection (until the
-- other end closes, or 5 s): the base URL and `st` (st.got[n]: the
-- bytes of connection n; st.n; st.stop()).
local function recorder()
  local got = {}
  local port, st = h.raw_server(function(c, n)
    c:settimeout(5)
    local d, _, partial = c:receive("*a")
    got[n] = d or partial
  end)
  st.got = got
  return "http://127.0.0.1:" .. port, st
end

-- A peer that answers each connection's request head with `answer` (a
-- string, or a function of the connection's number giving one), then
-- reads until the client closes: its port and state (st.n; st.stop()).
local function answering(answer)
  return h.raw_server(function(c, n)
    repeat local l = c:receive("*l") until l == "" or not l
    c:send(type(answer) == "function" and answer(n) or answer)
    c:receive("*a")
  end)
end

describe("green.http client against splitting its own request", function()
  it("refuses a method that is not a token, sends nothing", function()
    green_run(function()
      local base, st = recorder()
      local client = green.http.Client()
      for _, m in ipairs { "GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET",
                           "G ET", "GET\r\n", "GET\0", "", "GE(T", 5,
                           true, {} } do
        local ok, err = pcall(client.request, client,
                              { method = m, url = base .. "/" })
        assert.is_false(ok, tostring(m))
        assert.matches("^bad argument #2 to 'request' %(method: token "
                       .. "expected", err)
      end
      -- a token goes as it is (uppercased)
      local r, err = client:request { method = "purge", url = base .. "/",
                                      timeout = 0.2 }
      assert.is_nil(r)
      assert.are.equal("timeout", err)
      client:close()
      h.eventually(function() return st.got[1] end, 10, "the request")
      assert.are.equal(1, st.n)
      assert.matches("^PURGE / HTTP/1%.1\r\n", st.got[1])
      st.stop()
    end)
  end)

  it("refuses a URL with a space or a control byte, and a redirect to one",
     function()
    green_run(function()
      local base, st = recorder()
      for _, tail in ipairs { "/a\tb", "/a\fb", "/a\vb", "/a b", "/a\0b",
                              "/a\127b", "/?q=a\tb", "/\r\nX-Inj: 1",
                              "/a\tHTTP/1.1" } do
        local r, err = green.http.get(base .. tail)
        assert.is_nil(r, tail)
        assert.matches("^invalid URL: ", err)
        -- the message holds no control byte (a log line's CR or LF)
        assert.is_nil(err:find("[%c\127]"), err)
        r, err = green.http.websocket(base:gsub("^http", "ws") .. tail)
        assert.is_nil(r, tail)
        assert.matches("^invalid URL: ", err)
        assert.is_nil(err:find("[%c\127]"), err)
      end
      assert.are.same({ nil, "invalid URL: " .. base .. "/\\13\\10X-Inj: 1" },
                      { green.http.get(base .. "/\r\nX-Inj: 1") })
      assert.are.equal(0, st.n)
      st.stop()
      -- a Location with an HTAB (a header value may hold one)
      local port, rst = answering("HTTP/1.1 302 Found\r\n"
        .. "Location: /a\tHTTP/1.1\r\nContent-Length: 0\r\n\r\n")
      local client = green.http.Client()
      local r, err = client:get("http://127.0.0.1:" .. port .. "/")
      assert.is_nil(r)
      assert.matches("^invalid URL: ", err)
      assert.are.equal(1, rst.n)
      client:close()
      rst.stop()
    end)
  end)
end)

-- Bad chunk framing libhttp-parser (built without its strict mode)
-- took: the byte after a CR for the LF, any two bytes after a chunk's
-- data for its CRLF, an LF in a chunk extension as part of it.
local BAD_CHUNKS = {
  "3\rXabc\r\n0\r\n\r\n",        -- the size line's CR, then not LF
  "3;a\rX\r\nabc\r\n0\r\n\r\n",  -- a CR in an extension
  "3;a\nX\r\nabc\r\n0\r\n\r\n",  -- an LF in an extension
  "3;e=\"a\r\nb\"\r\nabc\r\n0\r\n\r\n", -- a quoted CRLF in one
  "3\r\nabcXY0\r\n\r\n",         -- no CRLF after the data
  "3\r\nabc\rX0\r\n\r\n",        -- a CR after the data, then not LF
  "3\r\nabc\n\r0\r\n\r\n",
  "3\r\nabc\r\n0\r\nX-T: 1\rX\r\n\r\n", -- a trailer line's bare CR
  "3\r\nabc\r\n0\r\n\rX",        -- the last line's
  "3\r\nabc\r\n0\r\n\r\r",
}

describe("green.http's chunked framing", function()
  it("is refused on the server where it is not CRLF, nothing after it "
     .. "served", function()
    green_run(function()
      local served = {}
      local port, stop = h.http_serve(function(req)
        local body, err = req:body()
        served[#served + 1] = req.path
        return 200, {}, ("%s %s %s"):format(req.path, tostring(body),
                                            tostring(err))
      end)
      for _, chunks in ipairs(BAD_CHUNKS) do
        served = {}
        local r = h.raw_exchange(port, "POST /p HTTP/1.1\r\nHost: a\r\n"
          .. "Transfer-Encoding: chunked\r\n\r\n" .. chunks
          .. "GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        assert.is_nil(r:find("/after", 1, true), chunks)
        assert.matches("400", r, nil, true, chunks)
        assert.is_nil(served[2], chunks)
      end
      -- a byte at a time (the bad byte read alone)
      for _, chunks in ipairs { BAD_CHUNKS[1], BAD_CHUNKS[#BAD_CHUNKS] } do
        served = {}
        local c = assert(green.connect("127.0.0.1", port))
        c:settimeout(10)
        local req = "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
          .. "chunked\r\n\r\n" .. chunks
          .. "GET /after HTTP/1.1\r\nHost: a\r\n\r\n"
        for i = 1, #req do
          if not c:send(req:sub(i, i)) then break end -- (a 400 came)
        end
        local got, _, partial = c:receive("*a")
        c:close()
        got = got or partial
        assert.matches("^HTTP/1%.1 400 ", got, nil, false, chunks)
        assert.is_nil(got:find("/after", 1, true), chunks)
        assert.is_nil(served[2], chunks)
      end
      -- what stays taken, also a byte at a time: extensions, BWS before
      -- them, trailers, bare LF ending a trailer line and the last one
      local good = "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
        .. "chunked\r\n\r\n3 ;e=\"x\"\r\nabc\r\n2\r\n\r\n\r\n0\r\n"
        .. "X-T: 1\nX-U: 2\r\n\nGET /after HTTP/1.1\r\nHost: a\r\n"
        .. "Connection: close\r\n\r\n"
      local want = "/p abc\r\n nil.*/after  nil"
      assert.matches(want, h.raw_exchange(port, good))
      local c = assert(green.connect("127.0.0.1", port))
      c:settimeout(10)
      for i = 1, #good do assert(c:send(good:sub(i, i))) end
      local got, err, partial = c:receive("*a")
      c:close()
      assert.matches(want, got or partial, nil, false, err)
      stop()
    end)
  end)

  it("is refused in a response where it is not CRLF; not pooled",
     function()
    green_run(function()
      local port, st = answering(function(n)
        return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
          .. BAD_CHUNKS[n] .. "HTTP/1.1 200 OK\r\n"
          .. "Content-Length: 5\r\n\r\nsmugl"
      end)
      local client = green.http.Client()
      for i = 1, #BAD_CHUNKS do
        local r, err = client:get("http://127.0.0.1:" .. port .. "/")
        assert.is_nil(r, BAD_CHUNKS[i])
        assert.are.equal("bad response", err, BAD_CHUNKS[i])
        for _, p in pairs(client.pools) do
          assert.are.equal(0, #p.idle, BAD_CHUNKS[i])
        end
      end
      assert.are.equal(#BAD_CHUNKS, st.n)
      client:close()
      st.stop()
    end)
  end)
end)

-- A server answering "served <path>": its port, the paths served, stop.
local function path_server()
  local served = {}
  local port, stop = h.http_serve(function(req)
    served[#served + 1] = req.path
    return 200, {}, "served " .. req.path
  end)
  return port, served, stop
end

-- `head`, then a request after it on the same connection: a 400 alone
-- answers them, no handler runs.
local function assert_refused(port, served, head)
  local before = #served
  local r = h.raw_exchange(port, head
    .. "GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
  assert.matches("^HTTP/1%.1 400 ", r, nil, false, head)
  assert.is_nil(r:find("served", 1, true), head)
  assert.are.equal(before, #served, head)
end

describe("chunked given twice, over two Transfer-Encoding lines", function()
  -- libhttp-parser refuses "chunked, chunked" in one line, but took it
  -- from two and decoded once: a front end that decodes it twice, or
  -- reads the first line alone, frames the message otherwise (RFC 9112
  -- 6.1: chunked is never applied more than once).
  local TWICE = "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"

  it("is refused by the server, the request after it unread", function()
    green_run(function()
      local port, served, stop = path_server()
      assert_refused(port, served, "POST /twice HTTP/1.1\r\nHost: a\r\n"
        .. TWICE .. "\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
      assert_refused(port, served, "POST /twice HTTP/1.1\r\nHost: a\r\n"
        .. "Transfer-Encoding: gzip, chunked\r\nTransfer-Encoding: "
        .. "chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
      -- once, in either spelling, stays taken
      local r = h.raw_exchange(port, "POST /once HTTP/1.1\r\nHost: a\r\n"
        .. "Transfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n"
        .. "3\r\nabc\r\n0\r\n\r\n"
        .. "GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      assert.matches("served /once.*served /after$", r)
      stop()
    end)
  end)

  it("is a bad response to the client, its connection not pooled",
     function()
    green_run(function()
      local port, st = answering("HTTP/1.1 200 OK\r\n" .. TWICE
        .. "\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
      local client = green.http.Client()
      local r, err = client:get("http://127.0.0.1:" .. port .. "/")
      assert.is_nil(r)
      assert.are.equal("bad response", err)
      for _, p in pairs(client.pools) do assert.are.equal(0, #p.idle) end
      client:close()
      st.stop()
    end)
  end)
end)

describe("green.http.serve's request line", function()
  it("is refused with HTAB, VT or FF in the target, or two SP before it",
     function()
    green_run(function()
      local port, served, stop = path_server()
      for _, line in ipairs { "GET /a\tb HTTP/1.1", "GET /a\fb HTTP/1.1",
                              "GET /a\vb HTTP/1.1", "GET /a?q=\t HTTP/1.1",
                              "GET  /a HTTP/1.1", "GET /a\t HTTP/1.1" } do
        assert_refused(port, served, line .. "\r\nHost: a\r\n\r\n")
      end
      -- what stays taken: an empty line before the request, the absolute
      -- form, "*"
      local r = h.raw_exchange(port, "\r\nGET /e HTTP/1.1\r\nHost: a\r\n\r\n"
        .. "GET http://a/abs?q HTTP/1.1\r\nHost: a\r\n\r\n"
        .. "OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      assert.matches("served /e.*served /abs.*served %*$", r)
      stop()
    end)
  end)

  it("is refused with two Host headers, the same or not", function()
    green_run(function()
      local port, served, stop = path_server()
      for _, hosts in ipairs { "Host: a\r\nHost: b", "Host: a\r\nHOST: a",
                               "Host: a\r\nX: 1\r\nhost: b" } do
        assert_refused(port, served, "GET /p HTTP/1.1\r\n" .. hosts
          .. "\r\n\r\n")
      end
      -- one, or none (HTTP/1.0), stays taken
      local r = h.raw_exchange(port, "GET /one HTTP/1.1\r\nHost: a\r\n"
        .. "\r\nGET /none HTTP/1.0\r\n\r\n")
      assert.matches("served /one.*served /none$", r)
      stop()
    end)
  end)

  -- RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request
  -- without Host (which site it asked for is unknown; a front end may
  -- have routed it to a default the handler does not expect).
  it("is refused without Host in HTTP/1.1, of any form; 1.0 is served",
     function()
    green_run(function()
      local port, served, stop = path_server()
      for _, head in ipairs {
        "GET /p HTTP/1.1\r\n\r\n",
        "GET /p HTTP/1.1\nX-Host: a\n\n",
        "POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        "GET http://a/p HTTP/1.1\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\n\r\n",
        "CONNECT a.example:443 HTTP/1.1\r\n\r\n",
      } do
        assert_refused(port, served, head)
      end
      assert.are.same({}, served)
      -- HTTP/1.0 may go without: served, the handler sees no Host
      local hosts = {}
      stop()
      port, stop = h.http_serve(function(req)
        hosts[#hosts + 1] = req.headers.host or "none"
        return 200, {}, "served " .. req.path
      end)
      local r = h.raw_exchange(port, "GET /ten HTTP/1.0\r\n"
        .. "Connection: keep-alive\r\n\r\nOPTIONS * HTTP/1.0\r\n\r\n")
      assert.matches("served /ten.*served %*$", r)
      assert.are.same({ "none", "none" }, hosts)
      stop()
    end)
  end)

  -- An absolute-form target names the site (RFC 9112 3.2.2: the server
  -- uses it, not Host); the handler reads Host and the path. A front end
  -- routing by the target and a handler reading Host must not disagree:
  -- Host must be the target's authority (as a client must send it).
  it("is refused in the absolute form unless Host is its authority",
     function()
    green_run(function()
      local port, served, stop = path_server()
      for _, head in ipairs {
        "GET http://evil.example/x HTTP/1.1\r\nHost: good.example",
        "GET http://a.example:8080/x HTTP/1.1\r\nHost: a.example",
        "GET http://a.example/x HTTP/1.1\r\nHost: a.example:80",
        "GET http://u@a.example/x HTTP/1.1\r\nHost: u@a.example",
        "GET http://a.example/x HTTP/1.1\r\nX: no host",
        "GET http:/a.example/x HTTP/1.1\r\nHost: a.example",
      } do
        assert_refused(port, served, head .. "\r\n\r\n")
      end
      -- the authority as Host (any case), with a port, a query, no path;
      -- HTTP/1.0 without Host
      local r = h.raw_exchange(port,
        "GET http://A.Example/abs HTTP/1.1\r\nHost: a.example\r\n\r\n"
        .. "GET http://a.example:8080/p?q HTTP/1.1\r\n"
        .. "Host: a.example:8080\r\n\r\n"
        .. "GET https://a.example?q HTTP/1.1\r\nHost: a.example\r\n\r\n"
        .. "GET http://a.example/ten HTTP/1.0\r\n\r\n")
      assert.matches("served /abs.*served /p.*served /.*served /ten$", r)
      assert.are.same({ "/abs", "/p", "/", "/ten" },
                      { table.unpack(served, #served - 3) })
      stop()
    end)
  end)
end)

describe("green.http client's framing of its request body", function()
  it("keeps the caller's Content-Length and Transfer-Encoding from "
     .. "smuggling a request after it", function()
    green_run(function()
      local served, cut = {}, 0
      local port, stop = h.http_serve(function(req)
        local body = req:body()
        if not body then -- (the client gave up a body function's)
          cut = cut + 1
          return 400, {}, ""
        end
        served[#served + 1] = req.method .. " " .. req.path .. " " .. body
        return 200, {}, "ok"
      end)
      local base = "http://127.0.0.1:" .. port
      local client = green.http.Client { max_per_host = 1 }
      local smuggled = "GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
      -- a Content-Length that is not the body's: refused, nothing sent
      for _, case in ipairs {
        { { ["Content-Length"] = "0" }, smuggled },
        { { ["content-length"] = 2 }, "abc" },
        { { ["Content-Length"] = "5" }, nil },
        { { ["Content-Length"] = "x" }, "" },
        { { ["Content-Length"] = "-1" }, "" },
        { { ["Content-Length"] = "1.5" }, "" },
        { { ["Content-Length"] = "0x3" }, "abc" },
        { { ["Content-Length"] = "3e0" }, "abc" },
        { { ["Content-Length"] = 3.0 }, "abc" },
        { { ["Content-Length"] = "+3" }, "abc" },
        { { ["Content-Length"] = { "3", "3" } }, "abc" },
      } do
        local ok, err = pcall(client.request, client, {
          method = "POST", url = base .. "/p", headers = case[1],
          body = case[2] })
        assert.is_false(ok)
        assert.matches("^green%.http: .*Content%-Length", err)
      end
      assert.are.same({}, served)
      -- one that is: sent as it is
      local r = assert(client:request { method = "POST", url = base .. "/p",
        headers = { ["Content-Length"] = "3" }, body = "abc" })
      assert.are.equal(200, r.status)
      -- the caller's Transfer-Encoding is dropped: the body is framed by
      -- its length (it was sent raw beside a Content-Length, read as
      -- chunks by the server, and the request after them served)
      r = assert(client:request { method = "POST", url = base .. "/te",
        headers = { ["Transfer-Encoding"] = "chunked" },
        body = "0\r\n\r\n" .. smuggled })
      assert.are.equal(200, r.status)
      -- a body function whose pieces do not add up to the Content-Length
      for _, pieces in ipairs { { "ab", "c" .. smuggled }, { "ab" } } do
        local ok, err = pcall(client.request, client, {
          method = "POST", url = base .. "/f", headers = {
            ["Content-Length"] = "3" },
          body = function() return table.remove(pieces, 1) end })
        assert.is_false(ok)
        assert.matches("^green%.http: the body function gave %a+ than its "
                       .. "Content%-Length", err)
      end
      local pieces = { "a", "", "bc" }
      r = assert(client:request { method = "PUT", url = base .. "/f",
        headers = { ["Content-Length"] = 3 },
        body = function() return table.remove(pieces, 1) end })
      assert.are.equal(200, r.status)
      assert.are.same({ "POST /p abc", "POST /te 0\r\n\r\n" .. smuggled,
                        "PUT /f abc" }, served)
      h.eventually(function() return cut == 2 end, 10, "two bodies cut")
      client:close()
      stop()
    end)
  end)
end)

describe("green.http.serve's response status", function()
  it("is never a 1xx, whose final response the next request's would be",
     function()
    green_run(function()
      local reported = {}
      local old = green.on_error(function(_, err)
        reported[#reported + 1] = tostring(err)
      end)
      local port, stop = h.http_serve(function(req)
        local st = tonumber(req.path:match("^/(%d+)"))
        if req.path:match("fn$") then
          local done = false
          return st, { ["Content-Length"] = 2 }, function()
            if not done then done = true return "hi" end
          end
        end
        return st, {}, "body " .. req.path
      end)
      for _, st in ipairs { 100, 101, 103, 199 } do
        local r = h.raw_exchange(port, "GET /" .. st .. " HTTP/1.1\r\n"
          .. "Host: a\r\n\r\nGET /200 HTTP/1.1\r\nHost: a\r\n"
          .. "Connection: close\r\n\r\n")
        -- a 500 (and the connection closed), never a 1xx then the 200
        assert.matches("^HTTP/1%.1 500 ", r, nil, false, st)
        assert.is_nil(r:find("HTTP/1.1 200", 1, true), st)
      end
      h.eventually(function() return #reported == 4 end, 10, "reports")
      for _, err in ipairs(reported) do
        assert.matches("status 1%d%d %(an integer 200%-999 expected%)", err)
      end
      -- a 204 gets no Content-Length, even the handler's
      local r = h.raw_exchange(port, "GET /204fn HTTP/1.1\r\nHost: a\r\n"
        .. "Connection: close\r\n\r\n")
      assert.matches("^HTTP/1%.1 204 ", r)
      assert.is_nil(r:lower():find("content-length", 1, true))
      assert.matches("\r\n\r\n$", r)
      green.on_error(old)
      stop()
    end)
  end)
end)

-- A WebSocket server that puts what each receive returns, up to the
-- end, in queue `got`: its URL, `got`, stop.
local function ws_receiver()
  local got = green.Queue()
  local port, stop = h.http_serve(function(req)
    local ws = assert(req:upgrade_websocket())
    while true do
      local m, err, code, reason = ws:receive()
      got:put({ m, err, code, reason })
      if not m then break end
    end
    ws:close()
  end)
  return "ws://127.0.0.1:" .. port .. "/", got, stop
end

describe("green.http WebSocket's close", function()
  it("refuses to send a code a peer fails the connection on", function()
    green_run(function()
      local url, got, stop = ws_receiver()
      for _, code in ipairs { 999, 1004, 1005, 1006, 1015, 1016, 2000,
                              2999, 5000 } do
        local ws = assert(green.http.websocket(url, { timeout = 10 }))
        local ok, err = pcall(ws.close, ws, code)
        assert.is_false(ok, code)
        assert.matches("invalid close code", err)
        ws:close(3000 + code % 1000)
        assert.are.same({ nil, "closed", 3000 + code % 1000, "" },
                        got:get(true, 10))
      end
      for _, code in ipairs { 1000, 1003, 1007, 1011, 3000, 4999 } do
        local ws = assert(green.http.websocket(url, { timeout = 10 }))
        ws:close(code, "r")
        assert.are.same({ nil, "closed", code, "r" }, got:get(true, 10))
      end
      stop()
    end)
  end)
end)

describe("green.http WebSocket's text", function()
  it("must be UTF-8 to be sent, as a close reason must", function()
    green_run(function()
      local url, got, stop = ws_receiver()
      local ws = assert(green.http.websocket(url, { timeout = 10 }))
      for _, bad in ipairs { "ok \xff", "\xc0\xaf", "\xed\xa0\x80",
                             "abc\xe2\x82", "\xf4\x90\x80\x80" } do
        local ok, err = pcall(ws.send, ws, bad)
        assert.is_false(ok)
        assert.matches("a text message must be UTF%-8", err)
        ok, err = pcall(ws.close, ws, 1000, bad)
        assert.is_false(ok)
        assert.matches("a close reason must be UTF%-8", err)
      end
      -- nothing went: the connection goes on
      assert(ws:send("caf\xc3\xa9 \xf0\x9f\x98\x80"))
      assert(ws:send("\xff", "binary"))
      assert.are.same({ "caf\xc3\xa9 \xf0\x9f\x98\x80", "text" },
                      got:get(true, 10))
      assert.are.same({ "\xff", "binary" }, got:get(true, 10))
      ws:close(1000, "\xc3\xa9")
      assert.are.same({ nil, "closed", 1000, "\xc3\xa9" }, got:get(true, 10))
      stop()
    end)
  end)
end)

describe("green.http.websocket's handshake headers", function()
  it("sends one Host, the caller's if given, and refuses to send the "
     .. "handshake's own twice", function()
    green_run(function()
      local heads = green.Queue()
      local port, st = h.raw_server(function(c)
        local hs = {}
        while true do
          local l = c:receive("*l")
          if not l or l == "" then break end
          local k = l:match("^([^:]+):")
          if k then hs[#hs + 1] = k:lower() .. "=" .. l:match(":%s*(.*)$") end
        end
        heads:put(hs)
        c:send("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
      end)
      local url = "ws://127.0.0.1:" .. port .. "/"
      local function hosts(headers)
        local ws, err = green.http.websocket(url, { headers = headers,
                                                    timeout = 10 })
        assert.is_nil(ws)
        assert.matches("refused %(400", err)
        local t = {}
        for _, l in ipairs(heads:get(true, 10)) do
          if l:match("^host=") then t[#t + 1] = l end
        end
        return t
      end
      assert.are.same({ "host=127.0.0.1:" .. port }, hosts(nil))
      assert.are.same({ "host=example.test" },
                      hosts { Host = "example.test" })
      assert.are.same({ "host=v.test:8080" }, hosts { HOST = "v.test:8080" })
      for _, k in ipairs { "Upgrade", "connection", "Sec-WebSocket-Key",
                           "SEC-WEBSOCKET-VERSION",
                           "Sec-WebSocket-Protocol" } do
        local ok, err = pcall(green.http.websocket, url,
                              { headers = { [k] = "x" } })
        assert.is_false(ok, k)
        assert.matches("headers: " .. k:gsub("%-", "%%-")
                       .. " is the handshake's", err)
      end
      assert.are.equal(3, st.n)
      st.stop()
    end)
  end)
end)
