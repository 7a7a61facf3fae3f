-- ws_chat.lua: a WebSocket chat room (seed 003's chat, on green.http).
-- Every message a client sends goes to every client connected; one green
-- thread per client, and a bounded queue per client so a slow reader
-- cannot grow the server (it is dropped when its queue is full).
--   ./build/greenlua examples/ws_chat.lua [port]    (8082; 0: any free)
--   python3 -m websockets ws://127.0.0.1:8082/    (Debian's
--   python3-websockets), in two terminals
-- examples/ws_prefork_chat.lua is the same chat across prefork workers
-- that share their messages through Redis (seed 003).
local green = require "green"

local server = assert(green.listen("127.0.0.1", tonumber(arg[1] or 8082)))
print(("chat on ws://%s:%d/"):format(server:getsockname()))
io.stdout:flush()

local members = {} -- ws -> its outgoing queue

local function broadcast(text)
  for ws, q in pairs(members) do
    if q:full() then -- too slow: drop it
      members[ws] = nil
      ws:close(1008, "too slow")
    else
      q:put(text)
    end
  end
end

green.http.serve(server, function(req)
  local ws, err = req:upgrade_websocket()
  if not ws then
    return 426, { ["Content-Type"] = "text/plain" }, err .. "\n"
  end
  local q = green.Queue(100)
  members[ws] = q
  local writer = green.spawn(function()
    while true do
      local text = q:get()
      if not text or not ws:send(text) then return end
    end
  end)
  local me = req.remote_addr
  broadcast(me .. " joined")
  while true do
    local text, kind = ws:receive()
    if not text then break end
    if text == "/quit" then ws:close(1000, "bye") break end
    if text == "/stop" then server:close() ws:close(1000, "stopping") break end
    -- (binary messages are not chat: sent on as text, they need not be
    -- UTF-8, and ws:send refuses them)
    if kind == "text" then broadcast(me .. ": " .. text) end
  end
  members[ws] = nil
  q:put(false)
  writer:wait()
  broadcast(me .. " left")
end)
