-- hello_http.lua: the epoll web server from seed 001 ("python eventlet并发原理
-- 分析"), rewritten as one straight-line green thread per connection.
--   ./build/greenlua examples/hello_http.lua [port] [requests]
--     port      8080 by default; 0 picks a free one. Binds 127.0.0.1 only.
--     requests  serve this many requests, then exit (default: forever).
--   curl -v http://127.0.0.1:8080/ http://127.0.0.1:8080/again
--
-- Line count. The seed's epoll version (Python) is 44 lines of code: dicts
-- of connections, request buffers and responses keyed by fileno, and a
-- loop that flips each fd between EPOLLIN and EPOLLOUT by hand, for one
-- request per connection (read to the blank line, fixed answer, close).
-- The same job here is 8 lines, because the hub does that bookkeeping:
--
--   local green = require "green"
--   local response = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
--     .. "Content-Length: 13\r\n\r\nHello, world!"
--   local server = assert(green.listen("127.0.0.1", 8080))
--   green.serve(server, function(client)
--     repeat local line = client:receive() until line == "" or not line
--     client:send(response)
--   end)
--
-- This file (61 lines of code) does more than the seed: keep-alive,
-- header parsing, Content-Length bodies, an idle timeout, a request limit.
-- Each of those would be one more per-fd state in the epoll version.
local green = require "green"

local port = tonumber(arg[1] or 8080)
local limit = tonumber(arg[2]) -- nil: serve forever
local IDLE = 15 -- seconds a keep-alive connection may sit idle

io.stdout:setvbuf("line") -- a test reads the first line while we run

local server = assert(green.listen("127.0.0.1", port))
-- A request line or header line longer than this gets 414/431 instead of
-- growing the process: connections inherit the listener's receive limit.
local MAX_LINE, MAX_BODY = 8192, 1 << 20
server:setlimit(MAX_LINE)
local host
host, port = server:getsockname()
print(string.format("listening on %s:%d", host, port))

local served = 0
local open = {} -- live connections, closed when the request limit is hit

local function respond(client, status, body, keep)
  return client:send(table.concat {
    "HTTP/1.1 ", status, "\r\n",
    "Content-Type: text/html; charset=utf-8\r\n",
    "Content-Length: ", #body, "\r\n",
    "Connection: ", keep and "keep-alive" or "close", "\r\n",
    "\r\n", body })
end

-- One green thread per connection: plain blocking-style code.
local function handle(client, addr)
  open[client] = true
  client:settimeout(IDLE)
  local nreq = 0
  while true do
    -- Request line, then headers up to the blank line ("*l" drops the CR).
    local line, err = client:receive("*l")
    if err == "too long" then
      respond(client, "414 URI Too Long", "request line too long\n", false)
    end
    if not line then break end -- closed by the peer, or idle too long
    local method, path, version = line:match("^(%u+) (%S+) HTTP/(1%.[01])$")
    if not method then
      respond(client, "400 Bad Request", "bad request\n", false)
      break
    end
    local headers = {}
    local h
    repeat
      h, err = client:receive("*l")
      local k, v = (h or ""):match("^([^:]+):%s*(.-)%s*$")
      if k then headers[k:lower()] = v end
    until h == "" or not h
    if err == "too long" then
      respond(client, "431 Request Header Fields Too Large",
              "header line too long\n", false)
    end
    if not h then break end
    -- A body, if the client announced one.
    local body = ""
    local length = tonumber(headers["content-length"] or 0) or 0
    if length > MAX_BODY then
      respond(client, "413 Content Too Large", "body too large\n", false)
      break
    end
    if length > 0 then
      client:setlimit(length) -- this one read may be larger than a line
      body = client:receive(length) or ""
      client:setlimit(MAX_LINE)
    end
    -- HTTP/1.1 keeps the connection unless told otherwise; 1.0 closes it
    -- unless asked to keep it.
    local conn = (headers.connection or ""):lower()
    local keep = conn == "keep-alive" or (version == "1.1" and conn ~= "close")
    served = served + 1
    nreq = nreq + 1
    if limit and served >= limit then keep = false end
    print(string.format("%s %s %s (request %d on this connection)",
                        addr, method, path, nreq))
    respond(client, "200 OK", string.format(
      "<html><body><h1>Hello, green world!</h1>\n"
      .. "<p>%s %s, request %d on this connection, %d bytes of body</p>\n"
      .. "</body></html>\n", method, path, nreq, #body), keep)
    if not keep then break end
  end
  open[client] = nil
  if limit and served >= limit then
    server:close() -- ends serve() below
    for c in pairs(open) do c:close() end -- idle keep-alive peers
  end
end -- serve() closes the client after us

print("serve:", green.serve(server, handle))
print(string.format("served %d requests", served))
