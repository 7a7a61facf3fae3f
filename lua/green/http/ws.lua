--- green.http's WebSocket (RFC 6455): the server's
-- req:upgrade_websocket([protocols], [opts]) and the client's
-- green.http.websocket(url, [opts]). Framing by libwslay, the handshake's
-- SHA-1 by OpenSSL (bindings/ws.c).
-- @module green.http.ws

local core = require "green.core"
local common = require "green.http.common"

local ws_new, ws_receive, ws_send, ws_close, ws_state, ws_accept_key,
      ws_key = core.ws_new, core.ws_receive, core.ws_send, core.ws_close,
  core.ws_state, core.ws_accept_key, core.ws_key
local has_token = common.has_token
local ws_receive_tls, is_tls = core.ws_receive_tls, common.is_tls

local type, error, concat, setmetatable, tostring, format =
  type, error, table.concat, setmetatable, tostring, string.format

local M = {}

local DEFAULT_MAX = 16 << 20 -- max_message_size

local WebSocket = {}
WebSocket.__index = WebSocket
WebSocket.__name = "green.http.WebSocket"

local function new(sock, server, opts)
  local max = opts and opts.max_message_size or DEFAULT_MAX
  if type(max) ~= "number" or max <= 0 then
    error("bad option max_message_size (positive number expected)", 3)
  end
  return setmetatable({ sock = sock, ctx = ws_new(server, max),
                        timeout = opts and opts.timeout,
                        tls = is_tls(sock) }, WebSocket)
end

local CLOSED = 1006

-- As ws_receive over a TLS socket: the parser reads its plaintext buffer
-- in place and never waits; filling it is the TLS socket's wait.
local function receive_tls(sock, ctx, timeout)
  local conn = sock.conn
  if not conn then return nil, "closed", CLOSED, "" end
  local due = timeout and timeout >= 0 and core.now() + timeout or nil
  local closed
  while true do
    local a, b, c, d = ws_receive_tls(conn, ctx)
    if a ~= true then return a, b, c, d end
    if closed then return nil, "closed", CLOSED, closed end
    local left = due and due - core.now()
    local ok, err = sock:fill(left and (left > 0 and left or 0) or -1)
    if sock.conn ~= conn then return nil, "closed", CLOSED, "" end
    if not ok then
      if err == "timeout" then return nil, "timeout" end
      closed = err -- once more: the end of the stream ends it
    end
  end
end

--- ws:receive() → message, "text"|"binary"; or nil, "closed", code,
-- reason; or nil, "timeout". Pings are answered on the way.
function WebSocket:receive()
  local sock, ctx = self.sock, self.ctx
  while true do
    local a, b, c, d
    if self.tls then
      a, b, c, d = receive_tls(sock, ctx, self.timeout)
    else
      a, b, c, d = ws_receive(sock, ctx, self.timeout)
    end
    if a ~= false then
      if a == nil and b == "closed" then
        self.closed = true
        sock:close()
      end
      return a, b, c, d
    end
    local ok, err = sock:sendall(b) -- a pong, a close reply
    if not ok then
      self.closed = true
      sock:close()
      return nil, "closed", 1006, err
    end
  end
end

local function send_raw(self, data)
  if not data then return nil, "closed" end
  local ok, err = self.sock:sendall(data)
  if not ok then return nil, err end
  return true
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
  if self.closed then return nil, "closed" end
  return send_raw(self, ws_send(self.ctx, kind, data))
end

--- ws:ping([data]) → true, or nil, err (the pong is not returned).
function WebSocket:ping(data)
  if self.closed then return nil, "closed" end
  return send_raw(self, ws_send(self.ctx, "ping", data or ""))
end

