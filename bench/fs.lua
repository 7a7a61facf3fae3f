--- bench/fs.lua: green.fs sequential read throughput against io.read of
-- the same file, in the same run (rounds interleaved, best of each).
--
-- The file (default 64 MB of 64-byte lines, in a temporary directory) is
-- read once first, so both sides read from the page cache: the figure is
-- the cost of the reading, not of the disk. Three patterns, each from a
-- green thread, with wall time (green.now(); the thread pool's time is
-- not the caller's CPU time):
--   chunks  f:read(65536) until nil   (the headline: target >= 0.5)
--   lines   for l in f:lines() do     (buffered: few pool requests)
--   all     f:read("a")
-- The pool requests each green.fs pass made are counted too
-- (green.fs.stats), to show that a line costs no round trip.
--
-- Usage: greenlua bench/fs.lua [megabytes] [rounds]
local green = require "green"
local fs = green.fs

local MB = tonumber(arg and arg[1]) or 64
local ROUNDS = math.tointeger(tonumber(arg and arg[2])) or 5
local now = green.now

local dir = os.tmpname()
os.remove(dir)
assert(fs.mkdir(dir, tonumber("700", 8)))
local path = dir .. "/data"

local function make(size)
  local f = assert(io.open(path, "wb"))
  local line = string.rep("x", 63) .. "\n"
  local block = string.rep(line, 1024)
  for _ = 1, size // #block do f:write(block) end
  f:close()
end

local patterns = {
  chunks = function(f)
    local n = 0
    while true do
      local s = f:read(65536)
      if not s then return n end
      n = n + #s
    end
  end,
  lines = function(f)
    local n = 0
    for l in f:lines() do n = n + #l + 1 end
    return n
  end,
  all = function(f)
    return #f:read("a")
  end,
}

local function timed(open, pattern)
  local f = assert(open(path, "rb"))
  local t0 = now()
  local n = patterns[pattern](f)
  local t = now() - t0
  f:close()
  return t, n
end

green.run(function()
  make(math.floor(MB * 1024 * 1024))
  local size = assert(fs.stat(path)).size
  timed(io.open, "all") -- into the page cache
  local order = { "chunks", "lines", "all" }
  local best_io, best_fs, requests = {}, {}, {}
  for _ = 1, ROUNDS do
    for _, p in ipairs(order) do
      local t, n = timed(io.open, p)
      assert(n == size, p .. ": io read " .. n .. " of " .. size)
      best_io[p] = math.min(best_io[p] or math.huge, t)
      local r0 = fs.stats().requests
      t, n = timed(fs.open, p)
      assert(n == size, p .. ": green.fs read " .. n .. " of " .. size)
      requests[p] = fs.stats().requests - r0
      best_fs[p] = math.min(best_fs[p] or math.huge, t)
    end
  end
  local mb = size / 1e6
  for _, p in ipairs(order) do
    local g, floor = mb / best_fs[p], mb / best_io[p]
    print(string.format("%-6s io %7.0f MB/s, green.fs %7.0f MB/s, ratio %.2f,"
                        .. " %d pool requests (open and close included)",
                        p, floor, g, g / floor, requests[p]))
  end
  local g, floor = mb / best_fs.chunks, mb / best_io.chunks
  print(string.format("fs: greenlua %.0f MB/s, floor %.0f MB/s, ratio %.2f "
                      .. "(target >= 0.5) %s", g, floor, g / floor,
                      g / floor >= 0.5 and "MET" or "MISSED"))
  fs.unlink(path)
  fs.rmdir(dir)
end)
