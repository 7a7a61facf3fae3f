-- echo_client.lua: talk to echo_server.lua.
--   ./build/greenlua examples/echo_client.lua PORT [line...]
local green = require "green"

local port = tonumber((...)) or error("usage: echo_client.lua PORT [line...]")
local lines = { select(2, ...) }
if #lines == 0 then lines = { "hello", "green world", "quit" } end

local conn = assert(green.connect("127.0.0.1", port))
for _, line in ipairs(lines) do
  assert(conn:send(line .. "\n"))
  local reply, err = conn:receive()
  if not reply then
    print("error: " .. err)
    break
  end
  print("echo: " .. reply)
end
conn:close()