--- ws:close([code=1000], [reason]): send a close frame, wait (up to the
-- timeout, 5 s by default) for the peer's, then close the socket.
-- Returns true.
function WebSocket:close(code, reason)
  if self.closed then return true end
  local data = ws_close(self.ctx, code, reason)
  if #data > 0 then self.sock:sendall(data) end
  local received = ws_state(self.ctx)
  if not received then
    local t = self.timeout
    if t == nil then self.timeout = 5 end
    repeat
      local m, err = self:receive()
    until not m and err ~= nil
    self.timeout = t
  end
  self.closed = true
  self.sock:close()
  return true
end

--- ws:settimeout(t): seconds for receive (and sends), nil for none.
function WebSocket:settimeout(t)
  self.timeout = t
  self.sock:settimeout(t)
  return 1
end

-- Choose the subprotocol: the first of ours the client offered.
local function choose(protocols, offered)
  if not protocols or not offered then return nil end
  if type(offered) == "table" then offered = concat(offered, ",") end
  for _, p in ipairs(type(protocols) == "table" and protocols
                     or { protocols }) do
    if has_token(offered, p:lower()) then return p end
  end
  return nil
end

--- req:upgrade_websocket([protocols], [opts]) → ws, or nil, err for a
-- request that is not a valid upgrade (the handler answers it then).
function M.accept(req, protocols, opts)
  local c = req.conn
  local hs = req.headers
  if req.method ~= "GET" or req.version ~= "1.1"
     or not has_token(hs.upgrade, "websocket")
     or not has_token(hs.connection, "upgrade") then
    return nil, "not a WebSocket upgrade request"
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

--- green.http.websocket(url, [opts]) → ws, or nil, err. opts: headers,
-- protocols, timeout, max_message_size.
function M.connect(url, opts)
  if type(url) ~= "string" then
    error("bad argument #1 to 'websocket' (string expected)", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'websocket' (table expected)", 2)
  end
  opts = opts or {}
  local u = core.http_parse_url(url)
  if not u or not u.host then return nil, "invalid URL: " .. url end
  local scheme = (u.scheme or ""):lower()
  local tls = scheme == "wss" or scheme == "https"
  if not tls and scheme ~= "ws" and scheme ~= "http" then
    return nil, "unsupported URL scheme: " .. scheme
  end
  if opts.tls ~= nil and type(opts.tls) ~= "table" then
    error("bad argument #2 to 'websocket' (tls: table expected, got "
          .. type(opts.tls) .. ")", 2)
  end
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
  sock:settimeout(opts.timeout)
  local key = ws_key()
  local t = {
    "GET ", (u.path or "/"), u.query and ("?" .. u.query) or "",
    " HTTP/1.1\r\nHost: ", u.host, port ~= defport and (":" .. port) or "",
    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    "Sec-WebSocket-Key: ", key, "\r\nSec-WebSocket-Version: 13\r\n" }
  if opts.protocols then
    t[#t + 1] = "Sec-WebSocket-Protocol: " .. (type(opts.protocols) ==
      "table" and concat(opts.protocols, ", ") or opts.protocols) .. "\r\n"
  end
  for k, v in pairs(opts.headers or {}) do
    common.check_header(k, tostring(v))
    t[#t + 1] = k .. ": " .. tostring(v) .. "\r\n"
  end
  t[#t + 1] = "\r\n"
  local ok
  ok, err = sock:sendall(concat(t))
  if not ok then sock:close() return nil, err end
  local parser = core.http_parser("response", 64 * 1024, 256, 0,
                                  {}, common.Headers)
  local resp, kind = (tls and common.tls_head or core.http_head)(
    sock, parser, true, opts.timeout, opts.timeout)
  if not resp then
    sock:close()
    return nil, type(kind) == "number" and "bad response" or kind
  end
  local hs = resp.headers
  if resp.status ~= 101 or not has_token(hs.upgrade, "websocket")
     or hs["sec-websocket-accept"] ~= ws_accept_key(key) then
    sock:close()
    return nil, format("WebSocket handshake refused (%d %s)",
                       resp.status, tostring(resp.reason))
  end
  local ws = new(sock, false, opts)
  ws.protocol = hs["sec-websocket-protocol"]
  return ws
end

M.WebSocket = WebSocket
return M
