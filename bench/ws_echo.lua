--- bench/ws_echo.lua: WebSocket echo messages/s (a green.http server
-- echoing through req:upgrade_websocket, a green.http.websocket client)
-- against the raw green socket echo of the same message sizes, measured
-- in the same run, rounds interleaved. Reported, no target.
--
--   ./build/greenlua bench/ws_echo.lua [-v] [seconds=2] [rounds=3]
--
-- One process, one hub: the server and the client are green threads of
-- it, over a loopback TCP connection, one message in flight (the client
-- sends a message, waits for its echo, checks it, sends the next). The
-- raw echo: the server thread does receive(size), send; the client
-- send, receive(size). Sizes 16 B, 1 KB, 16 KB, 256 KB (binary
-- messages; the client masks them, as RFC 6455 says). Each run lasts
-- `seconds` (and at most 1e6 messages); the best round of each side is
-- compared.

local green = require "green"

local verbose = false
if arg[1] == "-v" then
  verbose = true
  table.remove(arg, 1)
end
local dur = tonumber(arg[1]) or 2
local rounds = math.tointeger(tonumber(arg[2])) or 3
local SIZES = { 16, 1024, 16 * 1024, 256 * 1024 }
local MAX_MESSAGES = 1000000

local function payload(size)
  local s = ("0123456789abcdef"):rep(size // 16 + 1)
  return s:sub(1, size)
end

-- The raw echo server and client: messages/s over `dur` seconds.
local function raw_run(size)
  local srv = assert(green.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local server = green.spawn(function()
    local c = srv:accept()
    srv:close()
    while true do
      local m = c:receive(size)
      if not m then break end
      assert(c:send(m))
    end
    c:close()
  end)
  local c = assert(green.connect("127.0.0.1", port))
  local msg = payload(size)
  local n, t0 = 0, green.now()
  local stop = t0 + dur
  repeat
    assert(c:send(msg))
    local back = assert(c:receive(size))
    assert(back == msg)
    n = n + 1
  until n >= MAX_MESSAGES or (n % 16 == 0 and green.now() >= stop)
  local dt = green.now() - t0
  c:close()
  server:wait()
  return n / dt
end

-- The WebSocket echo: messages/s over `dur` seconds.
local function ws_run(size)
  local srv = assert(green.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local server = green.spawn(green.http.serve, srv, function(req)
    local ws, err = req:upgrade_websocket(nil,
                                          { max_message_size = 1 << 20 })
    if not ws then return 400, nil, err end
    while true do
      local m, kind = ws:receive()
      if not m then break end
      assert(ws:send(m, kind))
    end
  end)
  local ws = assert(green.http.websocket("ws://127.0.0.1:" .. port .. "/",
                                         { max_message_size = 1 << 20 }))
  local msg = payload(size)
  local n, t0 = 0, green.now()
  local stop = t0 + dur
  repeat
    assert(ws:send(msg, "binary"))
    local back, kind = assert(ws:receive())
    assert(back == msg and kind == "binary")
    n = n + 1
  until n >= MAX_MESSAGES or (n % 16 == 0 and green.now() >= stop)
  local dt = green.now() - t0
  ws:close()
  srv:close()
  server:wait()
  return n / dt
end

green.run(function()
  for _, size in ipairs(SIZES) do
    local best = { raw = 0, ws = 0 }
    raw_run(size) -- warm up
    ws_run(size)
    for r = 1, rounds do
      local raw, ws = raw_run(size), ws_run(size)
      if verbose then
        print(("round %d size %6d: raw %8.0f msg/s, ws %8.0f msg/s")
          :format(r, size, raw, ws))
      end
      best.raw = math.max(best.raw, raw)
      best.ws = math.max(best.ws, ws)
    end
    print(("ws_echo %6d B: WebSocket %.0f msg/s, raw socket %.0f msg/s, "
           .. "ratio %.2f (report)"):format(size, best.ws, best.raw,
                                            best.ws / best.raw))
  end
end)
