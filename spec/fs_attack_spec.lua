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

describe("green.fs across green.fork: a completed scandir", function()
  -- The fork comes after a worker completed a scandir (libuv holds its
  -- entries in the request) but before the hub called it back: the parent
  -- delivers it; the child ends it as lost, and must free its entries as
  -- what they are (libuv's cleanup counts them with the request's result,
  -- which the child must not have made an error code first). Deterministic
  -- as fs_spec's completed read: every worker but one held by a FIFO open,
  -- the free one does the scandir, then a queued FIFO open that the
  -- forking thread completes with a blocking io.open.
  it("is freed in the child as it is, and the child exits cleanly",
     function()
    local list = tmp("many")
    sh("mkdir " .. list)
    for i = 1, 64 do
      local f = assert(io.open(("%s/entry-%03d"):format(list, i), "w"))
      f:close()
    end
    local out, err, code = h.greenlua_run([[
      local green = require "green"
      local fs = green.fs
      local dir, list = ...
      local n = tonumber(os.getenv("UV_THREADPOOL_SIZE")) or 4
      local seq = 0
      local function fifo()
        seq = seq + 1
        local p = dir .. "/sfork-" .. seq
        assert(os.execute("mkfifo " .. p))
        return p
      end
      local holds, held = {}, {}
      for i = 1, n - 1 do
        holds[i] = fifo()
        held[i] = green.spawn(function() return fs.open(holds[i], "r") end)
      end
      local until_t = green.now() + 20 -- a bounded wait
      while fs.stats().inflight < n - 1 do
        assert(green.now() < until_t, "the FIFO opens never all started")
        green.sleep(0.001)
      end
      local lister = green.spawn(function() return fs.scandir(list) end)
      local p2 = fifo()
      local opener = green.spawn(function() return fs.open(p2, "r") end)
      green.sleep(0) -- both submitted: the scandir runs, the open waits
      assert(fs.stats().inflight == n + 1)
      local w2 = assert(io.open(p2, "w")) -- the worker is past the scandir
      local pid = green.fork()
      if pid == 0 then
        local names = assert(fs.scandir(list))
        io.stdout:write("child listed ", #names, "\n")
        io.stdout:flush()
        return
      end
      print("parent listed " .. #lister:wait())
      local ws = {}
      for i = 1, n - 1 do ws[i] = assert(io.open(holds[i], "w")) end
      for i = 1, n - 1 do assert(held[i]:wait()):close(); ws[i]:close() end
      assert(opener:wait()):close()
      w2:close()
      print("child", green.process.wait(pid, 30))
    ]], dir .. " " .. list, 60)
    assert.equal(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    table.sort(lines)
    assert.same({ "child\texit\t0", "child listed 64", "parent listed 64" },
                lines)
  end)
end)

describe("green.fs: threads seeking to the end together", function()
  it("all get the size; none waits forever for a size nobody overwrites",
     function()
    green_run(function()
      local p = tmp()
      assert(fs.writefile(p, "abcdef"))
      local f = assert(fs.open(p, "r"))
      local threads = {}
      for i = 1, 3 do
        threads[i] = green.spawn(function()
          -- each asks the pool for the size; the others' fstats came in
          -- between, and no write: the size holds
          return green.with_timeout(20, f.seek, f, "end")
        end)
      end
      for i = 1, 3 do assert.equal(6, threads[i]:wait()) end
      assert.is_true(f:close())
    end)
  end)
end)
