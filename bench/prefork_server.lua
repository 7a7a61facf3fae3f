--- bench/prefork_server.lua: the server side of bench/prefork.sh. A
-- keep-alive HTTP responder whose handler spends about `ms` milliseconds
-- of Lua CPU per request (a calibrated loop), served by
-- `green.serve(server, handler, { workers = N })`.
--
-- Usage: greenlua bench/prefork_server.lua workers [ms]
-- Prints "port N" once listening (127.0.0.1 only); serves until SIGTERM.

local green = require "green"

local workers = math.tointeger(tonumber(arg[1])) or 1
local ms = tonumber(arg[2]) or 2

-- Calibrate: iterations of the work loop per millisecond of CPU.
local function work(n)
  local x = 0
  for i = 1, n do x = (x + i * 7) % 1000003 end
  return x
end
local per_ms
do
  local n = 100000
  while true do
    local t0 = os.clock()
    work(n)
    local dt = os.clock() - t0
    if dt > 0.05 then per_ms = n / (dt * 1000); break end
    n = n * 2
  end
end
local spin = math.floor(per_ms * ms)

local RESP = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!"

local server = assert(green.listen("127.0.0.1", 0, { backlog = 1024 }))
local _, port = server:getsockname()
io.stdout:write("port ", port, "\n")
io.stdout:flush()

green.serve(server, function(c)
  while true do
    local line = c:receive("*l")
    if not line then return end
    if line == "" then
      work(spin)
      if not c:send(RESP) then return end
    end
  end
end, { workers = workers, graceful_timeout = 2 })
