--- green.http's WebSocket (RFC 6455): the server's
-- req:upgrade_websocket([protocols], [opts]) and the client's
-- green.http.websocket(url, [opts]). Framing by libwslay, the handshake's
-- SHA-1 by OpenSSL (bindings/ws.c).
-- @module green.http.ws

local core = require "green.core"
local common = require "green.http.common"
local Semaphore = require("green.semaphore").Semaphore
local Event = require("green.event").Event
local gopts = require "green.opts"
local check = gopts.check

local ws_new, ws_receive, ws_send, ws_close, ws_state, ws_accept_key,
      ws_key = core.ws_new, core.ws_receive, core.ws_send, core.ws_close,
  core.ws_state, core.ws_accept_key, core.ws_key
local has_token = common.has_token
local utf8_len = utf8.len
local ws_receive_tls, is_tls = core.ws_receive_tls, common.is_tls
local now = core.now

local type, error, concat, setmetatable, tostring, format, ipairs, pairs =
  type, error, table.concat, setmetatable, tostring, string.format, ipairs,
  pairs

local M = {}

local DEFAULT_MAX = 16 << 20 -- max_message_size

local WebSocket = {}
WebSocket.__index = WebSocket
WebSocket.__name = "green.http.WebSocket"

-- The end of the connection: closed for good, and whoever waits for it
-- (a close() while another thread reads) is told.
local function finish(self)
  self.closed = true
  self.sock:close()
  local ev = self.ended
  if ev and not ev:ready() then ev:send() end
end

-- Writes are one at a time (a reader's pong or close reply, a writer's
-- message, a close), so that frames are never spliced into each other; a
-- write that stops partway (a kill or a Timeout raising out of sendall,
-- or a failure after some of it went out) leaves the stream mid-frame,
-- so it ends the connection: the peer sees the end of the stream, never
-- a broken frame followed by another. Closing `wguard` (a <close>
-- variable; made once per WebSocket) releases the lock.
local WriteGuard = { __close = function(g)
  local self = g.ws
  if g.busy then -- left sendall by an error, a kill or a Timeout
    g.busy = false
    finish(self)
  end
  self.wlock:release()
end }

-- Reads in progress (so that close() does not read beside them); the
-- guard's close ends one, however it ends.
local ReadGuard = { __close = function(g)
  g.ws.reading = g.ws.reading - 1
end }

local function new(sock, server, opts)
  local max = opts and opts.max_message_size or DEFAULT_MAX -- (checked)
  local self = setmetatable({ sock = sock, ctx = ws_new(server, max),
                              timeout = opts and opts.timeout,
                              tls = is_tls(sock), wlock = Semaphore(1),
                              reading = 0 }, WebSocket)
  self.wguard = setmetatable({ ws = self, busy = false }, WriteGuard)
  self.rguard = setmetatable({ ws = self }, ReadGuard)
  return self
end

-- Send framed bytes: true, or nil, err.
local function write(self, data)
  if not data then return nil, "closed" end
  if self.closed then return nil, "closed" end
  if not self.wlock:acquire(true, self.timeout) then
    return nil, "timeout"
  end
  local g <close> = self.wguard
  if self.closed then return nil, "closed" end
  g.busy = true
  local ok, err, last = self.sock:sendall(data)
  g.busy = false
  if ok then return true end
  -- nothing of it went out (a timeout before the first byte): the
  -- stream is whole and the WebSocket usable
  if err ~= "timeout" or last ~= 0 then finish(self) end
  return nil, err
end

local CLOSED = 1006

-- As ws_receive over a TLS socket: the parser reads its plaintext buffer
-- in place and never waits; filling it is the TLS socket's wait.
local function receive_tls(sock, ctx, timeout)
  local conn = sock.conn
  if not conn then return nil, "closed", CLOSED, "" end
  local due = timeout and timeout >= 0 and now() + timeout or nil
  local closed
  while true do
    local a, b, c, d = ws_receive_tls(conn, ctx)
    if a ~= true then return a, b, c, d end
    if closed then return nil, "closed", CLOSED, closed end
    local left = due and due - now()
    local ok, err = sock:fill(left and (left > 0 and left or 0) or -1)
    if sock.conn ~= conn then return nil, "closed", CLOSED, "" end
    if not ok then
      if err == "timeout" then return nil, "timeout" end
      closed = err -- once more: the end of the stream ends it
    end
  end
