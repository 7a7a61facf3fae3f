-- shared_socket.lua: the bug from seed 000 ("Python中的greenlet模块的线程安全
-- 问题"): OpenStack cached one HTTP client (one socket) and shared it between
-- green threads. Two threads reading one socket split each other's replies
-- between them; eventlet 0.9.7 failed later with a baffling IncompleteRead.
--   ./build/greenlua examples/shared_socket.lua
-- greenlua refuses the second simultaneous read at once, with an error
-- that names both threads. The fix is a pools.Pool: each thread borrows
-- a connection for the length of one request and gives it back.
local green = require "green"

-- A toy key-value server on a free port: "GET key" answers "key=value"
-- after a short delay (a slow backend), one line per request.
local values = { apple = "red", banana = "yellow" }
local server = assert(green.listen("127.0.0.1", 0))
local _, port = server:getsockname()
local serving = green.spawn(green.serve, server, function(client)
  for line in function() return client:receive() end do
    local key = line:match("^GET (%S+)$")
    green.sleep(0.05)
    client:send(string.format("%s=%s\n", key, values[key] or "?"))
  end
end)

local function request(conn, key)
  assert(conn:send("GET " .. key .. "\n"))
  return assert(conn:receive())
end

-- 1. The bug: one connection, cached and shared by every green thread.
print("1. two green threads share one connection")
local shared = assert(green.connect("127.0.0.1", port))
local pile = green.GreenPile()
for _, key in ipairs { "apple", "banana" } do
  pile:spawn(function()
    green.getcurrent().name = "get " .. key -- named in the error
    return request(shared, key)
  end)
end
for _, key in ipairs { "apple", "banana" } do
  local ok, result = pcall(pile.next, pile)
  if ok then
    print(string.format("   get %-6s -> %s", key, result))
  else
    -- the message, without the traceback that wait() appends
    print(string.format("   get %-6s -> error: %s", key,
                        tostring(result):match("^[^\n]*")))
  end
end
-- The refused thread's request was still sent: its reply is on its way
-- and would confuse the next reader. This connection is spoiled.
shared:close()

-- 2. The fix: a pool of connections. pool:item() hands a connection to
-- one thread at a time; <close> puts it back when the block ends.
print("2. the same two requests through a green.pools.Pool")
local created = {}
local pool = green.pools.Pool {
  max_size = 2,
  create = function()
    local conn = assert(green.connect("127.0.0.1", port))
    created[#created + 1] = conn
    return conn
  end,
}
pile = green.GreenPile()
for _, key in ipairs { "apple", "banana", "apple", "banana" } do
  pile:spawn(function()
    local conn <close> = pool:item()
    return request(conn, key)
  end)
end
for result in pile do print("   " .. result) end
print(string.format("   %d connections for 4 requests", #created))

for _, conn in ipairs(created) do conn:close() end
server:close()
serving:wait()
