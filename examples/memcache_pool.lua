-- memcache_pool.lua: the problem from seed 002 ("python-memcached的线程安全
-- 问题"). python-memcached made its Client thread-local so threads never
-- share a socket. Under gevent every green thread is a "thread", so every
-- request opened its own memcached connection (306 of them under
-- `ab -n100`). green.Local does the same here; a pools.Pool fixes it.
--   ./build/greenlua examples/memcache_pool.lua [host:port] [threads]
-- Without host:port it starts its own memcached on a free 127.0.0.1 port
-- and stops it before exiting.
local green = require "green"

local N = tonumber(arg[2]) or 50 -- green threads, e.g. concurrent requests
local POOL_SIZE = 4

-- {== A tiny memcached text-protocol client: get, set, stats ==========
local Client = {}
Client.__index = Client

function Client.connect(host, port)
  return setmetatable({ sock = assert(green.connect(host, port)) }, Client)
end

function Client:set(key, value)
  assert(self.sock:send(string.format("set %s 0 0 %d\r\n%s\r\n", key,
                                      #value, value)))
  return assert(self.sock:receive()) == "STORED"
end

function Client:get(key)
  assert(self.sock:send("get " .. key .. "\r\n"))
  local line = assert(self.sock:receive())
  if line == "END" then return nil end -- a miss
  local n = assert(tonumber(line:match("^VALUE %S+ %d+ (%d+)$")), line)
  local value = assert(self.sock:receive(n + 2)):sub(1, n) -- data CRLF
  assert(assert(self.sock:receive()) == "END")
  return value
end

function Client:stats()
  assert(self.sock:send("stats\r\n"))
  local stats = {}
  for line in function() return assert(self.sock:receive()) end do
    if line == "END" then break end
    local k, v = line:match("^STAT (%S+) (.*)$")
    stats[k] = tonumber(v) or v
  end
  return stats
end

function Client:close() self.sock:close() end
-- }====================================================================

-- Our own memcached, unless one was named. Stopped when the main chunk
-- ends, however it ends (a to-be-closed variable).
local host, port = (arg[1] or ""):match("^(.+):(%d+)$")
local memcached <close> = setmetatable({}, { __close = function(self)
  if not self.pid then return end
  os.execute("kill " .. self.pid)
  for _ = 1, 40 do -- bounded: 2 s, until its port refuses connections
    local c = green.connect(host, port)
    if not c then break end
    c:close()
    green.sleep(0.05)
  end
  print("memcached stopped")
end })
if not host then
  local probe = assert(green.listen("127.0.0.1", 0)) -- find a free port
  host, port = probe:getsockname()
  probe:close()
  local sh = io.popen(string.format("memcached -l 127.0.0.1 -p %d -U 0 "
    .. "-u nobody </dev/null >/dev/null 2>&1 & echo $!", port))
  memcached.pid = assert(tonumber(sh:read("l")))
  sh:close()
  print(string.format("started memcached on %s:%d", host, port))
end
port = tonumber(port)

-- Wait (bounded: 5 s) for it to accept connections.
local admin
for _ = 1, 100 do
  local ok, c = pcall(Client.connect, host, port)
  if ok then admin = c break end
  green.sleep(0.05)
end
assert(admin, "memcached did not start")

-- memcached's curr_connections counts the admin connection we read it
-- through (and no listener, in 1.6). Measure it with nothing else open
-- and report the rest: the connections our workers hold.
local baseline = admin:stats().curr_connections
local function connections()
  return admin:stats().curr_connections - baseline
end

-- Wait (bounded: 2 s) until memcached has seen our closes.
local function settle()
  for _ = 1, 40 do
    if connections() == 0 then return end
    green.sleep(0.05)
  end
end

-- N workers, each a request that sets its own key and reads it back, then
-- waits until all N are in flight at once (as on a busy server) so we can
-- count memcached's connections at the peak.
local function run(label, client_for_request)
  local started, all_in = 0, green.Event()
  local release = green.Event()
  local pile = green.GreenPile(N)
  for i = 1, N do
    pile:spawn(function()
      local key = "key" .. i
      client_for_request(function(mc) assert(mc:set(key, "v" .. i)) end)
      local value = client_for_request(function(mc) return mc:get(key) end)
      started = started + 1
      if started == N then all_in:send() end
      release:wait()
      return value == "v" .. i
    end)
  end
  all_in:wait()
  local peak = connections()
  release:send()
  local correct = 0
  for ok in pile do if ok then correct = correct + 1 end end
  print(string.format("%s %d connections to memcached at the peak "
                      .. "(curr_connections %d, less %d of our own), "
                      .. "%d/%d answers right", label, peak, peak + baseline,
                      baseline, correct, N))
end

-- 1. Per-green-thread clients: green.Local, like python-memcached's
-- threading.local Client under gevent.
local per_thread = green.Local()
local opened = {}
run(string.format("green.Local, %d green threads:", N), function(fn)
  if not per_thread.mc then -- first use in this green thread: connect
    per_thread.mc = Client.connect(host, port)
    opened[#opened + 1] = per_thread.mc
  end
  return fn(per_thread.mc)
end)
-- The Local fields vanish with their threads; the sockets stay open until
-- the garbage collector finds them. Close them ourselves.
for _, mc in ipairs(opened) do mc:close() end
settle()

-- 2. A pool: each request borrows a client for one operation and gives it
-- back; at most POOL_SIZE connections exist, however many threads run.
local pooled = {}
local pool = green.pools.Pool {
  max_size = POOL_SIZE,
  create = function()
    local mc = Client.connect(host, port)
    pooled[#pooled + 1] = mc
    return mc
  end,
}
run(string.format("pools.Pool{max_size = %d}:", POOL_SIZE), function(fn)
  local mc <close> = pool:item()
  return fn(mc)
end)
print(string.format("connections opened: %d with green.Local, %d with "
                    .. "the pool", #opened, #pooled))

for _, mc in ipairs(pooled) do mc:close() end
admin:close()
