-- The greenlua executable's allocator (runtime/main.c): Lua's small
-- objects from per-size free lists, larger ones from malloc. Objects of
-- every size across the boundary, resized both ways, keep their bytes;
-- memory freed is reused; GREENLUA_POOL=0 (malloc only) runs the same.
local h = require "helper"

-- Strings and tables of every size from 1 to 700 bytes, grown and shrunk
-- across the small blocks' 256-byte bound while others are freed and
-- made (the collector runs between), then checked byte for byte.
local SCRIPT = [[
local N = tonumber(arg[1])
local function str(i) return ("%d:"):format(i) .. ("x"):rep(i % 700) end
local keep = {}
for round = 1, N do
  for i = 1, 700 do
    keep[i] = str(i + round)
    local t = {}
    for j = 1, i % 40 do t[j] = j; t["k" .. j] = j end -- grows (resizes)
    keep[700 + i] = t
    local b = {}
    for j = 1, i % 50 do b[j] = string.char(65 + j % 26) end
    keep[1400 + i] = table.concat(b)
  end
  collectgarbage("step", 100)
  for i = 1, 700 do -- shrink the tables: node arrays resized down
    local t = keep[700 + i]
    for j = 1, i % 40 do t["k" .. j] = nil end
    t.z = 1
  end
end
collectgarbage("collect")
for i = 1, 700 do
  assert(keep[i] == str(i + N), i)
  local t = keep[700 + i]
  for j = 1, i % 40 do assert(t[j] == j and t["k" .. j] == nil) end
  assert(t.z == 1)
  assert(#keep[1400 + i] == i % 50)
end
-- memory freed is taken again: many rounds of the same sizes do not grow
-- the heap beyond the first rounds'
local function kb() collectgarbage("collect") return collectgarbage("count") end
local function churn()
  for _ = 1, 20 do
    local t = {}
    for i = 1, 20000 do t[i] = { i, ("y"):rep(i % 200) } end
  end
end
churn()
local rss = function()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end
local before = rss()
for _ = 1, 5 do churn() end
local after = rss()
-- (AddressSanitizer keeps freed blocks in quarantine: no reuse to see)
local maps = assert(io.open("/proc/self/maps")):read("a")
local sanitized = maps:find("libasan") ~= nil
print("ok", kb() < 4096, after - before < 16384 or sanitized)
]]

describe("greenlua's allocator", function()
  for _, env in ipairs { "", "GREENLUA_POOL=0 " } do
    it("keeps objects of every size intact and reuses freed memory"
       .. (env ~= "" and " (malloc only)" or ""), function()
      local p = os.tmpname()
      local f = assert(io.open(p, "w"))
      f:write(SCRIPT)
      f:close()
      local out, err, code = h.sh(env .. h.greenlua .. " " .. p .. " 20", 240)
      os.remove(p)
      assert.are.equal(0, code, err)
      assert.are.equal("ok\ttrue\ttrue\n", out)
    end)
  end
end)
