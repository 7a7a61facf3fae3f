-- ws_prefork_chat.lua: seed 003's chat as it was meant to be: WebSocket
-- clients (green.http) served by several worker processes that share
-- their messages through Redis.
--
-- examples/ws_chat.lua is the chat room in one process;
-- examples/prefork_chat.lua shares lines between prefork workers through
-- Redis. This is the two together:
--
--   * green.http.serve(server, handler, { workers = 2, ... }) forks the
--     workers (green.serve's prefork master); each worker keeps its own
--     WebSocket members;
--   * each worker opens its Redis connections in on_worker_start, after
--     the fork: one subscribed to the channel, whose thread hands every
--     message on it to the worker's members, and a pools.Pool of at most
--     4 to PUBLISH on, borrowed for one command at a time (see
--     lib_redis_chat.lua, shared with prefork_chat.lua);
--   * a member's message is PUBLISHed as "[worker N] text"; every member
--     of every worker gets it through its worker's subscriber;
--   * each member has a bounded outgoing queue and a writer thread, so a
--     slow reader cannot grow its worker (it is dropped when its queue is
--     full), as in ws_chat.lua.
--
-- Run: ./build/greenlua examples/ws_prefork_chat.lua [port] [demo]
--   Starts redis-server (Debian's) on a free loopback port, serves the
--   chat on ws://127.0.0.1:port/ (default: any free port, printed) with
--   two workers until Ctrl-C, then stops redis-server (which also goes
--   if this process is killed: see lib_redis_chat.lua). Talk to it with
--   `python3 -m websockets ws://127.0.0.1:PORT/` in two terminals.
--   With "demo": connects WebSocket clients until two sit on each worker,
--   has each send a line, checks that every client got every line,
--   prints what it saw and stops.
local green = require "green"
-- the helpers shared with prefork_chat.lua, beside this file
package.path = (arg and arg[0] and arg[0]:match("^(.*/)") or "./")
  .. "?.lua;" .. package.path
local lib = require "lib_redis_chat"
local port, demo, rport, stop_redis = lib.start()

-- Per worker (set in on_worker_start): publish, and the worker's
-- members (ws -> its outgoing queue).
local publish
local members = {}

local function deliver(text)
  for ws, q in pairs(members) do
    if q:full() then -- too slow: drop it
      members[ws] = nil
      ws:close(1008, "too slow")
    else
      q:put(text)
    end
  end
end

local function on_worker_start(id)
  publish = lib.worker(rport, id, deliver)
end

local function chat(req)
  local ws, err = req:upgrade_websocket()
  if not ws then
    return 426, { ["Content-Type"] = "text/plain" }, err .. "\n"
  end
  local q = green.Queue(100)
  q:put("welcome to worker " .. green.worker_id())
  members[ws] = q
  local writer = green.spawn(function()
    while true do
      local text = q:get()
      if not text or not ws:send(text) then return end
    end
  end)
  while true do
    local text, kind = ws:receive()
    if not text then break end
    if kind == "text" then publish(text) end -- (binary is not chat)
  end
  members[ws] = nil
  q:put(false)
  writer:wait()
end

local server = assert(green.listen("127.0.0.1", port))
local _, lport = server:getsockname()
print(("chat on ws://127.0.0.1:%d/ (2 workers)"):format(lport))
io.stdout:flush()

if demo then
  local url = "ws://127.0.0.1:" .. lport .. "/"
  lib.demo(function()
    return assert(green.http.websocket(url, { timeout = 10 }))
  end, "")
end

green.http.serve(server, chat, { workers = 2, graceful_timeout = 5,
                                 on_worker_start = on_worker_start })
stop_redis()
