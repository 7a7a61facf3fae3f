--- green.http's client: request, get, post, and Client, a bounded pool
-- of keep-alive connections per host and port. Responses are parsed in C
-- by libhttp-parser from the socket's read buffer (bindings/http.c), URLs
-- by libhttp-parser's URL parser.
-- @module green.http.client

local core = require "green.core"
local common = require "green.http.common"
local semaphore = require "green.semaphore"
local gopts = require "green.opts"
local check = gopts.check
local callable = gopts.callable

local http_parser, http_head, http_body, http_parse_url, http_free =
  core.http_parser, core.http_head, core.http_body, core.http_parse_url,
  core.http_free
local Headers = common.Headers
local tls_head, tls_body = common.tls_head, common.tls_body
local check_header, lower_name = common.check_header, common.lower
local is_token = common.is_token
local now = core.now

local type, pairs, tostring, error, format, concat, setmetatable,
      getmetatable = type, pairs, tostring, error, string.format,
  table.concat, setmetatable, getmetatable
local upper = string.upper

local M = {}

local MAX_HEAD = 64 * 1024 -- a response head beyond this is refused
local MAX_HEADERS = 256

local Response = {}
Response.__index = Response
Response.__name = "green.http.Response"

-- {=== connections and their pools

local Client = {}
Client.__index = Client
Client.__name = "green.http.Client"

-- The pool of one host:port: a semaphore bounds the connections (in use
-- and idle), idle ones wait on a stack (the most recent first). Streamed
-- responses' leases are counted, and kept as weak keys (see reconcile).
local STREAMS_MT = { __mode = "k" }
local function pool_of(client, key)
  local p = client.pools[key]
  if not p then
    p = { sem = semaphore.Semaphore(client.max_per_host), idle = {},
          streams = setmetatable({}, STREAMS_MT), nstreams = 0 }
    client.pools[key] = p
  end
  return p
end

-- Give back the slots of streamed responses' leases that Lua freed
-- without their __gc (docs/internals.md, "When Lua skips a finalizer":
-- a collection step in a thread at its stack limit). A lease leaves
-- 'streams' when it ends, its __gc included; Lua removes a weak key only
-- when it frees the object, after its finalizer ran (a pending or
-- resurrected one keeps its entry). So a lease counted but no longer a
-- key is gone without its end: its slot is released here, its socket and
-- parser (boxes) given back by the box sweep. Runs where a take would
-- wait, and from the pool's watcher while takes wait: O(streamed
-- leases), never on the path of a free slot.
local function reconcile(p)
  local live = 0
  for _ in pairs(p.streams) do live = live + 1 end
  local lost = p.nstreams - live
  p.nstreams = live
  for _ = 1, lost do p.sem:release() end
end

-- While takes wait and streamed leases are out, a thread of the pool's
-- (its watcher) reconciles every this many seconds: Lua frees a lease
-- whose __gc it skipped only at a later collection, maybe while takes
-- wait (a lease made after they began to wait included). The slot it
-- gives back goes to the first take waiting: every take keeps its place
-- in the queue. Its tick does not keep the hub running (sleep_unref): a
-- program whose threads are all blocked for good ends (a main thread
-- blocked in a take gets its deadlock error) instead of ticking forever;
-- once no take waits, the watcher ends at its next tick. The takes
-- waiting are the semaphore's waiters, not a count of the pool's own: a
-- child of green.fork has none of its parent's, whose <close> never ran
-- there (a count kept at 1 made a watcher of the child's first streamed
-- response, which ticked as long as it was out, a finished child alive).
local RECONCILE_EVERY = 1

local watch
-- The watcher ended; killed while takes still wait (before it ran too: a
-- link runs then, a <close> in its function would not), another takes
-- its place (they would wait for a lost lease's slot until their
-- timeouts).
local function unwatch(w, p)
  if p.watcher == w then p.watcher = nil end
  if p.sem:waiting() > 0 then watch(p) end
end
-- (From a take about to wait, or for a lease made while takes wait.)
function watch(p)
  local w = p.watcher
  if w and not w:dead() or p.nstreams == 0 then return end
  w = core.spawn(function()
    while p.sem:waiting() > 0 and p.nstreams > 0 do
      core.sleep_unref(RECONCILE_EVERY)
      reconcile(p)
    end
  end)
  w.name = "green.http client: lost streamed responses"
  p.watcher = w
  w:link(unwatch, p)
end

