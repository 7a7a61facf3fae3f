-- Support for the green.fs specs (spec/fs*_spec.lua): a fresh temporary
-- directory per spec file, paths and FIFOs in it, both ends of a FIFO
-- opened green, and the waits those specs share.
local green = require "green"
local h = require "helper"
local fs = green.fs

local S = {}

--- Run shell command `cmd`; raise if it fails.
function S.sh(cmd)
  local ok = os.execute(cmd)
  assert(ok, "failed: " .. cmd)
end

local dir -- the spec file's directory, between S.setup and S.teardown
local seq = 0

--- Make the spec file's directory (call from busted's `setup`); returns it.
function S.setup()
  dir = os.tmpname()
  os.remove(dir)
  S.sh("mkdir -m 700 " .. dir)
  return dir
end

--- Remove the spec file's directory (call from busted's `teardown`).
function S.teardown()
  if dir then S.sh("rm -rf " .. dir) end
  dir = nil
end

--- A new path in the directory (nothing made there).
function S.tmp(name)
  seq = seq + 1
  return ("%s/%d-%s"):format(dir, seq, name or "f")
end

--- A new FIFO in the directory.
function S.mkfifo(name)
  local p = S.tmp(name or "fifo")
  S.sh("mkfifo " .. p)
  return p
end

--- The number of descriptors this process has open.
function S.nfds()
  return #assert(fs.scandir("/proc/self/fd"))
end

--- Both ends of a new FIFO, green files: each open waits (in the pool)
-- for the other. From a green thread.
function S.fifo_pair()
  local p = S.mkfifo()
  local w
  local t = green.spawn(function() w = assert(fs.open(p, "w")) end)
  local r = assert(fs.open(p, "r"))
  t:wait()
  return r, w
end

--- Wait (bounded) until no request of green.fs is in the pool.
function S.settled()
  h.eventually(function() return fs.stats().inflight == 0 end,
               "no request in flight")
end

--- Wait (bounded) until one file record of the `base` alive is freed,
-- then check one descriptor of the `fds` open was closed with it.
function S.one_freed(base, fds)
  h.eventually(function() return fs.stats().files == base - 1 end,
               "the record freed")
  assert(S.nfds() == fds - 1, "its descriptor closed")
end

--- Lua source for the scripts that hold the pool's workers with FIFO
-- opens (run by lua5.4; `dir`, `green` and `fs` are locals before it):
-- `fifo(name)` makes a FIFO in `dir`, `until_inflight(n)` turns the hub
-- until `n` requests are in the pool (bounded).
S.script_fifos = [[
local function fifo(name)
  local p = dir .. "/" .. name
  assert(os.execute("mkfifo " .. p))
  return p
end
local function until_inflight(n)
  local deadline = os.time() + 20
  repeat
    green.sleep(0)
    assert(os.time() < deadline, "never " .. n .. " in flight")
  until fs.stats().inflight == n
end
]]

--- Run the file `script` with stock lua5.4 (green from the build under
-- test) and a pool of `workers` threads (UV_THREADPOOL_SIZE): its
-- stdout, stderr and exit code.
function S.run_pool_script(script, workers)
  local build = os.getenv("GREENLUA_BUILD") or "./build"
  return h.sh(
    ("UV_THREADPOOL_SIZE=%d LUA_PATH=%s LUA_CPATH=%s lua5.4 %s"):format(
      workers, h.quote("./lua/?.lua;./lua/?/init.lua;;"),
      h.quote(build .. "/?.so;;"), script), 60)
end

return S
