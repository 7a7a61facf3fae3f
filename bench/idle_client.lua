--- bench/idle_client.lua: the client of bench/idle.lua, run by it in a
-- separate process. Opens n connections to 127.0.0.1:port, sends one
-- keep-alive request on each and reads its response (so every server
-- connection has been used once: a buffer was needed, then freed), then
-- holds them all open until the server closes them (or the time limit).
--
-- Usage: greenlua bench/idle_client.lua port n [seconds]
-- The caller raises the descriptor limit (ulimit -n) beyond n.

local green = require "green"

local port = assert(math.tointeger(tonumber(arg[1])), "port expected")
local N = assert(math.tointeger(tonumber(arg[2])), "count expected")
local LIMIT = tonumber(arg[3]) or 60
local WORKERS = 50

local REQ = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

-- Bounded: whatever happens, this process ends.
green.spawn(function()
  green.sleep(LIMIT)
  io.stderr:write("idle_client: time limit (", LIMIT, " s) reached\n")
  os.exit(3)
end)

local socks, nexti = {}, 1

local function fail(i, what, err)
  io.stderr:write(string.format("idle_client: connection %d: %s: %s\n",
                                i, what, tostring(err)))
  os.exit(2)
end

local function worker()
  while nexti <= N do
    local i = nexti
    nexti = i + 1
    local s, err = green.connect("127.0.0.1", port)
    if not s then fail(i, "connect", err) end
    socks[i] = s
    local ok, err2 = s:send(REQ)
    if not ok then fail(i, "send", err2) end
    -- the response: header lines to the blank one, then the body
    repeat
      local line, err3 = s:receive("*l")
      if not line then fail(i, "receive", err3) end
    until line == ""
    local body, err4 = s:receive(13)
    if body ~= "Hello, world!" then fail(i, "body", err4 or body) end
  end
end

local t0 = green.now()
local ws = {}
for w = 1, WORKERS do ws[w] = green.spawn(worker) end
for _, w in ipairs(ws) do w:wait() end
io.stderr:write(string.format(
  "idle_client: %d connections open, one request each, in %.2f s\n",
                              N, green.now() - t0))

-- Hold them until the server goes away (it closes them all, or exits).
for _, s in ipairs(socks) do
  s:receive("*a")
end
os.exit(0)
