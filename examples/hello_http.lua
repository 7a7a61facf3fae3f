-- hello_http.lua: the epoll web server from seed 001 ("python eventlet并发原理
-- 分析"), rewritten on green.http: one green thread per connection, and
-- the HTTP itself parsed by libhttp-parser (green.http.serve).
--   ./build/greenlua examples/hello_http.lua [port] [requests]
--     port      8080 by default; 0 picks a free one. Binds 127.0.0.1 only.
--     requests  serve this many requests, then exit (default: forever).
--   curl -v http://127.0.0.1:8080/ http://127.0.0.1:8080/again
--
-- The seed's epoll version (Python) is 44 lines of code: dicts of
-- connections, request buffers and responses keyed by fileno, and a loop
-- that flips each fd between EPOLLIN and EPOLLOUT by hand, for one
-- request per connection. Here the hub does that bookkeeping and
-- green.http the protocol: keep-alive, bodies, limits (an endless
-- request line gets 414), pipelining. What is left is the application.
local green = require "green"

local port = tonumber(arg[1] or 8080)
local limit = tonumber(arg[2]) -- nil: serve forever

io.stdout:setvbuf("line") -- a test reads the first line while we run

local server = assert(green.listen("127.0.0.1", port))
local host
host, port = server:getsockname()
print(string.format("listening on %s:%d", host, port))

local served = 0
local on_conn = {} -- requests so far per peer (one peer: one connection)

local function handler(req)
  served = served + 1
  local n = (on_conn[req.remote_addr] or 0) + 1
  on_conn[req.remote_addr] = n
  local body = req:body() or ""
  print(string.format("%s %s %s (request %d on this connection)",
                      req.remote_addr, req.method, req.path, n))
  -- HTTP/1.1 keeps the connection unless told otherwise; 1.0 closes it
  -- unless asked to keep it; the last request closes it.
  local conn = (req.headers.connection or ""):lower()
  local keep = conn == "keep-alive" or (req.version == "1.1"
                                        and conn ~= "close")
  if limit and served >= limit then
    keep = false
    server:close() -- serve() returns once this request is answered
  end
  if not keep then on_conn[req.remote_addr] = nil end
  return 200, {
    ["Content-Type"] = "text/html; charset=utf-8",
    Connection = keep and "keep-alive" or "close",
  }, string.format("<html><body><h1>Hello, green world!</h1>\n"
    .. "<p>%s %s, request %d on this connection, %d bytes of body</p>\n"
    .. "</body></html>\n", req.method, req.path, n, #body)
end

print("serve:", green.http.serve(server, handler, { keepalive_timeout = 15 }))
print(string.format("served %d requests", served))