-- A unit of pool `p` (true), or false once `timeout` seconds passed.
local function acquire(p, timeout)
  local sem = p.sem
  if sem:acquire(false) then return true end
  if p.nstreams > 0 then
    reconcile(p)
    if sem:acquire(false) then return true end
  end
  watch(p) -- (it runs once this take waits)
  return sem:acquire(true, timeout)
end

-- A connection fit to reuse: open, idle for less than idle_timeout, and
-- with nothing unexpected to read (a byte or the end of the stream the
-- server sent while it sat idle).
local function reusable(client, conn)
  if now() - conn.since > client.idle_timeout then return false end
  local sock = conn.sock
  if conn.tls then
    if not sock.conn or sock.conn:buffered() > 0 then return false end
    sock = sock:getsocket()
  end
  local r = core.select({ sock }, nil, 0)
  return r[1] == nil
end

-- The pool's unit of a connection being made: given back if the making
-- fails or is interrupted (a kill or Timeout raising out of connect).
local Unit = { __close = function(u)
  local sem = u.sem
  if sem then
    u.sem = nil
    sem:release()
  end
end }

-- The end of a connection: its socket closed and its parser's buffers
-- freed now (a parser's __gc is skipped when Lua collects it in a thread
-- at its stack limit; the parser stays usable, its buffers remade).
local function close_conn(conn)
  conn.sock:close()
  http_free(conn.parser)
end

-- Take a connection to `key` (host, port): an idle one, or a new one;
-- waits while max_per_host are in use.
local function take(client, u, timeout, topts)
  local p = pool_of(client, u.key)
  if not acquire(p, timeout) then return nil, "timeout" end
  local unit <close> = setmetatable({ sem = p.sem }, Unit)
  while #p.idle > 0 do
    local conn = p.idle[#p.idle]
    p.idle[#p.idle] = nil
    if reusable(client, conn) then
      unit.sem = nil
      conn.reused = true
      return conn
    end
    close_conn(conn)
  end
  local sock, err
  if u.tls then
    -- misuse (a bad TLS option) raises, the unit given back
    sock, err = require("green.tls").connect(u.host, u.port,
      { timeout = timeout, tls = topts or {} })
    if not sock then err = "https://" .. u.hostheader .. ": " .. err end
  else
    sock, err = core.connect(u.host, u.port, { timeout = timeout })
    -- no Nagle: a request's body or a later request written after the
    -- head would wait for the server's delayed ACK (40 ms)
    if sock then sock:setoption("tcp-nodelay", true) end
  end
  if not sock then return nil, err end
  unit.sem = nil
  return { sock = sock, pool = p, reused = false, tls = u.tls,
           parser = http_parser("response", MAX_HEAD, MAX_HEADERS,
                                math.huge, Response, Headers) }
end

-- Bytes beyond the response just read: the stream is out of step (a
-- Content-Length that lied short, a body after HEAD, 204 or 304).
local function leftover(conn)
  local sock = conn.sock
  if conn.tls then
    return not sock.conn or sock.conn:buffered() > 0
  end
  return sock:dirty()
end

-- Done with a connection: back to its pool's idle stack (`keep`, and
-- nothing beyond the response buffered), or closed.
local function give(conn, keep)
  if conn.given then return end
  conn.given = true
  local p = conn.pool
  if keep and not leftover(conn) then
    conn.since = now()
    conn.given = false
    p.idle[#p.idle + 1] = conn
  else
    close_conn(conn)
  end
  p.sem:release()
end

-- A lease on a connection in use: closing it (a <close> variable left by
-- an error, a kill or a Timeout) closes the connection and gives its unit
-- back, unless the lease was cleared (the connection passed on). A
-- streamed response's lease is collected too (a response dropped
-- unread): its __gc does the same, and if Lua skips that, the pool's
-- reconcile gives the unit back. (A __close is not skipped: Lua calls it
-- once the error's frames are gone, off the stack's limit.)

-- The connection of lease `l`, which lets go of it (nil if it had none).
local function unlease(l)
  local conn = l.conn
  if conn then
    l.conn = nil
    if l.streamed then
      local p = conn.pool
      p.streams[l] = nil
      p.nstreams = p.nstreams - 1
    end
  end
  return conn
end

local function end_lease(l)
  local conn = unlease(l)
  if conn then give(conn, false) end
end

-- A streamed response's lease collected. Lua may also cut a finalizer
-- short: one that starts in the stack space Lua keeps for errors fails
-- at its first call that needs more. So the unit goes back first, and
-- the lease leaves the count with no call in between: either both
-- happened, or neither did and reconcile gives the unit back.
local function collect_lease(l)
  local conn = l.conn
  if not conn then return end
  local p = conn.pool
  p.sem:release()
  p.streams[l] = nil
  p.nstreams = p.nstreams - 1
  l.conn = nil
  close_conn(conn)
end
local Lease = { __close = end_lease }
local StreamLease = { __close = end_lease, __gc = collect_lease }

-- A streamed response's lease on `conn`, counted by its pool.
local function stream_lease(conn)
  local l = setmetatable({ conn = conn, streamed = true }, StreamLease)
  local p = conn.pool
  p.streams[l] = true
  p.nstreams = p.nstreams + 1
  if p.sem:waiting() > 0 then watch(p) end
  return l
end

-- }===

