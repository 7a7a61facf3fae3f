-- A combinatorial (not random) sweep of green.http.serve over the head
-- features that steer libhttp-parser and the server's head/body state
-- machine: method, version, framing (Content-Length / Transfer-Encoding
-- in their honest and hostile forms), Connection, Upgrade, Expect, and
-- what follows the request in the same write; against handlers that
-- ignore the body, read it whole, read half of it, upgrade to a
-- WebSocket, or fail. Each exchange is checked against invariants (no
-- golden answers): legitimate statuses only, well-formed responses in
-- order, nothing answered after a refusal, no request smuggled out of a
-- body, the error reporter silent for the client's faults, and the
-- server still serving. Plain, and a subset over TLS.
local green = require "green"
local h = require "helper"
local S = require "tls_support"

local dir
setup(function() dir = S.certs() end)
teardown(function() S.cleanup(dir) end)

-- the body of the requests that have one: a request in itself, which
-- the handler must never see as one (it is smuggled if it does)
local HIDDEN = "GET /hidden HTTP/1.1\r\nHost: a\r\nX-Case: hidden\r\n\r\n"
local NB = #HIDDEN
-- chunked bodies: HIDDEN as a chunk, or HIDDEN after the last chunk
-- (where a back end that takes the chunked framing and a front end that
-- takes another one disagree on where the request ends)
local CHUNKED = ("%x\r\n"):format(NB) .. HIDDEN .. "\r\n0\r\n\r\n"
local CHUNKED0 = "0\r\n\r\n" .. HIDDEN

