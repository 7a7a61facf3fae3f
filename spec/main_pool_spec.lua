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


-- green.http under the allocator: pipelined requests answered by
-- http_run with the collector always running, header values and bodies
-- of every size across the 256-byte bound, requests kept and read after
-- their batches, every byte checked by the client.
local HTTP_SCRIPT = [[
local green = require "green"
collectgarbage("setpause", 0)
local function val(i) return ("%d."):format(i) .. ("v"):rep(i * 7 % 600) end
green.run(function()
  local srv = assert(green.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local kept = {}
  local gt = green.spawn(green.http.serve, srv, function(req)
    local i = tonumber(req.headers["x-i"])
    assert(req.headers["x-v"] == val(i))
    kept[#kept + 1] = req
    local t = {}
    for j = 1, i % 30 do t[j] = val(i + j) end
    if i % 13 == 0 then green.sleep(0) end
    return 200, { ["x-v"] = val(i + 1) }, table.concat(t, ",")
  end)
  for round = 1, 10 do
    local c = assert(green.connect("127.0.0.1", port))
    local t = {}
    for k = 1, 100 do
      local i = round * 100 + k
      t[k] = "GET /" .. i .. " HTTP/1.1\r\nHost: a\r\nX-I: " .. i .. "\r\nX-V: "
        .. val(i) .. "\r\n\r\n"
    end
    t[101] = "GET / HTTP/1.1\r\nHost: a\r\nX-I: 1\r\nX-V: " .. val(1)
      .. "\r\nConnection: close\r\n\r\n"
    assert(c:send(table.concat(t)))
    c:settimeout(30)
    local r = assert(c:receive("*a"))
    c:close()
    local k = 0
    for v, body in r:gmatch("x%-v: ([^\r]*)\r\n.-\r\n\r\n([^H]*)") do
      k = k + 1
      local i = k <= 100 and round * 100 + k or 1
      assert(v == val(i + 1), i)
      local b = {}
      for j = 1, i % 30 do b[j] = val(i + j) end
      assert(body == table.concat(b, ","), i)
    end
    assert(k == 101, k)
  end
  collectgarbage()
  for _, req in ipairs(kept) do
    assert(req.headers["x-v"] == val(tonumber(req.headers["x-i"])))
  end
  srv:close()
  gt:wait()
  print("ok", #kept)
end)
]]

-- A burst of small objects, then their death: the chunks they filled go
-- back to the system within a second or two while the program goes on
-- allocating (VmRSS falls back; bounded wait), and chunks emptied by one
-- size class serve another with every byte intact.
local RETURN_SCRIPT = [[
local function rss()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end
local maps = assert(io.open("/proc/self/maps")):read("a")
local sanitized = maps:find("libasan") ~= nil
collectgarbage()
collectgarbage()
local base = rss()
local peak, after, back = 0, 0, true
for round = 1, 3 do
  local t = {}
  for i = 1, 150000 do -- tables of one class, strings of others
    t[i] = { i, i + round }
    t[150000 + i] = ("%d/%d"):format(i, round) .. ("s"):rep(i % 90)
  end
  for i = 1, 150000 do
    assert(t[i][2] == i + round)
    assert(t[150000 + i] == ("%d/%d"):format(i, round) .. ("s"):rep(i % 90))
  end
  peak = math.max(peak, rss())
  t = nil -- luacheck: ignore
  collectgarbage()
  collectgarbage()
  local t0 = os.time()
  repeat -- the program goes on (a little garbage) until RSS falls
    for _ = 1, 5000 do local _ = { round } end
    after = rss()
  until after - base < (peak - base) / 4 or os.time() - t0 > 20 or sanitized
  back = back and after - base < (peak - base) / 4
end
print("ok", peak - base > 20000, sanitized or back, peak - base, after - base)
]]

describe("greenlua's allocator", function()
  it("gives back the memory of a burst of small objects once they die",
     function()
    local p = os.tmpname()
    local f = assert(io.open(p, "w"))
    f:write(RETURN_SCRIPT)
    f:close()
    local out, err, code = h.sh(h.greenlua .. " " .. p, 240)
    os.remove(p)
    assert.are.equal(0, code, err)
    assert.matches("^ok\ttrue\ttrue\t", out)
  end)

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

  for _, env in ipairs { "", "GREENLUA_POOL=0 " } do
    it("serves pipelined HTTP requests with every byte intact"
       .. (env ~= "" and " (malloc only)" or ""), function()
      local p = os.tmpname()
      local f = assert(io.open(p, "w"))
      f:write(HTTP_SCRIPT)
      f:close()
      local out, err, code = h.sh(env .. h.greenlua .. " " .. p, 240)
      os.remove(p)
      assert.are.equal(0, code, err)
      assert.are.equal("ok\t1010\n", out)
    end)
  end
end)