end

-- The next message within `timeout` seconds (nil: none), the pongs and
-- close replies sent on the way; the timeout bounds the whole call, so
-- a peer that sends pings (or empty fragments) forever cannot hold it.
local function recv(self, timeout)
  local sock, ctx = self.sock, self.ctx
  local due = timeout and now() + timeout
  self.reading = self.reading + 1
  local _ <close> = self.rguard
  while true do
    local left = due and due - now()
    if left and left < 0 then left = 0 end
    local a, b, c, d
    if self.tls then
      a, b, c, d = receive_tls(sock, ctx, left)
    else
      a, b, c, d = ws_receive(sock, ctx, left)
    end
    if a ~= false then
      if a == nil and b == "closed" then finish(self) end
      return a, b, c, d
    end
    local ok, err = write(self, b) -- a pong, a close reply
    if not ok then
      finish(self)
      return nil, "closed", CLOSED, err
    end
    if due and now() >= due then return nil, "timeout" end
  end
end

--- ws:receive() → message, "text"|"binary"; or nil, "closed", code,
-- reason; or nil, "timeout". Pings are answered on the way.
function WebSocket:receive()
  return recv(self, self.timeout)
end

--- ws:send(data, ["text"|"binary"]) → true, or nil, err.
function WebSocket:send(data, kind)
  if type(data) ~= "string" then
    error("bad argument #1 to 'send' (string expected)", 2)
  end
  kind = kind or "text"
  if kind ~= "text" and kind ~= "binary" then
    error("bad argument #2 to 'send' ('text' or 'binary' expected)", 2)
  end
  -- (a peer fails the connection, 1007, on a text that is not UTF-8)
  if kind == "text" and not utf8_len(data) then
    error("bad argument #1 to 'send' (a text message must be UTF-8: send "
          .. "it as binary)", 2)
  end
  if self.closed then return nil, "closed" end
  return write(self, ws_send(self.ctx, kind, data))
end

--- ws:ping([data]) → true, or nil, err (the pong is not returned).
function WebSocket:ping(data)
  if self.closed then return nil, "closed" end
  return write(self, ws_send(self.ctx, "ping", data or ""))
end

--- ws:close([code=1000], [reason]): send a close frame, wait (up to the
-- timeout, 5 s by default) for the peer's, then close the socket.
-- Returns true.
function WebSocket:close(code, reason)
  if self.closed then return true end
  if type(reason) == "string" and not utf8_len(reason) then
    error("bad argument #2 to 'close' (a close reason must be UTF-8)", 2)
  end
  local data = ws_close(self.ctx, code, reason)
  if #data > 0 then write(self, data) end
  if self.closed then return true end
  if not ws_state(self.ctx) then -- the peer's close is still to come
    local t = self.timeout or 5
    if self.reading > 0 then
      -- another thread reads: it sees the peer's close, or the end
      local ev = self.ended or Event()
      self.ended = ev
      ev:wait(t)
    else
      local due = now() + t
      repeat
        local left = due - now()
        local m, err = recv(self, left > 0 and left or 0)
      until not m and err ~= nil
    end
  end
  finish(self)
  return true
end

--- ws:settimeout(t): seconds for receive (and sends), nil for none; a
-- negative value is 0 (the toolkit's rule), NaN raises.
function WebSocket:settimeout(t)
  if t ~= nil and (type(t) ~= "number" or t ~= t) then
    error("bad argument #1 to 'settimeout' (number of seconds expected, got "
          .. (t ~= t and "NaN" or type(t)) .. ")", 2)
  end
  if t and t < 0 then t = 0 end
  self.timeout = t
  self.sock:settimeout(t)
  return 1
end

-- A list of subprotocols (a string or a list of them), each checked to
-- be a token (RFC 6455 4.1): misuse raises.
local function protocol_list(protocols, what)
  local list = type(protocols) == "table" and protocols or { protocols }
  for _, p in ipairs(list) do
    if not common.is_token(p) then
      error(format("%s (protocols: bad subprotocol %q)", what,
                   tostring(p)), 3)
    end
  end
  return list
end

-- Choose the subprotocol: the first of ours the client offered.
local function choose(protocols, offered)
  if not protocols then return nil end
  local list = protocol_list(protocols, "bad argument #1 to "
                             .. "'upgrade_websocket'")
  if not offered then return nil end
  if type(offered) == "table" then offered = concat(offered, ",") end
  for _, p in ipairs(list) do
    if has_token(offered, p:lower()) then return p end
  end
  return nil
end

local ACCEPT_OPTS = { max_message_size = true, timeout = true }

-- The options' values, before any byte of the handshake goes out (a
-- bad one raised after it, the peer upgraded; and a NaN limit was none):
-- max_message_size a positive number, timeout a number (NaN refused).
local function check_values(opts, fname)
  local max, t = opts.max_message_size, opts.timeout
  if max ~= nil and (type(max) ~= "number" or max ~= max or max <= 0) then
    error(format("bad argument #2 to '%s' (max_message_size: positive "
                 .. "number expected, got %s)", fname,
                 max ~= max and "NaN" or type(max) == "number"
                 and tostring(max) or type(max)), 3)
  end
  if t ~= nil and (type(t) ~= "number" or t ~= t) then
    error(format("bad argument #2 to '%s' (timeout: number of seconds "
                 .. "expected, got %s)", fname,
                 t ~= t and "NaN" or type(t)), 3)
  end
