-- fs_copy.lua: copy a file with green.fs while other green threads keep
-- running. Every read and write goes to libuv's thread pool, so a slow
-- disk holds up only the copying thread. A heartbeat beats on every turn
-- of the hub meanwhile: at least once for each request the copy waits for.
--   ./build/greenlua examples/fs_copy.lua SRC DST
-- Without arguments it copies a generated 32 MiB file to a temporary one.
local green = require "green"
local fs = green.fs

local CHUNK = 1 << 20

-- Copy src to dst in CHUNK-sized pieces; returns bytes and pieces copied.
local function copy(src, dst)
  local from <close> = assert(fs.open(src, "rb"))
  local to <close> = assert(fs.open(dst, "wb"))
  local bytes, pieces = 0, 0
  while true do
    local data, err = from:read(CHUNK)
    if not data then
      assert(not err, err)
      break
    end
    assert(to:write(data))
    bytes, pieces = bytes + #data, pieces + 1
  end
  assert(to:close()) -- the last write and the close, checked
  return bytes, pieces
end

local src, dst = arg and arg[1], arg and arg[2]
local generated = not src
if generated then
  src, dst = os.tmpname(), os.tmpname()
  local block = ("0123456789abcdef"):rep(CHUNK // 16)
  local f <close> = assert(fs.open(src, "wb"))
  for _ = 1, 32 do assert(f:write(block)) end
end

local beats, copying = 0, true
local heartbeat = green.spawn(function()
  while copying do
    beats = beats + 1
    green.sleep(0) -- the next turn of the hub
  end
end)

local bytes, pieces = copy(src, dst)
copying = false
heartbeat:wait()

local a, b = assert(fs.stat(src)), assert(fs.stat(dst))
assert(a.size == b.size, "sizes differ")
if generated then
  assert(fs.readfile(src) == fs.readfile(dst), "contents differ")
  assert(fs.unlink(src))
  assert(fs.unlink(dst))
end
print(("copied %d bytes in %d pieces; the heartbeat beat %d times")
      :format(bytes, pieces, beats))
