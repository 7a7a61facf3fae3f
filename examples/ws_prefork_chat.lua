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
--     4 to PUBLISH on, borrowed for one command at a time;
--   * a member's message is PUBLISHed as "[worker N] text"; every member
--     of every worker gets it through its worker's subscriber;
--   * each member has a bounded outgoing queue and a writer thread, so a
--     slow reader cannot grow its worker (it is dropped when its queue is
--     full), as in ws_chat.lua.
--
-- Run: ./build/greenlua examples/ws_prefork_chat.lua [port] [demo]
--   Starts redis-server (Debian's) on a free loopback port, serves the
--   chat on ws://127.0.0.1:port/ (default: any free port, printed) with
--   two workers until Ctrl-C, then stops redis-server. Talk to it with
--   `python3 -m websockets ws://127.0.0.1:PORT/` in two terminals.
--   With "demo": connects WebSocket clients until two sit on each worker,
--   has each send a line, checks that every client got every line,
--   prints what it saw and stops.
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
-- the worker's members (ws -> its outgoing queue).
local pub
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
        deliver(msg.payload)
      end
    end
  end).name = "redis subscriber of worker " .. id
  subscribed:wait() -- serve only once messages can reach our members
end

local function chat(req)
  local ws, err = req:upgrade_websocket()
  if not ws then
    return 426, { ["Content-Type"] = "text/plain" }, err .. "\n"
  end
  local id = green.worker_id()
  local q = green.Queue(100)
  q:put("welcome to worker " .. id)
  members[ws] = q
  local writer = green.spawn(function()
    while true do
      local text = q:get()
      if not text or not ws:send(text) then return end
    end
  end)
  while true do
    local text = ws:receive()
    if not text then break end
    local r <close> = pub:item()
    r:publish("chat", "[worker " .. id .. "] " .. text)
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
  -- Runs in the master process, beside the master: the workers do not
  -- have this thread (only the serving thread goes on in a child).
  local function run_demo()
    local url = "ws://127.0.0.1:" .. lport .. "/"
    local on = { {}, {} } -- worker id -> its demo clients
    for _ = 1, 200 do
      if #on[1] >= 2 and #on[2] >= 2 then break end
      local ws = assert(green.http.websocket(url, { timeout = 10 }))
      local w = tonumber(assert(ws:receive()):match("worker (%d)"))
      if #on[w] < 2 then table.insert(on[w], ws) else ws:close() end
    end
    assert(#on[1] >= 2 and #on[2] >= 2, "clients did not reach both workers")
    local all = { on[1][1], on[1][2], on[2][1], on[2][2] }
    for i, ws in ipairs(all) do
      assert(ws:send("hello from client " .. i))
    end
    for i, ws in ipairs(all) do
      local got = {}
      for _ = 1, #all do
        got[#got + 1] = assert(ws:receive())
      end
      table.sort(got)
      local w = i <= 2 and 1 or 2
      print(("client %d (worker %d) got %d/%d: %s"):format(i, w, #got,
            #all, table.concat(got, " | ")))
      ws:close()
    end
  end
  green.spawn(function()
    local ok, err = pcall(run_demo)
    if not ok then print("demo failed: " .. tostring(err)) end
    -- as Ctrl-C would: the master drains its workers, serve returns
    local f = assert(io.open("/proc/self/stat"))
    local me = math.tointeger(f:read("n"))
    f:close()
    green.process.run { "kill", "-TERM", tostring(me) }
  end)
end

green.http.serve(server, chat, { workers = 2, graceful_timeout = 5,
                                 on_worker_start = on_worker_start })
rserver:kill()
rserver:wait()
print("redis-server stopped")