end
local CONNECT_OPTS = { protocols = true, headers = true, timeout = true,
                       max_message_size = true, tls = true }

--- req:upgrade_websocket([protocols], [opts]) → ws, or nil, err for a
-- request that is not a valid upgrade (the handler answers it then).
function M.accept(req, protocols, opts)
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("bad argument #2 to 'upgrade_websocket' (table expected, got "
            .. type(opts) .. ")", 2)
    end
    check(opts, ACCEPT_OPTS, 2, "upgrade_websocket", 2)
    check_values(opts, "upgrade_websocket")
  end
  local c = req.conn
  local hs = req.headers
  if req.method ~= "GET" or req.version ~= "1.1"
     or not has_token(hs.upgrade, "websocket")
     or not has_token(hs.connection, "upgrade") then
    return nil, "not a WebSocket upgrade request"
  end
  -- a body would be read as frames after the switch
  if (hs["content-length"] and hs["content-length"] ~= "0")
     or hs["transfer-encoding"] then
    return nil, "a WebSocket upgrade request with a body"
  end
  local key = hs["sec-websocket-key"]
  if hs["sec-websocket-version"] ~= "13" then
    return nil, "unsupported WebSocket version"
  end
  if type(key) ~= "string" or #key ~= 24 or not key:match("^[%w+/]+==$") then
    return nil, "bad Sec-WebSocket-Key"
  end
  if c.upgraded then error("green.http: already upgraded", 2) end
  local proto = choose(protocols, hs["sec-websocket-protocol"])
  local resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    .. "Connection: Upgrade\r\nSec-WebSocket-Accept: " .. ws_accept_key(key)
    .. "\r\n" .. (proto and ("Sec-WebSocket-Protocol: " .. proto .. "\r\n")
                  or "") .. "\r\n"
  c.upgraded = true
  local pending = core.http_output(c.parser) -- pipelined responses first
  if pending then resp = pending .. resp end
  local ok, err = c.sock:sendall(resp)
  if not ok then return nil, err end
  local ws = new(c.sock, true, opts)
  ws.protocol = proto
  return ws
end

-- A socket closed when the variable holding this goes out of scope,
-- unless taken (sock set to nil).
local Owned = { __close = function(o)
  if o.sock then o.sock:close() end
end }

-- What is wrong with a server's 101 (RFC 6455 4.1, the client's checks):
-- nil if nothing.
local function bad_101(hs, key, offered)
  if not has_token(hs.upgrade, "websocket") then
    return "no Upgrade: websocket"
  elseif not has_token(hs.connection, "upgrade") then
    return "no Connection: Upgrade"
  elseif hs["sec-websocket-accept"] ~= ws_accept_key(key) then
    return "wrong Sec-WebSocket-Accept"
  elseif hs["sec-websocket-extensions"] ~= nil then
    return "an extension was not offered" -- none is
  end
  local proto = hs["sec-websocket-protocol"]
  if proto ~= nil then
    local found = false
    for _, p in ipairs(offered or {}) do
      if p == proto then found = true end
    end
    if not found then
      return "subprotocol " .. format("%q", tostring(
        type(proto) == "table" and concat(proto, ", ") or proto))
        .. " was not offered"
    end
  end
  return nil
end

