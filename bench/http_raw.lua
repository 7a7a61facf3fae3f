--- bench/http_raw.lua: a raw keep-alive HTTP responder in greenlua, the
-- greenlua side of bench/http.sh (the floor is bench/c_responder.c, the
-- same responder in C on libuv). Per connection, one green thread: read
-- lines up to the blank line that ends a request, write a fixed 200
-- response, loop (keep-alive; pipelined requests are simply lines already
-- in the buffer). No header is parsed, like the C responder, which only
-- scans for "\r\n\r\n".
--
-- Usage: greenlua bench/http_raw.lua [port] [mode]
--   port  0 (the default): any free port; binds 127.0.0.1 only
--   mode  "serve" (the default): green.serve(server, handler, 10000)
--         "accept": a bare accept loop that spawns the handler
-- Prints "port N" once listening; serves until killed.

local green = require "green"

-- GREENLUA_DETECTION=off: blocking detection off, to measure its cost
-- (bench/watchdog.lua measures the switch side).
if os.getenv("GREENLUA_DETECTION") == "off" then
  green.debug.hub_blocking_detection(false)
end

local port = math.tointeger(tonumber(arg and arg[1])) or 0
local mode = arg and arg[2] or "serve"

local RESP = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!"

local server = assert(green.listen("127.0.0.1", port, { backlog = 1024 }))
local _, p = server:getsockname()
io.stdout:write("port ", p, "\n")
io.stdout:flush()

-- receive("*l") drops the '\r' (LuaSocket's line mode), so the blank
-- line that ends a request is "".
local function handle(c)
  local receive, send = c.receive, c.send
  while true do
    local line = receive(c, "*l")
    if not line then return end
    if line == "" then
      if not send(c, RESP) then return end
    end
  end
end

if mode == "accept" then
  while true do
    local c = server:accept()
    if c then
      green.spawn(function()
        handle(c)
        c:close()
      end)
    end
  end
else
  green.serve(server, handle, 10000)
end