-- {=== requests

-- Connections made with different TLS options are pooled apart.
local function tls_key(t)
  if not t then return "" end
  local ks = {}
  for k, v in pairs(t) do
    if type(v) ~= "table" then
      ks[#ks + 1] = tostring(k) .. "=" .. tostring(v)
    end
  end
  table.sort(ks)
  return "\0" .. concat(ks, "\0")
end

local function parse_url(url)
  if type(url) ~= "string" then return nil, "bad URL" end
  local u = http_parse_url(url)
  if not u or not u.host then return nil, common.invalid_url(url) end
  local scheme = (u.scheme or "http"):lower()
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "unsupported URL scheme: " .. scheme
  end
  local tls = scheme == "https"
  local host = u.host
  local defport = tls and 443 or 80
  local port = u.port or defport
  local target = (u.path or "/") .. (u.query and ("?" .. u.query) or "")
  local hosthdr = host:find(":", 1, true) and ("[" .. host .. "]") or host
  if port ~= defport then hosthdr = hosthdr .. ":" .. port end
  return { host = host, port = port, target = target, hostheader = hosthdr,
           scheme = scheme, tls = tls,
           key = scheme .. "\0" .. host .. "\0" .. port }
end

-- The request head, how the body goes: "length" (a string), "chunked"
-- (a function yielding pieces), the caller's Content-Length (a number: a
-- function's pieces sent as they are, adding up to it) or nil, and
-- whether it asks for an Upgrade (an Upgrade header: a 101 answers only
-- that).
local function request_head(method, u, headers, body)
  local t = { method, " ", u.target, " HTTP/1.1\r\n" }
  local n = #t
  local has = {}
  local length -- the caller's Content-Length (a number)
  if headers then
    for k, v in pairs(headers) do
      local lk = lower_name(k)
      has[lk] = true
      local vs = type(v) == "table" and v or { v }
      if lk == "transfer-encoding" then
        vs = {} -- the client chooses the framing, as the server does
      elseif lk == "content-length" then
        -- (digits: tonumber takes "0x10" and "1e1", a server does not)
        local digits = #vs == 1
          and tostring(vs[1]):match("^[ \t]*(%d+)[ \t]*$")
        length = digits and #digits < 16 and tonumber(digits)
        if not length then
          error("green.http: bad Content-Length (one non-negative "
                .. "integer expected)", 0)
        end
      end
      for i = 1, #vs do
        local vi = tostring(vs[i])
        check_header(k, vi)
        t[n + 1], t[n + 2], t[n + 3], t[n + 4] = k, ": ", vi, "\r\n"
        n = n + 4
      end
    end
  end
  -- a Content-Length that is not the body's would send the rest of the
  -- body as the next request, or take the next request for the body
  if length and not callable(body) and length ~= #(body or "") then
    error(format("green.http: Content-Length %d but the body is %d "
                 .. "bytes", length, #(body or "")), 0)
  end
  if not has.host then
    t[n + 1] = "Host: " .. u.hostheader .. "\r\n"
    n = n + 1
  end
  if not has["user-agent"] then
    t[n + 1] = "User-Agent: greenlua/" .. core.version .. "\r\n"
    n = n + 1
  end
  local how
  if type(body) == "string" then
    if not has["content-length"] then
      t[n + 1] = "Content-Length: " .. #body .. "\r\n"
      n = n + 1
    end
    how = "length"
  elseif callable(body) then
    if not has["content-length"] then
      t[n + 1] = "Transfer-Encoding: chunked\r\n"
      n = n + 1
      how = "chunked"
    else
      how = length -- its pieces must add up to it
    end
  elseif body ~= nil then
    error("green.http: body must be a string, a function or nil", 0)
  end
  t[n + 1] = "\r\n"
  return concat(t, "", 1, n + 1), how, has.upgrade
end

-- Send the request on `conn`; nil, err on failure.
local function send_request(conn, head, how, body)
  local sock = conn.sock
  local ok, err
  if how == "length" then
    ok, err = sock:sendall(head .. body)
    if not ok then return nil, err end
    return true
  end
  ok, err = sock:sendall(head)
  if not ok then return nil, err end
  if how then
    local left = how ~= "chunked" and how -- the caller's Content-Length
    while true do
      local piece = body()
      if piece == nil then break end
      if type(piece) ~= "string" then
        error("green.http: the body function must yield strings", 0)
      end
      if left then
        left = left - #piece
        if left < 0 then
          error("green.http: the body function gave more than its "
                .. "Content-Length", 0)
        end
      end
      if #piece > 0 then
        if how == "chunked" then
          piece = format("%x\r\n", #piece) .. piece .. "\r\n"
        end
        ok, err = sock:sendall(piece)
        if not ok then return nil, err end
      end
    end
    if how == "chunked" then
      ok, err = sock:sendall("0\r\n\r\n")
      if not ok then return nil, err end
    elseif left > 0 then
      error("green.http: the body function gave less than its "
            .. "Content-Length", 0)
    end
  end
  return true
end

local BODY_ERRORS = { [400] = "bad response", [413] = "too large" }

-- An error status of the parser as the client's error string.
local function bad(status)
  return BODY_ERRORS[status] or ("bad response (" .. status .. ")")
end

-- The next piece of a streamed body; nil at its end (the connection goes
-- back to the pool), nil, err on failure (it is closed).
local function next_piece(resp)
  local lease = resp._lease
  local conn = lease and lease.conn
  if not conn then return nil end
  local piece, err
  if conn.tls then
    piece, err = tls_body(conn.sock, conn.parser, resp._timeout)
  else
    piece, err = http_body(conn.sock, conn.parser, resp._timeout)
  end
  if piece then
    resp._got = resp._got + #piece
    if resp._got > resp._max then
      give(unlease(lease), false)
      return nil, "too large"
    end
    return piece
  end
  unlease(lease)
  if piece == false then
    give(conn, resp._keep)
    return nil
  end
  give(conn, false)
  return nil, type(err) == "number" and bad(err) or err
end

--- resp:body_reader(): an iterator over the pieces of a streamed body.
function Response:body_reader()
  return next_piece, self
end

--- resp:close(): give up the rest of a streamed body (closes the
-- connection rather than reading it).
function Response:close()
  local lease = self._lease
  if lease then end_lease(lease) end
end
-- `local resp <close> = client:request{ stream = true, ... }` gives the
-- connection back when the variable goes out of scope, however
Response.__close = Response.close

local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true,
                   [308] = true }

-- Methods a request may be sent again with (RFC 9110 9.2.2), when a
-- reused connection was lost before any byte of its response.
local IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, TRACE = true,
                     PUT = true, DELETE = true }

-- Interim (1xx) responses skipped before the real one, at most: a server
-- sending them forever would hold the request forever.
local MAX_INTERIM = 10

-- One exchange on one connection (no redirects). Returns resp, or nil,
-- err, retry (retry: a reused connection failed before any byte of
-- response: the request may be sent again on a new one).
local function exchange(client, o, u, method, head, how, upgrade)
  local timeout = o.timeout
  local conn, err = take(client, u, timeout, o.tls or client.tls)
  if not conn then return nil, err end
  -- from here a kill, a Timeout or an error closes the connection
  local lease <close> = setmetatable({ conn = conn }, Lease)
  conn.sock:settimeout(timeout)
  local ok
  ok, err = send_request(conn, head, how, o.body)
  if not ok then return nil, err, conn.reused end
  local resp, kind, keep
  local interim = 0
  repeat -- 1xx responses (100 Continue, 103) come before the real one
    resp, kind, keep = (conn.tls and tls_head or http_head)(
      conn.sock, conn.parser, true, timeout, timeout, method == "HEAD")
    if resp and resp.status >= 100 and resp.status < 200
       and resp.status ~= 101 then
      interim = interim + 1
      if interim > MAX_INTERIM then
        return nil, "bad response (too many 1xx responses)"
      end
      resp = true
    end
  until resp ~= true
  if not resp then
    if type(kind) == "number" then return nil, bad(kind) end
    -- nothing of a response came: the server closed (or reset) the
    -- connection it had kept as the request came
    return nil, kind, conn.reused and not keep
      and (kind == "closed" or kind == "connection reset by peer")
  end
  if resp.status < 100 then return nil, "bad response" end
  -- the connection speaks another protocol (or is a tunnel) from the end
  -- of this head: unasked for, a 101 is the server's error (RFC 9110
  -- 15.2.2), and a 2xx to CONNECT has no HTTP after it to read (RFC 9112
  -- 6.3); either way nothing more is read from it, it is closed
  if resp.status == 101 and not upgrade
     or method == "CONNECT" and resp.status // 100 == 2 then
    return nil, "bad response"
  end
  -- 101 asked for: the head is the answer; the connection is not reused
  if resp.status == 101 then keep = false end
  lease.conn = nil -- the response's now
  local rl = o.stream and kind ~= 0 and stream_lease(conn)
    or setmetatable({ conn = conn }, Lease)
  resp._lease, resp._keep, resp._timeout = rl, keep, timeout
  resp._got, resp._max = 0, o.max_body_size or math.huge
  if kind == 0 then
    rl.conn = nil
    give(conn, keep)
    if not o.stream then resp.body = "" end
    return resp
  end
  if o.stream then return resp end
  local _ <close> = rl -- a kill while the body is read closes it
  local parts, n = {}, 0
  while true do
    local piece, perr = next_piece(resp)
    if not piece then
      if perr then return nil, perr end
      break
    end
    n = n + 1
    parts[n] = piece
  end
  resp.body = concat(parts, "", 1, n)
  return resp
end

-- RFC 3986 5.2.4: a path without its "." and ".." segments.
local function remove_dots(path)
  local out = {}
  for seg in (path .. "/"):gmatch("([^/]*)/") do out[#out + 1] = seg end
  local last = path:match("[^/]*$")
  out[#out] = nil
  out[#out + 1] = last
  local res = {}
  for i, seg in ipairs(out) do
    if seg == ".." then
      if #res > 1 then res[#res] = nil end
      if i == #out then res[#res + 1] = "" end
    elseif seg == "." then
      if i == #out then res[#res + 1] = "" end
    else
      res[#res + 1] = seg
    end
  end
  local r = concat(res, "/")
  if r:sub(1, 1) ~= "/" then r = "/" .. r end
  return r
end

-- A Location resolved against the URL `u` it answered (RFC 3986 5.2).
local function resolve(u, loc)
  loc = loc:gsub("#.*$", "")
  if loc:match("^%a[%w+.-]*:") then return loc end
  local origin = u.scheme .. "://" .. u.hostheader
  if loc:sub(1, 2) == "//" then return u.scheme .. ":" .. loc end
  local path = u.target:match("^[^?]*")
  if loc == "" then return origin .. u.target end
  if loc:sub(1, 1) == "?" then return origin .. path .. loc end
  local lpath, lquery = loc:match("^([^?]*)(.*)$")
  if lpath:sub(1, 1) ~= "/" then
    lpath = path:gsub("[^/]*$", "") .. lpath
  end
  return origin .. remove_dots(lpath) .. lquery
end

-- Headers a redirect to another origin (scheme, host or port) drops:
-- credentials stay with the server they were meant for, and the Host
-- named the old one.
local ORIGIN_BOUND = { authorization = true, cookie = true,
                       ["proxy-authorization"] = true, host = true }
-- Headers that describe a body, dropped with it (303, and 301/302 after
-- a POST).
local BODY_HEADERS = { ["content-length"] = true, ["content-type"] = true,
                       ["transfer-encoding"] = true }

local function without(headers, drop)
  if not headers then return nil end
  local t = {}
  for k, v in pairs(headers) do
    if not (type(k) == "string" and drop[lower_name(k)]) then t[k] = v end
  end
  return t
end

local REQUEST_OPTS = { method = true, url = true, headers = true,
                       body = true, timeout = true, max_body_size = true,
                       redirects = true, stream = true, tls = true }

-- client:request's work. The options are argument `argn`: #2 of
-- client:request (self is #1), #1 of green.http.request. Called in tail
-- position, so an error's level 2 is their caller's line.
local function request(self, o, argn)
  if type(o) ~= "table" then
    error(format("bad argument #%d to 'request' (table expected)", argn), 2)
  end
  check(o, REQUEST_OPTS, argn, "request", 2)
  if o.timeout ~= nil and (type(o.timeout) ~= "number" or o.timeout < 0
                           or o.timeout ~= o.timeout) then
    error(format("bad argument #%d to 'request' (timeout: non-negative "
                 .. "number expected)", argn), 2)
  end
  if o.tls ~= nil then gopts.check_tls(o.tls, argn, "request", 2) end
  if o.method ~= nil and not is_token(o.method) then
    -- (it begins the request line: a space or CRLF would split it)
    error(format("bad argument #%d to 'request' (method: token expected, "
                 .. "got %q)", argn, tostring(o.method)), 2)
  end
  local method = upper(o.method or (o.body ~= nil and "POST" or "GET"))
  local url = o.url
  local redirects = o.redirects or 5
  local copied = false
  local function set(k, v) -- o, copied once: the caller's stays as it is
    if not copied then
      local copy = {}
      for ck, cv in pairs(o) do copy[ck] = cv end
      o, copied = copy, true
    end
    o[k] = v
  end
  while true do
    local u, err = parse_url(url)
    if not u then return nil, err end
    if u.tls then u.key = u.key .. tls_key(o.tls or self.tls) end
    local head, how, upgrade = request_head(method, u, o.headers, o.body)
    local resp, retry
    resp, err, retry = exchange(self, o, u, method, head, how, upgrade)
    if not resp and retry and (how == nil or how == "length")
       and IDEMPOTENT[method] then
      -- a fresh one
      resp, err = exchange(self, o, u, method, head, how, upgrade)
    end
    if not resp then return nil, err end
    local loc = resp.headers.location
    if type(loc) == "table" then loc = loc[1] end
    if not (REDIRECT[resp.status] and loc and redirects > 0) then
      return resp
    end
    local to_get = resp.status == 303 and method ~= "HEAD"
      or ((resp.status == 301 or resp.status == 302) and method == "POST")
    -- a body read from a function cannot be sent again: the redirect
    -- is the answer
    if not to_get and callable(o.body) then return resp end
    resp:close()
    redirects = redirects - 1
    url = resolve(u, loc)
    local nu = parse_url(url)
    if nu and (nu.scheme ~= u.scheme or nu.host ~= u.host
               or nu.port ~= u.port) then
      set("headers", without(o.headers, ORIGIN_BOUND))
    end
    if to_get then
      method = "GET"
      set("body", nil)
      set("headers", without(o.headers, BODY_HEADERS))
    end
  end
end

--- client:request{method, url, headers, body, timeout, max_body_size,
-- redirects = 5, stream = false} → resp, or nil, err.
function Client:request(o)
  if getmetatable(self) ~= Client then
    error("bad argument #1 to 'request' (green.http.Client expected)", 2)
  end
  return request(self, o, 2)
end

--- client:get(url, [headers]) → resp, or nil, err.
function Client:get(url, headers)
  return self:request { url = url, headers = headers }
end

--- client:post(url, body, [headers]) → resp, or nil, err.
function Client:post(url, body, headers)
  return self:request { method = "POST", url = url, body = body,
                        headers = headers }
end

--- client:close(): close the idle connections.
function Client:close()
  for _, p in pairs(self.pools) do
    for i = #p.idle, 1, -1 do
      close_conn(p.idle[i])
      p.idle[i] = nil
    end
  end
end

local CLIENT_OPTS = { max_per_host = true, idle_timeout = true, tls = true }

--- green.http.Client{max_per_host = 10, idle_timeout = 60, tls = {...}}.
function M.Client(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'Client' (table expected)", 2)
  end
  opts = check(opts or {}, CLIENT_OPTS, 1, "Client", 2)
  local mph = opts.max_per_host or 10
  local idle = opts.idle_timeout or 60
  if math.type(mph) ~= "integer" or mph < 1 then
    error("bad argument #1 to 'Client' (max_per_host: positive integer "
          .. "expected)", 2)
  end
  if type(idle) ~= "number" or idle < 0 or idle ~= idle then
    error("bad argument #1 to 'Client' (idle_timeout: non-negative "
          .. "number expected)", 2)
  end
  if opts.tls ~= nil then
    gopts.check_tls(opts.tls, 1, "Client", 2)
  end
  return setmetatable({ max_per_host = mph, idle_timeout = idle,
                        tls = opts.tls, pools = {} }, Client)
end

local default
local function default_client()
  default = default or M.Client()
  return default
end

function M.request(o)
  return request(default_client(), o, 1)
end

function M.get(url, headers)
  return default_client():get(url, headers)
end

function M.post(url, body, headers)
  return default_client():post(url, body, headers)
end

return M
