-- hello.lua: green threads in twenty lines.
--   ./build/greenlua examples/hello.lua
-- Three workers sleep for different times; the main thread waits for each
-- in spawn order. The sleeps overlap, so the whole run takes about 0.3 s,
-- not 0.6 s.
local green = require "green"

local function worker(name, seconds)
  print(string.format("%-6s starts, sleeps %.1f s", name, seconds))
  green.sleep(seconds)
  print(string.format("%-6s wakes", name))
  return name:upper()
end

local t0 = green.now()
local threads = {}
for i, name in ipairs { "red", "green", "blue" } do
  threads[i] = green.spawn(worker, name, 0.1 * (4 - i))
end
for _, t in ipairs(threads) do
  print("result:", t:wait())
end
print(string.format("all done in %.1f s", green.now() - t0))
