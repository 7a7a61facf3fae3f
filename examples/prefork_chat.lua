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
--     socket; one per client would be the connection storm);
--   * a client's line is PUBLISHed; the worker's subscriber thread sends
--     every message on the channel to the worker's own clients.
--
-- The clients speak lines over TCP (`nc 127.0.0.1 PORT`); a WebSocket
-- front end (green.http) would change only the handler.
--
-- Run: ./build/greenlua examples/prefork_chat.lua [port] [demo]
--   Starts redis-server (Debian's) on a free loopback port, serves the
--   chat on 127.0.0.1:port (default: any free port, printed) with two
--   workers until Ctrl-C, then stops redis-server.
--   With "demo": connects clients until two sit on each worker, has each
--   post a line, checks that every client got every line, prints what it
--   saw and stops.
local green = require "green"

local port = math.tointeger(tonumber(arg and arg[1])) or 0
local demo = arg and arg[2] == "demo"

-- Debian's lua-redis (LuaSocket's API, green under green.patch()) is
-- installed for Lua 5.1-5.3 only; the file works with 5.4.
green.patch()
package.path = "/usr/share/lua/5.3/?.lua;" .. package.path
local redis = require "redis"

local function free_port()
  local s = assert(green.listen("127.0.0.1", 0))
  local _, p = s:getsockname()
  s:close()
  return p
end

-- redis-server on 127.0.0.1 only, in the foreground of a child process.
local rport = free_port()
local rserver = assert(green.process.spawn { "redis-server", "--port", rport,
  "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
  stdout = "null", stderr = "null" })
do -- wait until it accepts (bounded)
  local deadline = green.now() + 10
  while true do
    local c = green.connect("127.0.0.1", rport)
    if c then c:close(); break end
    assert(green.now() < deadline, "redis-server did not start")
    green.sleep(0.02)
  end
end
print("started redis-server on 127.0.0.1:" .. rport)

-- Per worker (set in on_worker_start): the publishing connections and
-- the worker's clients.
local pub
local clients = {}

local function on_worker_start(id)
  pub = green.pools.Pool {
    max_size = 4,
    create = function() return redis.connect("127.0.0.1", rport) end,
  }
  local sub = redis.connect("127.0.0.1", rport)
  local subscribed = green.Event()
  green.spawn(function()
    for msg in sub:pubsub({ subscribe = { "chat" } }) do
      if msg.kind == "subscribe" then
        subscribed:send()
      elseif msg.kind == "message" then
        for c in pairs(clients) do c:send(msg.payload .. "\n") end
      end
    end
  end).name = "redis subscriber of worker " .. id
  subscribed:wait() -- serve only once messages can reach our clients
end

local function chat(c)
  local id = green.worker_id()
  clients[c] = true
  c:send("welcome to worker " .. id .. "\n")
  while true do
    local line = c:receive("*l")
    if not line then break end
    local r <close> = pub:item()
    r:publish("chat", "[worker " .. id .. "] " .. line)
  end
  clients[c] = nil
end

local server = assert(green.listen("127.0.0.1", port))
local _, lport = server:getsockname()
print("chat on 127.0.0.1:" .. lport .. " (2 workers)")
io.stdout:flush()

if demo then
  -- Runs in the master process, beside the master: the workers do not
  -- have this thread (only the serving thread goes on in a child).
  local function run_demo()
    local on = { {}, {} } -- worker id -> its demo clients
    for _ = 1, 200 do
      if #on[1] >= 2 and #on[2] >= 2 then break end
      local c = assert(green.connect("127.0.0.1", lport))
      c:settimeout(10)
      local w = tonumber(assert(c:receive("*l")):match("worker (%d)"))
      if #on[w] < 2 then table.insert(on[w], c) else c:close() end
    end
    assert(#on[1] >= 2 and #on[2] >= 2, "clients did not reach both workers")
    local all = { on[1][1], on[1][2], on[2][1], on[2][2] }
    for i, c in ipairs(all) do
      assert(c:send("hello from client " .. i .. "\n"))
    end
    for i, c in ipairs(all) do
      local got = {}
      for _ = 1, #all do
        local line = assert(c:receive("*l"))
        got[#got + 1] = line
      end
      table.sort(got)
      local w = i <= 2 and 1 or 2
      print(("client %d (worker %d) got %d/%d: %s"):format(i, w, #got,
            #all, table.concat(got, " | ")))
      c:close()
    end
  end
  green.spawn(function()
    local ok, err = pcall(run_demo)
    if not ok then print("demo failed: " .. tostring(err)) end
    -- as Ctrl-C would: the master drains its workers, serve returns
    green.process.run { "kill", "-TERM", tostring(green.process.getpid()) }
  end)
end

green.serve(server, chat, { workers = 2, graceful_timeout = 5,
                            on_worker_start = on_worker_start })
rserver:kill()
rserver:wait()
print("redis-server stopped")