local METHODS = {
  { "GET", "/p" }, { "HEAD", "/p" }, { "POST", "/p" },
  { "CONNECT", "h.example:443" }, { "OPTIONS", "*" },
}
local VERSIONS = { "1.1", "1.1", "1.0", "1.1", "0.9", "2.0" }
-- name, head lines, body, refused (a head the server must refuse before
-- any handler sees it)
local FRAMINGS = {
  { "none", "", "" },
  { "cl0", "Content-Length: 0\r\n", "" },
  { "cl", "Content-Length: " .. NB .. "\r\n", HIDDEN },
  { "cl-lying", "Content-Length: " .. (NB + 10) .. "\r\n", HIDDEN },
  { "cl-two", "Content-Length: " .. NB .. "\r\nContent-Length: "
      .. (NB + 1) .. "\r\n", HIDDEN, true },
  { "cl-comma", "Content-Length: " .. NB .. ", " .. (NB + 1) .. "\r\n",
    HIDDEN, true },
  { "cl-neg", "Content-Length: -1\r\n", HIDDEN, true },
  { "cl-huge", "Content-Length: 99999999999999999999999\r\n", HIDDEN, true },
  { "cl-big", "Content-Length: 100000\r\n", HIDDEN, true },
  { "chunked", "Transfer-Encoding: chunked\r\n",
    ("%x\r\n"):format(NB) .. HIDDEN .. "\r\n0\r\n\r\n" },
  { "chunked-cl", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ("%x\r\n"):format(NB) .. HIDDEN .. "\r\n0\r\n\r\n", true },
  { "gzip-chunked", "Transfer-Encoding: gzip, chunked\r\n",
    ("%x\r\n"):format(NB) .. HIDDEN .. "\r\n0\r\n\r\n" },
  { "te-unknown", "Transfer-Encoding: gzip\r\n", HIDDEN, true },
  { "chunked-ext-trailer", "Transfer-Encoding: chunked\r\n",
    ("%x;ext=1;q=\"a b\"\r\n"):format(NB) .. HIDDEN
      .. "\r\n0\r\nX-Trailer: 1\r\n\r\n" },
  -- the classic disagreements between a front and a back end
  { "te-chunked-then-gzip", "Transfer-Encoding: chunked\r\n"
      .. "Transfer-Encoding: gzip\r\n", CHUNKED0, true },
  { "te-chunked-comma-gzip", "Transfer-Encoding: chunked, gzip\r\n",
    CHUNKED0, true },
  { "te-gzip-then-chunked", "Transfer-Encoding: gzip\r\n"
      .. "Transfer-Encoding: chunked\r\n", CHUNKED },
  { "te-space-colon", "Transfer-Encoding : chunked\r\n", CHUNKED0, true },
  { "te-fold", "Transfer-Encoding: gzip,\r\n chunked\r\n", CHUNKED, true },
  { "te-case-tab", "Transfer-Encoding:\tChUnKeD\r\n", CHUNKED },
  { "te-xchunked-cl", "Content-Length: " .. #CHUNKED0 .. "\r\n"
      .. "Transfer-Encoding: xchunked\r\n", CHUNKED0, true },
  { "te-chunked-cl-all", "Transfer-Encoding: chunked\r\nContent-Length: "
      .. #CHUNKED0 .. "\r\n", CHUNKED0, true },
  { "cl-plus", "Content-Length: +" .. NB .. "\r\n", HIDDEN, true },
  { "cl-spaced", "Content-Length: 1 " .. NB .. "\r\n", HIDDEN, true },
  { "te-empty", "Transfer-Encoding: \r\n", HIDDEN },
}
local CONNECTIONS = { false, "close", "keep-alive", "upgrade",
                      "keep-alive, Upgrade" }
local EXPECTS = { false, "100-continue", "x-other" }
local AFTERS = {
  { "nothing", "" },
  { "pipelined", "GET /after HTTP/1.1\r\nHost: a\r\nX-Case: %s-after\r\n\r\n" },
  { "garbage", "\1\2 garbage \255\r\n\r\n" },
  { "half", "GET /half HTTP/1.1\r\nHost: a\r\nX-Ca" },
}
local HANDLERS = { "ignore", "whole", "half", "websocket", "error" }

local ALLOWED = { [100] = true, [101] = true, [200] = true, [400] = true,
                  [408] = true, [413] = true, [414] = true, [417] = true,
                  [431] = true, [500] = true, [501] = true, [505] = true }

-- The cases, each a table: id, request bytes, and what it was made of.
-- A full cross of method x framing x connection x upgrade, each twice
-- (a pipelined request behind it, and one of the other followers); the
-- version, Expect and handler rotate with strides prime to the framings'
-- count, so each framing meets each of them.
local function cases()
  local list = {}
  local i = 0
  local function add(m, version, f, conn, up, expect, handler, after)
    i = i + 1
    local id = "c" .. i
    local t = {
      m[1], " ", m[2], " HTTP/", version, "\r\nHost: h\r\n",
      "X-Case: ", id, "\r\nX-Handler: ", handler, "\r\n", f[2],
    }
    if conn then t[#t + 1] = "Connection: " .. conn .. "\r\n" end
    if up then
      t[#t + 1] = "Upgrade: websocket\r\nSec-WebSocket-Version: 13"
        .. "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    end
    if expect then t[#t + 1] = "Expect: " .. expect .. "\r\n" end
    t[#t + 1] = "\r\n"
    t[#t + 1] = f[3]
    t[#t + 1] = after[2]:format(id)
    list[#list + 1] = {
      id = id, data = table.concat(t), method = m[1],
      version = version, framing = f[1], refused = f[4],
      conn = conn, upgrade = up, expect = expect,
      handler = handler, after = after[1],
    }
  end
  for mi, m in ipairs(METHODS) do
    for ci, conn in ipairs(CONNECTIONS) do
      for up = 0, 1 do
        for fi, f in ipairs(FRAMINGS) do
          for pass = 1, 2 do
            local n = i + 1
            local version = VERSIONS[(n // 2 + mi + ci + fi) % #VERSIONS + 1]
            local expect = EXPECTS[(n // 5 + up + fi + pass) % #EXPECTS + 1]
            local handler = HANDLERS[(n + ci + pass) % #HANDLERS + 1]
            local after = pass == 1 and AFTERS[2]
              or AFTERS[({ 1, 3, 4 })[(n // 2 + mi + fi) % 3 + 1]]
            add(m, version, f, conn, up == 1, expect, handler, after)
          end
        end
      end
    end
  end
  -- and the WebSocket upgrade (which the rotation would rarely meet with
  -- all it needs) with each framing, Expect and follower
  for _, conn in ipairs { "upgrade", "keep-alive, Upgrade" } do
    for _, f in ipairs(FRAMINGS) do
      for _, expect in ipairs(EXPECTS) do
        for _, after in ipairs(AFTERS) do
          add(METHODS[1], "1.1", f, conn, true, expect, "websocket", after)
        end
      end
    end
  end
  return list
end

-- The handlers, chosen by the request's X-Handler; each answers with its
-- X-Case (so the responses tell whose they are) and records what it saw.
local function make_handler(seen)
  return function(req)
    local id = req.headers["x-case"] or "?"
    seen[#seen + 1] = { id = id, path = req.path, method = req.method }
    if req.path == "/hidden" or req.path == "/half" then
      seen.smuggled = (seen.smuggled or 0) + 1
    end
    local kind = req.headers["x-handler"] or "ignore"
    seen.kind[id] = kind
    if kind == "whole" then
      req:body()
    elseif kind == "half" then
      local it, state = req:body_reader()
      it(state)
    elseif kind == "websocket" then
      local ws = req:upgrade_websocket(nil, { timeout = 0.2 })
      if ws then
        ws:close()
        return
      end
    elseif kind == "error" then
      seen.errors = seen.errors + 1
      error("steer-boom " .. id)
    end
    return 200, { ["Content-Type"] = "text/plain" }, id
  end
end

-- The responses in `s`: a list of { status, body, head } or nil, why.
-- The response to a HEAD has no body (a refusal of a head that could not
-- be parsed too: it began "HEAD "); parsing stops after a 101.
local function parse(s, head_first)
  local out, pos = {}, 1
  local finals = 0
  while pos <= #s do
    local st, e = s:match("^HTTP/1%.1 (%d%d%d) [^\r\n]*\r\n()", pos)
    if not st then
      return nil, ("no status line at byte %d: %q"):format(pos, s:sub(pos))
    end
    st = tonumber(st)
    local hend = s:find("\r\n\r\n", e - 2, true)
    if not hend then return nil, "an unterminated head" end
    local head = s:sub(e, hend + 1)
    for line in head:gmatch("([^\r\n]*)\r\n") do
      if not line:match("^[%w%-]+: [^\r\n]*$") then
        return nil, ("a bad header line %q"):format(line)
      end
    end
    pos = hend + 4
    local r = { status = st, head = head, body = "" }
    out[#out + 1] = r
    if st == 101 then r.rest = s:sub(pos) break end
    if st >= 200 then
      finals = finals + 1
      local cl = head:match("[Cc]ontent%-[Ll]ength: (%d+)\r\n")
      local chunked = head:lower():find("transfer%-encoding: chunked\r\n")
      local nobody = finals == 1 and head_first
      if chunked then
        local body = {}
        while not nobody or st ~= 200 do
          local n, ce = s:match("^(%x+)\r\n()", pos)
          if not n then return nil, "a bad chunk" end
          n = tonumber(n, 16)
          if n == 0 then pos = ce + 2 break end
          body[#body + 1] = s:sub(ce, ce + n - 1)
          pos = ce + n + 2
        end
        r.body = table.concat(body)
      elseif cl then
        cl = tonumber(cl)
        if nobody then cl = 0 end
        if pos + cl - 1 > #s then return nil, "a short body" end
        r.body = s:sub(pos, pos + cl - 1)
        pos = pos + cl
      elseif not nobody then
        return nil, "a response without framing"
      end
    end
  end
  return out
end

-- One exchange: connect (TLS if `tls`), send the case's bytes in one
-- write, read until the server ends the connection.
local function exchange(port, case, tls)
  local c = assert(green.connect("127.0.0.1", port, tls and { tls = tls }))
  c:settimeout(10)
  assert(c:send(case.data))
  local got, err, partial = c:receive("*a")
  c:close()
  return got or partial, err
end

local function describe_case(case)
  return ("%s: %q (handler %s)"):format(case.id, case.data, case.handler)
end

-- The invariants of one exchange: `resp` the bytes the client got, `seen`
-- the handlers' record.
local function check(case, resp, err, byid, tally)
  local what = describe_case(case)
  assert.are_not.equal("timeout", err, "the server never ended " .. what)
  local rs, why = parse(resp, case.method == "HEAD")
  assert(rs, (why or "") .. " in the answer to " .. what)
  local first = byid[case.id]
  local after = byid[case.id .. "-after"]
  local finals, closed = {}, false
  for i, r in ipairs(rs) do
    tally[r.status] = (tally[r.status] or 0) + 1
    assert.is_true(ALLOWED[r.status] or false,
                   ("status %d for %s"):format(r.status, what))
    assert.is_false(closed, "a response after a refusal or a 101 for "
                            .. what)
    if r.status == 100 then
      assert.are.equal("100-continue", case.expect, "a 100 for " .. what)
      assert.are.equal(0, #finals, "a 100 after the response for " .. what)
    elseif r.status == 101 then
      assert.are.equal("websocket", case.handler, "a 101 for " .. what)
      assert.are.equal(1, i - (rs[1].status == 100 and 1 or 0),
                       "a 101 not first for " .. what)
      closed = true
    else
      finals[#finals + 1] = r
      if r.status >= 400 then closed = true end
      if r.status == 500 then
        assert.are.equal("error", case.handler, "a 500 for " .. what)
      end
      if r.status == 200 then -- the handler's: whose, in order
        local want = #finals == 1 and case.id or case.id .. "-after"
        if not (#finals == 1 and case.method == "HEAD") then
          assert.are.equal(want, r.body, "the responses' order for " .. what)
        end
      end
    end
  end
  -- each response is a request's the handler saw, or a refusal
  local served = (first and 1 or 0) + (after and 1 or 0)
  assert.is_true(#finals <= 2, "more responses than requests for " .. what)
  if first and case.handler ~= "websocket" and case.handler ~= "error" then
    assert.is_true(#finals >= 1 and (finals[1].status == 200
                   or finals[1].status >= 400),
                   "a served request without its response: " .. what)
  end
  -- what the server must refuse before any handler: a head with an
  -- ambiguous or bad length, a version other than 1.x
  if case.refused or case.version == "0.9" or case.version == "2.0" then
    assert.is_nil(first, "the handler saw " .. what)
    assert.is_true(#finals == 1 and finals[1].status >= 400,
                   "not refused: " .. what)
  end
  if after then
    tally.after = (tally.after or 0) + 1
    -- only behind a request that was served and answered in full, and
    -- never where its bytes were the first one's body
    assert.is_truthy(first, "the follower served alone: " .. what)
    assert.are.equal("pipelined", case.after)
    assert.are_not.equal("cl-lying", case.framing,
                         "a body's bytes served as a request: " .. what)
    assert.are.equal(200, finals[1] and finals[1].status,
                     "a request served after a refusal: " .. what)
    -- nor behind one that asked for the connection's end
    assert.are_not.equal("close", case.conn,
                         "served after Connection: close: " .. what)
    assert.is_false(case.version == "1.0"
                    and not (case.conn or ""):find("keep%-alive"),
                    "served after an HTTP/1.0 request without keep-alive: "
                    .. what)
  end
  return served
end

local function run_cases(port, list, seen, tls, width)
  local byid, tally = {}, {}
  local i = 0
  local failure
  while i < #list do
    local batch = {}
    for k = 1, math.min(width, #list - i) do
      local case = list[i + k]
      batch[k] = green.spawn(function()
        local resp, err = exchange(port, case, tls)
        return resp, err
      end)
    end
    local results = {}
    for k, gt in ipairs(batch) do
      results[k] = table.pack(gt:wait())
    end
    -- the handlers' record of this batch, by case
    for _, s in ipairs(seen) do byid[s.id] = s end
    for k, res in ipairs(results) do
      local ok, e = pcall(check, list[i + k], res[1], res[2], byid,
                          tally)
      if not ok then
        failure = failure or e
        if os.getenv("STEER_ALL") then -- every failure, one line each
          local c = list[i + k]
          io.stderr:write(("FAIL %s %s %s conn=%s up=%s exp=%s h=%s "
            .. "after=%s: %s\n"):format(c.method, c.version, c.framing,
            tostring(c.conn), tostring(c.upgrade), tostring(c.expect),
            c.handler, c.after, tostring(e):match("^[^\n]*"):sub(1, 120)))
        end
      end
    end
    if failure and not os.getenv("STEER_ALL") then error(failure, 0) end
    i = i + #batch
  end
  if failure then error(failure, 0) end
  return tally
end

local OPTS = { max_header_size = 4096, max_body_size = 4096,
               header_timeout = 0.3, body_timeout = 0.3,
               keepalive_timeout = 0.1 }

-- Over TLS the client's request follows the handshake's last flight a
-- round trip later: under ASan on a loaded machine that can take longer
-- than OPTS' 0.1 s wait for a first byte (the server then closed the
-- connection unanswered). The wait is 1 s there.
local TLS_OPTS = {}
for k, v in pairs(OPTS) do TLS_OPTS[k] = v end
TLS_OPTS.keepalive_timeout = 1

local function sweep(list, tls_listen, tls_connect, width, expected)
  local reports = {}
  local old = green.on_error(function(_, err, _, what)
    reports[#reports + 1] = { err = tostring(err), what = what }
  end)
  local ok, e = pcall(function()
    local seen = { kind = {}, errors = 0 }
    local srv = assert(green.listen("127.0.0.1", 0, tls_listen))
    local _, port = srv:getsockname()
    local gt = green.spawn(green.http.serve, srv, make_handler(seen),
                           tls_listen and TLS_OPTS or OPTS)
    local tally = run_cases(port, list, seen, tls_connect, width)
    -- the sweep reached each outcome (not vacuous)
    for _, st in ipairs(expected) do
      assert.is_true((tally[st] or 0) > 0, "no " .. st .. " in the sweep")
    end
    assert.is_nil(seen.smuggled, "a request smuggled out of a body")
    -- still serving: a clean request
    local r = exchange(port, { data = "POST /clean HTTP/1.1\r\nHost: a\r\n"
      .. "X-Case: "
      .. "clean\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok" },
      tls_connect)
    assert.matches("^HTTP/1%.1 200 .*\r\n\r\nclean$", r)
    srv:close()
    gt:wait()
    -- the reporter saw the handlers' errors, and nothing else
    assert.is_true(seen.errors > 0)
    assert.are.equal(seen.errors, #reports)
    for _, rep in ipairs(reports) do
      assert.matches("steer%-boom", rep.err)
      assert.are.equal("http", rep.what)
    end
  end)
  green.on_error(old)
  if not ok then error(e, 0) end
end

describe("green.http.serve against a sweep of steering heads", function()
  -- the sweep's findings, each on its own
  -- `data` sent on a new connection to `port`: all the server answers
  -- until it closes the connection
  local function send_to(port, data)
    local got, err = h.raw_exchange(port, data)
    assert.are_not.equal("timeout", err, ("%q"):format(data))
    return got
  end

  -- fn(send, paths) with a server that records the paths it served;
  -- `inspect(req)`, if given, runs in its handler
  local function serve_paths(fn, inspect)
    green_run(function()
      local paths = {}
      local port, stop = h.http_serve(function(req)
        if req.headers["x-fail"] then error("steer-boom") end
        if inspect then inspect(req) end
        paths[#paths + 1] = req.path or req.method
        return 200, nil, "served " .. tostring(req.path)
      end, { keepalive_timeout = 0.1, body_timeout = 0.3 })
      fn(function(data) return send_to(port, data) end, paths)
      stop()
    end)
  end

  it("refuses an Upgrade request with a Transfer-Encoding other than"
     .. " chunked (its body was served as the next request)", function()
    serve_paths(function(send, paths)
      for _, conn in ipairs { "Upgrade", "keep-alive, Upgrade" } do
        local r = send("POST /p HTTP/1.1\r\nHost: a\r\n"
          .. "Transfer-Encoding: gzip\r\n"
          .. "Connection: " .. conn .. "\r\nUpgrade: websocket\r\n\r\n"
          .. HIDDEN)
        assert.matches("^HTTP/1%.1 400 ", r)
        assert.is_nil(r:find("hidden", 1, true))
      end
      assert.are.same({}, paths)
      -- the body of an Upgrade request that has one is read as a body
      local r = send("POST /p HTTP/1.1\r\nHost: a\r\n"
        .. "Transfer-Encoding: gzip, chunked"
        .. "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        .. ("%x\r\n"):format(NB) .. HIDDEN .. "\r\n0\r\n\r\n"
        .. "GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      assert.matches("served /p.*served /after$", r)
      assert.are.same({ "/p", "/after" }, paths)
    end)
  end)

  it("answers a HEAD it refuses, or whose handler fails, with a head"
     .. " alone (its refusals had a body)", function()
    serve_paths(function(send)
      local reports = 0
      local old = green.on_error(function(_, err)
        assert.matches("steer%-boom", tostring(err))
        reports = reports + 1
      end)
      for _, head in ipairs {
        "Expect: x-other\r\n", -- 417
        "Content-Length: 100000000\r\n", -- 413
        "X-Fail: 1\r\n", -- the handler fails: 500
      } do
        local r = send("HEAD /p HTTP/1.1\r\nHost: a\r\n" .. head .. "\r\n")
        assert.matches("^HTTP/1%.1 [45]%d%d ", r)
        assert.matches("\r\nContent%-Length: %d+\r\n", r)
        assert.matches("^[^\n]*\r\n.-\r\n\r\n$", r) -- nothing after
      end
      -- (and a GET's refusal has its body)
      local r = send("GET /p HTTP/1.1\r\nHost: a\r\nExpect: x-other\r\n\r\n")
      assert.matches("^HTTP/1%.1 417 .*\r\n\r\n417 Expectation Failed\n$",
                     r)
      green.on_error(old)
      assert.are.equal(1, reports)
    end)
  end)

  it("answers a head it cannot parse, or that times out, with a head"
     .. " alone if it began \"HEAD \" (its refusal had a body)", function()
    green_run(function()
      local port, stop = h.http_serve(function(req)
        return 200, nil, "served " .. tostring(req.path)
      end, { max_header_size = 1024, header_timeout = 0.2 })
      local function send(data) return send_to(port, data) end
      local long = ("x"):rep(2000)
      for _, case in ipairs {
        { "400", " /p HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n" },
        { "400", " /p HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n" },
        { "400", " /p HTTP/1.1\nHost: a\nTransfer-Encoding : chunked\n\n" },
        { "414", " /" .. long .. " HTTP/1.1\r\nHost: a\r\n\r\n" },
        { "431", " /p HTTP/1.1\r\nHost: a\r\nX: " .. long .. "\r\n\r\n" },
        { "408", " /p HTTP/1.1\r\nHost: a\r\nX: 1\r\n" }, -- and nothing more
      } do
        local st, rest = case[1], case[2]
        -- a HEAD's (after the empty lines a server skips before one;
        -- behind a pipelined request, whose response took the next head)
        local served = "HTTP/1%.1 200 OK\r\n.-\r\n\r\nserved /a"
        for _, lead in ipairs { "HEAD", "\r\nHEAD",
                                "GET /a HTTP/1.1\r\nHost: a\r\n\r\nHEAD" } do
          local r = send(lead .. rest)
          local first = lead:find("GET", 1, true) and served or ""
          assert.matches("^" .. first .. "HTTP/1%.1 " .. st .. " ", r, nil,
                         false, rest)
          assert.matches("\r\nContent%-Length: %d+\r\n", r)
          assert.matches("^" .. first .. "HTTP[^\n]*\r\n.-\r\n\r\n$", r,
                         nil, false, rest)
        end
        -- not a HEAD's: the refusal has its body (GET's the same status;
        -- HEADX and HEA are refused as bad methods)
        local r = send("GET" .. rest)
        assert.matches("^HTTP/1%.1 " .. st .. " .*\r\n\r\n" .. st
                       .. " [%a ]+\n$", r, nil, false, rest)
        for _, method in ipairs { "HEADX", "HEA" } do
          r = send(method .. rest)
          assert.matches("^HTTP/1%.1 400 .*\r\n\r\n400 Bad Request\n$", r,
                         nil, false, method .. rest)
        end
      end
      stop()
    end)
  end)

  it("refuses the request heads libhttp-parser's lax mode took: a control"
     .. " byte first in a value, a bare CR at the head's end, a version"
     .. " not HTTP/", function()
    serve_paths(function(send, paths)
      for _, head in ipairs {
        "GET /p HTTP/1.1\r\nHost: a\r\nX-A: \0\r\n"
          .. "\r\n", -- (a NUL to the handler)
        "GET /p HTTP/1.1\r\nHost: a\r\nX-A:\27[2J\r\n\r\n",
        "GET /p HTTP/1.1\r\nHost: a\r\nX-A: a\r\n \1\r\n\r\n", -- (folded)
        -- the byte after the CR was taken for the LF: "X" eaten
        "GET /p HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\rX",
        "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\rXok",
        "GET /p HXXP/1.1\r\nHost: a\r\n\r\n", -- (served as HTTP/1.1)
        "GET /p  HTTP/1.1\r\nHost: a\r\n\r\n",
      } do
        local r = send(head .. "GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        assert.matches("^HTTP/1%.1 400 [^\n]*\r\n.-\r\n\r\n400 Bad "
                       .. "Request\n$", r, nil, false, head)
      end
      assert.are.same({}, paths)
      -- what stays taken: an empty value, bare LF line ends, HTTP/0.9
      -- (a 505)
      local r = send("GET /e HTTP/1.1\r\nHost: a\r\nX-A:\r\nX-B: 1\r\n\r\n"
        .. "GET /lf HTTP/1.1\nHost: a\nX-A: 1\n\nGET /09\r\n\r\n")
      assert.matches("served /e.*served /lf.*505 HTTP Version Not "
                     .. "Supported\n$", r)
      assert.are.same({ "/e", "/lf" }, paths)
    end)
  end)

  it("refuses a folded header value (obs-fold), a fold of blanks too, as"
     .. " nginx does (the fold was unfolded; a fold of blanks was taken"
     .. " after Content-Length, refused after Transfer-Encoding)", function()
    serve_paths(function(send, paths)
      for _, fold in ipairs {
        "X-A: a\r\n b\r\n",
        "X-A: a\r\n\tb\r\n",
        "Host: h\r\n .evil\r\n", -- onto Host
        "Transfer-Encoding: gzip,\r\n chunked\r\n",
        "Transfer-Encoding: chunked\r\n \r\n",
        "Content-Length: 0\r\n \r\n",
        "Content-Length: 0\r\n\t\r\n",
        "X-A: a\n b\n", -- bare LF line ends
      } do
        local r = send("POST /fold HTTP/1.1\r\nHost: a\r\n" .. fold .. "\r\n"
                       .. "0\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        assert.matches("^HTTP/1%.1 400 [^\n]*\r\n.-\r\n\r\n400 Bad "
                       .. "Request\n$", r, nil, false, fold)
      end
      assert.are.same({}, paths)
      -- blanks that are a value's own (OWS) are not a fold
      local r = send("GET /ows HTTP/1.1\r\nHost: a\r\nX-A: \t a b \t\r\n"
                     .. "Connection: close\r\n\r\n")
      assert.matches("^HTTP/1%.1 200 .*served /ows$", r)
      assert.are.same({ "/ows" }, paths)
    end, function(req)
      assert.are.equal("a b", req.headers["x-a"])
    end)
  end)

  it("refuses a fold in a pipelined request after the ones served, not a"
     .. " body or trailer line that begins with SP or HTAB", function()
    serve_paths(function(send, paths)
      -- the 2nd request folded: the 1st served, the 3rd never read
      local r = send("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n"
                     .. "Host: a\r\nX-A: a\r\n"
                     .. " b\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
      assert.matches("^HTTP/1%.1 200 .-served /1HTTP/1%.1 400 ", r)
      assert.are.same({ "/1" }, paths)
      -- bodies whose first byte is SP or HTAB, a folded trailer (not a
      -- head: no field of it is taken), then the next request
      r = send("POST /sp HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n ab"
               .. "POST /tab HTTP/1.1\nHost: a\nContent-Length: 3\n\n\tab"
               .. "POST /tr HTTP/1.1\r\nHost: a\r\n"
               .. "Transfer-Encoding: chunked\r\n\r\n"
               .. "2\r\nab\r\n0\r\nT: a\r\n b\r\n \r\n\r\n"
               .. "GET /end HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      local _, n = r:gsub("HTTP/1%.1 200 ", "")
      assert.are.equal(4, n, r)
      assert.are.same({ "/1", "/sp", "/tab", "/tr", "/end" }, paths)
    end, function(req)
      if req.path ~= "/1" and req.path ~= "/end" then
        assert.are.equal(req.path == "/tab" and "\tab" or req.path == "/tr"
                         and "ab" or " ab", req:body())
      end
    end)
  end)

  it("refuses a CONNECT that announces a body (its body was served as the"
     .. " next request, and a Content-Length beyond the limit passed)",
     function()
    serve_paths(function(send, paths)
      for _, framing in ipairs {
        "Content-Length: " .. NB .. "\r\n",
        "Content-Length: 100000000\r\n",
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: chunked\r\n",
      } do
        local r = send("CONNECT h.example:443 HTTP/1.1\r\n"
                       .. "Host: h.example:443\r\n" .. framing
                       .. "\r\n" .. HIDDEN)
        assert.matches("^HTTP/1%.1 400 ", r)
        assert.is_nil(r:find("hidden", 1, true))
      end
      assert.are.same({}, paths)
      -- a CONNECT without a body reaches its handler
      local r = send("CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n"
                     .. "Content-Length: 0"
                     .. "\r\nConnection: close\r\n\r\n")
      assert.matches("^HTTP/1%.1 200 ", r)
      assert.are.equal(1, #paths)
    end)
  end)

  it("holds its invariants for every combination (plain)", function()
    local list = cases()
    assert.is_true(#list > 1000 and #list < 4000)
    green_run(function()
      sweep(list, nil, nil, 24, { 100, 101, 200, 400, 408, 413, 417, 500,
                                  505, "after" })
    end, 120)
  end)

  it("holds them over TLS too (a subset)", function()
    local all, list = cases(), {}
    for i = 1, #all, 9 do list[#list + 1] = all[i] end
    green_run(function()
      local p = function(name) return dir .. "/" .. name end
      sweep(list, { tls = { certificate = p("leaf.pem"),
                            key = p("leaf.key") } },
            { cafile = p("ca.pem") }, 16, { 101, 200, 400, 500, "after" })
    end, 120)
  end)
end)
