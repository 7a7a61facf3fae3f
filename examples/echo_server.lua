-- echo_server.lua: a green echo server. One straight-line green thread per
-- connection; the hub does the waiting.
--   ./build/greenlua examples/echo_server.lua [port]          serve forever
--   ./build/greenlua examples/echo_client.lua port [line...]  talk to it
--   ./build/greenlua examples/echo_server.lua 0 --demo        both at once:
--     three clients talk to the server, then it shuts down.
local green = require "green"

local port = tonumber(arg[1] or 7000)
local server = assert(green.listen("127.0.0.1", port))
server:setlimit(64 * 1024) -- a longer line is "too long": the client goes
local host
host, port = server:getsockname()
print(string.format("echo server on %s:%d", host, port))

local function handle(client, addr)
  print("connection from " .. addr)
  while true do
    local line, err = client:receive() -- nil, "closed" when it leaves
    if err == "too long" then client:send("line too long\n") end
    if not line then break end
    if line == "quit" then
      client:send("bye\n")
      break
    end
    client:send(line .. "\n")
  end
  print("closed " .. addr) -- serve() closes the client after us
end

if arg[2] == "--demo" then
  local dir = arg[0]:match("^(.*/)") or "./"
  local client = assert(loadfile(dir .. "echo_client.lua"))
  green.spawn(function()
    local clients = {}
    for i = 1, 3 do
      clients[i] = green.spawn(client, port, "client " .. i .. " says hi",
                               "quit")
    end
    for _, c in ipairs(clients) do c:wait() end
    server:close() -- ends serve(): it returns nil, "closed"
  end)
end

-- At most 100 connections are handled at once; more wait in the backlog.
print("serve:", green.serve(server, handle, 100))
