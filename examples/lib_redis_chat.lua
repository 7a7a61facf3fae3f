-- lib_redis_chat.lua: what examples/prefork_chat.lua (lines over TCP) and
-- examples/ws_prefork_chat.lua (WebSocket) share: seed 003's chat whose
-- prefork workers pass their clients' messages through Redis. Not an
-- example to run, and not part of green: the two load it from their own
-- directory (`require "lib_redis_chat"`).
--
--   * start(): the command line and redis_server();
--   * redis_server(): a redis-server of the example's own on a free
--     loopback port, which dies with the example even when the example
--     is SIGKILLed;
--   * worker(rport, id, deliver): a worker's Redis connections, opened
--     after the fork (in on_worker_start);
--   * demo(connect, eol): the check that clients of both workers see
--     every message, then a SIGTERM to the master, as Ctrl-C would.
local green = require "green"

-- Debian's lua-redis (LuaSocket's API, green under green.patch()) is
-- installed for Lua 5.1-5.3 only; the file works with 5.4.
green.patch()
package.path = "/usr/share/lua/5.3/?.lua;" .. package.path
local redis = require "redis"

local M = {}

local function free_port()
  local s = assert(green.listen("127.0.0.1", 0))
  local _, p = s:getsockname()
  s:close()
  return p
end

-- redis-server cannot be told to die with its parent (PR_SET_PDEATHSIG
-- must be set between fork and exec, and green.process.spawn runs no
-- code there), and a SIGKILLed example runs no cleanup. So a shell
-- starts it beside a watcher that reads the shell's stdin: a pipe whose
-- writing end only this process holds (and the workers it forks, which
-- inherit it). Nothing is written to it; when it closes, however this
-- process and its workers end, the watcher reads EOF and TERMs
-- redis-server. The shell ends with redis-server (and ends the watcher
-- if redis-server went first). A background command's stdin is
-- /dev/null unless redirected: the pipe goes to the watcher as fd 3.
-- Ctrl-C (SIGINT to the terminal's process group) is for the example,
-- which drains its workers and then stops redis-server: ignored here.
local WATCH = "trap '' INT; "
  .. 'exec 3<&0 </dev/null; redis-server "$@" 3<&- & r=$!; '
  .. '{ while read -r _; do :; done; kill "$r" 2>/dev/null; } <&3 & w=$!; '
  .. 'exec 3<&-; wait "$r"; kill "$w" 2>/dev/null'

--- redis_server(): redis-server on a free 127.0.0.1 port, without
-- persistence, accepting connections (said on stdout). Returns its port
-- and stop(), which ends it, waits until it has exited and says so.
function M.redis_server()
  local rport = free_port()
  local proc = assert(green.process.spawn { "sh", "-c", WATCH, "sh",
    "--port", tostring(rport), "--bind", "127.0.0.1", "--save", "",
    "--appendonly", "no", stdin = "pipe", stdout = "null", stderr = "null" })
  local deadline = green.now() + 10 -- wait until it accepts (bounded)
  while true do
    local c = green.connect("127.0.0.1", rport)
    if c then c:close(); break end
    assert(proc:wait(0) == nil, "redis-server exited")
    assert(green.now() < deadline, "redis-server did not start")
    green.sleep(0.02)
  end
  print("started redis-server on 127.0.0.1:" .. rport)
  return rport, function()
    proc.stdin:close() -- the watcher sees EOF: redis-server goes
    proc:wait()
    print("redis-server stopped")
  end
end

--- start(): the command line's port (default 0: any free one), whether
-- "demo" follows it, and redis_server()'s port and stop.
function M.start()
  local rport, stop = M.redis_server()
  return math.tointeger(tonumber(arg and arg[1])) or 0,
    arg and arg[2] == "demo", rport, stop
end

--- worker(rport, id, deliver): in worker `id`, after the fork (nothing
-- is inherited from the parent), one connection subscribed to the
-- channel "chat", whose thread calls deliver(payload) for every message
-- on it, and a pools.Pool of at most 4 connections to PUBLISH on,
-- borrowed for one command at a time (one connection shared by every
-- client's thread would be read by two threads at once: seed 001's
-- shared socket; one per client would be the connection storm). Returns
-- publish(text) once subscribed, so the worker serves only once messages
-- can reach its clients.
function M.worker(rport, id, deliver)
  local pub = green.pools.Pool {
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
  subscribed:wait()
  return function(text)
    local r <close> = pub:item()
    r:publish("chat", "[worker " .. id .. "] " .. text)
  end
end

-- Clients until two sit on each worker (each says "welcome to worker
-- N" first); each sends a line; each must get all four. A worker serves
-- once it has subscribed: until the later one does, the other takes
-- every client, so extra ones are closed and tried again a little later
-- (for up to 30 s).
local function run_demo(connect, eol)
  local on = { {}, {} } -- worker id -> its demo clients
  local deadline = green.now() + 30
  for _ = 1, 3000 do
    if #on[1] >= 2 and #on[2] >= 2 or green.now() > deadline then break end
    local c = connect()
    local w = tonumber(assert(c:receive()):match("worker (%d)"))
    if #on[w] < 2 then
      table.insert(on[w], c)
    else
      c:close()
      green.sleep(0.01)
    end
  end
  assert(#on[1] >= 2 and #on[2] >= 2, "clients did not reach both workers")
  local all = { on[1][1], on[1][2], on[2][1], on[2][2] }
  for i, c in ipairs(all) do
    assert(c:send("hello from client " .. i .. eol))
  end
  for i, c in ipairs(all) do
    local got = {}
    for _ = 1, #all do
      got[#got + 1] = assert(c:receive())
    end
    table.sort(got)
    local w = i <= 2 and 1 or 2
    print(("client %d (worker %d) got %d/%d: %s"):format(i, w, #got,
          #all, table.concat(got, " | ")))
    c:close()
  end
end

--- demo(connect, eol): in the master process, beside the serving thread
-- (the workers do not have this thread: only the serving thread goes on
-- in a child). connect() opens a client (its receive() returns a line
-- or message, send(s) sends, close()); `eol` ends each line sent. Prints
-- what each client saw, or "demo failed: ...", then stops the master as
-- Ctrl-C would: it drains its workers and serve returns.
function M.demo(connect, eol)
  green.spawn(function()
    local ok, err = pcall(run_demo, connect, eol)
    if not ok then print("demo failed: " .. tostring(err)) end
    green.process.run { "kill", "-TERM", tostring(green.process.getpid()) }
  end)
end

return M
