-- green.fs under attack: files shared by threads that close, are killed
-- or collected while another thread's request is in the pool; hostile
-- arguments; the pool flooded with kills in between. Every record must be
-- freed (fs.stats().files comes back), every descriptor closed.
local green = require "green"
local h = require "helper"
local fs = green.fs

local dir

local function sh(cmd)
  assert(os.execute(cmd), "failed: " .. cmd)
end

local seq = 0
local function tmp(name)
  seq = seq + 1
  return ("%s/%d-%s"):format(dir, seq, name or "f")
end

local function mkfifo()
  local p = tmp("fifo")
  sh("mkfifo " .. p)
  return p
end

local function nfds()
  return #assert(fs.scandir("/proc/self/fd"))
end

local function fifo_pair()
  local p = mkfifo()
  local w
  local t = green.spawn(function() w = assert(fs.open(p, "w")) end)
  local r = assert(fs.open(p, "r"))
  t:wait()
  return r, w
end

local function settled()
  h.eventually(function() return fs.stats().inflight == 0 end,
               "no request in flight")
end

setup(function()
  dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -m 700 " .. dir)
end)

teardown(function()
  sh("rm -rf " .. dir)
end)

describe("green.fs: a file closed in the background under a reader", function()
  it("a killed thread's <close> while another thread's read is in the "
     .. "pool: the reader fails, the record is freed", function()
    green_run(function()
      collectgarbage()
      settled()
      local r, w = fifo_pair()
      local base, fds = fs.stats().files, nfds()
      local reader = green.spawn(function() return pcall(r.read, r, "l") end)
      h.until_suspended(reader, "file:read")
      local ev = green.Event()
      local holder = green.spawn(function()
        local _ <close> = r
        ev:wait()
      end)
      h.until_suspended(holder, "Event:wait")
      holder:kill() -- its <close> cannot wait: closes in the background
      assert.equal("closed file", fs.type(r))
      w:write("x\n"):flush()
      local ok, err = reader:wait()
      assert.is_false(ok)
      assert.matches("attempt to use a closed file", err)
      h.eventually(function() return fs.stats().files == base - 1 end,
                   "the record freed")
      assert.equal(fds - 1, nfds())
      w:close()
      settled()
    end)
  end)
end)
