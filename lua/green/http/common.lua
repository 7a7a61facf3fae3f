--- What green.http's server, client and WebSocket share: the headers
-- metatable (case-insensitive lookup), status texts, the cached Date
-- header, header validation. Internal to green.http.
-- @module green.http.common

local core = require "green.core"

local lower, find, format = string.lower, string.find, string.format
local type, rawget, tostring, error, floor = type, rawget, tostring, error,
  math.floor
local now = core.now

local M = {}

--- Headers tables: names are stored lowercased (the parser lowercases
-- what it reads); a lookup by any other case finds them too.
M.Headers = {
  __name = "green.http.Headers",
  __index = function(t, k)
    if type(k) == "string" then
      local l = lower(k)
      if l ~= k then return rawget(t, l) end
    end
    return nil
  end,
}

M.REASONS = {
  [100] = "Continue", [101] = "Switching Protocols",
  [200] = "OK", [201] = "Created", [202] = "Accepted",
  [203] = "Non-Authoritative Information", [204] = "No Content",
  [205] = "Reset Content", [206] = "Partial Content",
  [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found",
  [303] = "See Other", [304] = "Not Modified", [307] = "Temporary Redirect",
  [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed",
  [406] = "Not Acceptable", [408] = "Request Timeout", [409] = "Conflict",
  [410] = "Gone", [411] = "Length Required", [412] = "Precondition Failed",
  [413] = "Content Too Large", [414] = "URI Too Long",
  [415] = "Unsupported Media Type", [416] = "Range Not Satisfiable",
  [417] = "Expectation Failed", [426] = "Upgrade Required",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented",
  [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
}

-- "HTTP/1.1 200 OK\r\n" by status, made once per status.
local status_lines = {}
function M.status_line(status)
  local l = status_lines[status]
  if l then return l end
  if math.type(status) ~= "integer" or status < 100 or status > 999 then
    error(format("green.http: bad status %s (an integer 100-999 expected)",
                 tostring(status)), 0)
  end
  l = format("HTTP/1.1 %d %s\r\n", status, M.REASONS[status] or "Unknown")
  status_lines[status] = l
  return l
end

-- The Date header, made at most once per second of the hub's clock
-- (the wall clock is read only then).
local date_line, date_until = nil, -1
local gettime = os.time
function M.date_line()
  local t = now()
  if t >= date_until then
    local wall = gettime()
    date_line = "Date: " .. os.date("!%a, %d %b %Y %H:%M:%S GMT", wall)
      .. "\r\n"
    -- os.time has whole seconds: look again within a second, so the
    -- header is never more than a second behind.
    date_until = floor(t) + 1
  end
  return date_line
end

--- Is `s` a token (RFC 9110 5.6.2: a method, a header name, ...)?
function M.is_token(s)
  return type(s) == "string" and s ~= ""
    and not find(s, "[^%w!#$%%&'*+%-.^_`|~]")
end

--- Raise (misuse) if a header name or value could split the message:
-- names must be tokens, values must hold no CR, LF or NUL.
function M.check_header(k, v)
  if not M.is_token(k) then
    error(format("green.http: bad header name %q", tostring(k)), 0)
  end
  if find(v, "[\r\n%z]") then
    error(format("green.http: header %s: value holds CR, LF or NUL", k), 0)
  end
end

-- Lowercased header names the writers check (content-length, ...),
-- cached: the handlers' names are a small fixed set in practice, and the
-- cache stops growing past LOWER_MAX names.
local LOWER_MAX = 512
local lowered, nlowered = {}, 0
function M.lower(k)
  local l = lowered[k]
  if l then return l end
  l = lower(k)
  if nlowered < LOWER_MAX then
    nlowered = nlowered + 1
    lowered[k] = l
  end
  return l
end

--- Is `token` one of the comma-separated items of header value `v`
-- (a string or a list of strings), case-insensitively?
function M.has_token(v, token)
  if v == nil then return false end
  if type(v) == "table" then
    for i = 1, #v do
      if M.has_token(v[i], token) then return true end
    end
    return false
  end
  for item in v:gmatch("[^,]+") do
    if lower(item:match("^%s*(.-)%s*$")) == token then return true end
  end
  return false
end

-- {=== over TLS: the parser reads a TLS socket's plaintext buffer in
-- place (core.http_head_tls, core.http_body_tls never wait); these fill
-- it through the TLS socket, whose waits are its green socket's.

local http_head_tls, http_body_tls = core.http_head_tls, core.http_body_tls

--- Is `sock` a green.tls socket (a table with its conn)?
--- The error for a URL that does not parse: the URL with its control
-- bytes written as \ddd (a CR or an LF in it would start a new line in
-- whatever logs the error).
function M.invalid_url(url)
  return "invalid URL: " .. url:gsub("[%c\127]", function(c)
    return "\\" .. c:byte()
  end)
end

function M.is_tls(sock)
  return type(sock) == "table" and sock.fill ~= nil
end

local function left(due)
  if not due then return nil end
  local l = due - now()
  return l > 0 and l or 0
end

--- As core.http_head(sock, parser, wait, idle_timeout, head_timeout,
-- skipbody) for a TLS socket.
function M.tls_head(sock, parser, wait, idle_timeout, head_timeout,
                    skipbody)
  local conn = sock.conn
  if not conn then return nil, "closed" end
  local idle_due = idle_timeout and now() + idle_timeout
  local head_due, closed
  while true do
    local r, a, b, c = http_head_tls(conn, parser, skipbody)
    if r ~= false then return r, a, b, c end
    if not wait then return false end
    local began = a
    if closed then return nil, closed, began end
    local due = idle_due
    if began then
      head_due = head_due or (head_timeout and now() + head_timeout)
      due = head_due
    end
    local ok, err = sock:fill(left(due) or -1)
    if sock.conn ~= conn then return nil, "closed", began end
    if not ok then
      if err ~= "closed" then return nil, err, began end
      closed = err -- once more: the parser sees the end of the stream
    end
  end
end

--- As core.http_body(sock, parser, timeout) for a TLS socket.
function M.tls_body(sock, parser, timeout)
  local conn = sock.conn
  if not conn then return nil, "closed" end
  local due = timeout and timeout >= 0 and now() + timeout or nil
  local closed
  while true do
    local r, err = http_body_tls(conn, parser)
    if r ~= true then return r, err end
    if closed then return nil, closed end
    local ok, ferr = sock:fill(left(due) or -1)
    if sock.conn ~= conn then return nil, "closed" end
    if not ok then
      if ferr ~= "closed" then return nil, ferr end
      closed = ferr
    end
  end
end

-- }===

return M