-- The headers the client's handshake sets itself.
local HANDSHAKE = { upgrade = true, connection = true,
                    ["sec-websocket-key"] = true,
                    ["sec-websocket-version"] = true,
                    ["sec-websocket-protocol"] = true }

--- green.http.websocket(url, [opts]) → ws, or nil, err. opts: headers,
-- protocols, timeout, max_message_size.
function M.connect(url, opts)
  if type(url) ~= "string" then
    error("bad argument #1 to 'websocket' (string expected)", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'websocket' (table expected)", 2)
  end
  opts = check(opts or {}, CONNECT_OPTS, 2, "websocket", 2)
  check_values(opts, "websocket")
  local u = core.http_parse_url(url)
  if not u or not u.host then return nil, common.invalid_url(url) end
  local scheme = (u.scheme or ""):lower()
  local tls = scheme == "wss" or scheme == "https"
  if not tls and scheme ~= "ws" and scheme ~= "http" then
    return nil, "unsupported URL scheme: " .. scheme
  end
  if opts.tls ~= nil then gopts.check_tls(opts.tls, 2, "websocket", 2) end
  local timeout = opts.timeout
  if timeout and timeout < 0 then -- the toolkit's rule: expire at once
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.timeout = 0
    opts = o
  end
  local offered = opts.protocols and protocol_list(opts.protocols,
    "bad argument #2 to 'websocket'")
  local extra, has_host = {}, false -- the caller's headers
  for k, v in pairs(opts.headers or {}) do
    common.check_header(k, tostring(v))
    local lk = common.lower(k)
    if HANDSHAKE[lk] then
      -- a second one would make the handshake another (or a 400)
      error(format("bad argument #2 to 'websocket' (headers: %s is the "
                   .. "handshake's)", k), 2)
    end
    has_host = has_host or lk == "host"
    extra[#extra + 1] = k .. ": " .. tostring(v) .. "\r\n"
  end
  extra = concat(extra)
  local defport = tls and 443 or 80
  local port = u.port or defport
  local sock, err
  if tls then
    sock, err = require("green.tls").connect(u.host, port,
      { timeout = opts.timeout, tls = opts.tls or {} })
    if not sock then
      return nil, "wss://" .. u.host .. ":" .. port .. ": " .. err
    end
  else
    sock, err = core.connect(u.host, port, { timeout = opts.timeout })
    if not sock then return nil, err end
    sock:setoption("tcp-nodelay", true) -- small frames go out at once
  end
  -- until it is handed to the WebSocket: closed on any way out (an
  -- error, a kill, a Timeout)
  local owned <close> = setmetatable({ sock = sock }, Owned)
  sock:settimeout(opts.timeout)
  local key = ws_key()
  local host = u.host:find(":", 1, true) and ("[" .. u.host .. "]")
    or u.host
  local t = {
    "GET ", (u.path or "/"), u.query and ("?" .. u.query) or "",
    " HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    "Sec-WebSocket-Key: ", key, "\r\nSec-WebSocket-Version: 13\r\n" }
  if offered then
    t[#t + 1] = "Sec-WebSocket-Protocol: " .. concat(offered, ", ")
      .. "\r\n"
  end
  t[#t + 1] = extra
  if not has_host then -- (two would be a 400: RFC 9112 3.2)
    t[#t + 1] = "Host: " .. host .. (port ~= defport and (":" .. port)
                                      or "") .. "\r\n"
  end
  t[#t + 1] = "\r\n"
  local ok
  ok, err = sock:sendall(concat(t))
  if not ok then return nil, err end
  -- (its buffers freed when the handshake is done, not at its __gc,
  -- which Lua skips in a thread at its stack limit)
  local parser <close> = core.http_parser("response", 64 * 1024, 256, 0,
                                          {}, common.Headers)
  local resp, kind = (tls and common.tls_head or core.http_head)(
    sock, parser, true, opts.timeout, opts.timeout)
  if not resp then
    return nil, type(kind) == "number" and "bad response" or kind
  end
  if resp.status ~= 101 then
    return nil, format("WebSocket handshake refused (%d %s)",
                       resp.status, tostring(resp.reason))
  end
  local why = bad_101(resp.headers, key, offered)
  if why then return nil, "bad WebSocket handshake: " .. why end
  local ws = new(sock, false, opts)
  owned.sock = nil
  ws.protocol = resp.headers["sec-websocket-protocol"]
  return ws
end

M.WebSocket = WebSocket
return M
