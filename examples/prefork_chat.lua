-- Seed 003: a chat served by several worker processes that share their
-- clients' messages through Redis.
--
-- The seed's service ran behind gunicorn's prefork master with gevent
-- workers; each worker kept its own WebSocket clients and a thread that
-- listened to a Redis channel, so a message posted to any worker reached
-- every client. Two things went wrong there: after fork the child ran
-- the parent's listening loop (fork copied the green threads), and each
-- "thread" opened its own Redis connection. Here:
--
--   * green.serve(server, handler, { workers = 2 }) forks the workers;
--     in a worker only the serving thread goes on (green.fork), so no
--     loop of the parent's runs twice;
--   * each worker opens its Redis connections in on_worker_start, after
--     the fork (none is inherited from the parent): one subscribed to the
--     channel, and a pools.Pool of at most 4 to publish on, borrowed for
--     one command at a time (one connection shared by every client's
--     thread would be read by two threads at once: seed 001's shared
--     socket; one per client would be the connection storm; see
--     lib_redis_chat.lua, shared with ws_prefork_chat.lua);
--   * a client's line is PUBLISHed; the worker's subscriber thread sends
--     every message on the channel to the worker's own clients.
--
-- The clients speak lines over TCP (`nc 127.0.0.1 PORT`); a WebSocket
-- front end (green.http) would change only the handler.
--
-- Run: ./build/greenlua examples/prefork_chat.lua [port] [demo]
--   Starts redis-server (Debian's) on a free loopback port, serves the
--   chat on 127.0.0.1:port (default: any free port, printed) with two
--   workers until Ctrl-C, then stops redis-server (which also goes if
--   this process is killed: see lib_redis_chat.lua).
--   With "demo": connects clients until two sit on each worker, has each
--   post a line, checks that every client got every line, prints what it
--   saw and stops.
local green = require "green"
-- the helpers shared with ws_prefork_chat.lua, beside this file
package.path = (arg and arg[0] and arg[0]:match("^(.*/)") or "./")
  .. "?.lua;" .. package.path
local lib = require "lib_redis_chat"
local port, demo, rport, stop_redis = lib.start()

-- Per worker (set in on_worker_start): publish, and the worker's clients.
local publish
local clients = {}

local function on_worker_start(id)
  publish = lib.worker(rport, id, function(text)
    for c in pairs(clients) do c:send(text .. "\n") end
  end)
end

local function chat(c)
  clients[c] = true
  c:send("welcome to worker " .. green.worker_id() .. "\n")
  while true do
    local line = c:receive("*l")
    if not line then break end
    publish(line)
  end
  clients[c] = nil
end

local server = assert(green.listen("127.0.0.1", port))
local _, lport = server:getsockname()
print("chat on 127.0.0.1:" .. lport .. " (2 workers)")
io.stdout:flush()

if demo then
  lib.demo(function()
    local c = assert(green.connect("127.0.0.1", lport))
    c:settimeout(10)
    return c
  end, "\n")
end

green.serve(server, chat, { workers = 2, graceful_timeout = 5,
                            on_worker_start = on_worker_start })
stop_redis()
