-- green.fs under attack: files shared by threads that close, are killed
-- or collected while another thread's request is in the pool; hostile
-- arguments; the pool flooded with kills in between. Every record must be
-- freed (fs.stats().files comes back), every descriptor closed.
local green = require "green"
local h = require "helper"
local fs = green.fs

local S = require "fs_support"

local sh, tmp, nfds = S.sh, S.tmp, S.nfds
local fifo_pair, settled = S.fifo_pair, S.settled

setup(S.setup) -- a fresh temporary directory per spec file

teardown(S.teardown)

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
      S.one_freed(base, fds)
      w:close()
      settled()
    end)
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

describe("green.fs under churn", function()
  -- Many requests beyond libuv's 4 workers, of every kind, on shared and
  -- own files; a third of the threads killed at random points, a third
  -- under Timeouts of a millisecond or two, files left to the collector.
  -- Once all is done every record is freed and every descriptor closed
  -- (ASan's leak detector checks the rest).
  it("frees every record and descriptor whatever was killed where",
     function()
    green_run(function()
      local base_dir = tmp("churn")
      assert(fs.mkdir(base_dir))
      for i = 1, 20 do
        assert(fs.writefile(("%s/e%d"):format(base_dir, i),
                            ("line %d\n"):format(i):rep(2000)))
      end
      collectgarbage()
      settled()
      local base, fds = fs.stats().files, nfds()
      local function path(n) return ("%s/e%d"):format(base_dir, n) end
      local shared = { assert(fs.open(path(1), "r+")),
                       assert(fs.open(path(2), "a+")) }
      local rnd = 12345 -- a fixed sequence: the same run every time
      local function random(n)
        rnd = (rnd * 1103515245 + 12345) % 2147483648
        return rnd % n + 1
      end
      local ops = {
        function() return fs.stat(path(random(20))) end,
        function() return fs.scandir(base_dir) end,
        function() return fs.realpath(base_dir .. "/.") end,
        function() return fs.readfile(path(random(20))) end,
        function()
          return fs.writefile(("%s/w%d"):format(base_dir, random(5)),
                              ("x"):rep(random(100000)))
        end,
        function()
          local f <close> = assert(fs.open(path(random(20))))
          return f:read("a", "l", 10, "n")
        end,
        function() return shared[random(2)]:read(random(5000), "l") end,
        function() return shared[random(2)]:write(("y"):rep(random(70000))) end,
        function() return shared[random(2)]:seek("end", -random(10)) end,
        function() return shared[random(2)]:flush() end,
        function() assert(fs.open(path(random(20)))):read(100) end,
        function()
          for l in fs.lines(path(random(20))) do
            if #l > 100 then break end
          end
        end,
      }
      for _ = 1, 8 do
        local ts = {}
        for i = 1, 40 do
          local op = ops[random(#ops)]
          if random(3) == 1 then
            local s = random(3) / 1000
            ts[i] = green.spawn(function()
              return pcall(green.with_timeout, s, op)
            end)
          else
            ts[i] = green.spawn(op)
          end
        end
        green.sleep(0)
        for i = 1, 40 do
          if random(3) == 1 then ts[i]:kill() end
          if random(8) == 1 then green.sleep(0) end
          if random(16) == 1 then collectgarbage() end
        end
        for i = 1, 40 do ts[i]:wait() end
      end
      for _, f in ipairs(shared) do assert.is_true(f:close()) end
      h.eventually(function()
        collectgarbage()
        return fs.stats().inflight == 0 and fs.stats().files == base
      end, "every record freed")
      assert.equal(fds, nfds())
    end)
  end)
end)

describe("green.fs out of descriptors", function()
  it("open, lines, scandir and readfile fail with EMFILE and lose nothing; "
     .. "all works once descriptors are free", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local green = require "green"
      local fs = green.fs
      local files, err, code = {}, nil, nil
      for _ = 1, 200 do
        local g, e, c = fs.open("/dev/null", "r")
        if not g then err, code = e, c break end
        files[#files + 1] = g
      end
      print(#files > 0, err, code)
      print(fs.scandir("/proc/self/fd"))
      print(pcall(fs.lines, "/dev/null"))
      print(fs.readfile("/dev/null"))
      print(fs.stats().files == #files, fs.stats().inflight)
      for _, g in ipairs(files) do assert(g:close()) end
      print(fs.readfile("/dev/null"), fs.stats().files)
    ]])
    f:close()
    local out, err, rc = h.sh(("ulimit -n 40 && %s %s"):format(h.greenlua,
                                                              script), 60)
    os.remove(script)
    assert.equal(0, rc, err)
    assert.equal(table.concat({
      "true\t/dev/null: Too many open files\t24",
      "nil\t/proc/self/fd: Too many open files\t24",
      "false\tcannot open file '/dev/null' (Too many open files)",
      "nil\t/dev/null: Too many open files\t24",
      "true\t0",
      "\t0",
      "" }, "\n"), out)
  end)
end)

describe("green.fs at the close of the state", function()
  -- The start of a script for stock lua5.4 run in directory 'd': green
  -- loaded, and a finalizer that runs after green's hub has closed (made
  -- before green) prints how many descriptors on d/regular are open then.
  local function prelude(d)
    return ("local dir = %q\n"):format(d) .. [[
local function fds_on(pathpart)
  local st = io.open("/proc/self/stat"):read("a")
  local p = io.popen("ls -l /proc/" .. st:match("^(%d+)") .. "/fd")
  local n = 0
  for l in p:lines() do if l:find(pathpart, 1, true) then n = n + 1 end end
  p:close()
  return n
end
local after = setmetatable({}, {__gc = function()
  io.stdout:write("descriptors left: ", fds_on(dir .. "/regular"), "\n")
end})
local green = require "green"
local fs = green.fs
]]
  end

  -- The state closes (the end of a stock lua5.4 script) with green
  -- threads waiting for requests still in the pool: the hub's close runs
  -- the loop until they end, and their threads never run again. What
  -- their continuations would have freed is freed there: an open's
  -- descriptor closed, a scandir's entries and a stat's request freed
  -- (ASan's leak detector checks those). Every worker is held by a FIFO
  -- open that a finalizer run as the state closes lets go, so the
  -- requests queued behind them all run during the hub's close. (The
  -- FIFO opens themselves may look stuck to the close, which then does
  -- not wait for them: docs/api.md. Only the regular file's count.)
  it("closes what the opens opened and frees the path calls' requests",
     function()
    local d = tmp("close")
    sh("mkdir " .. d)
    local out, err, code = h.lua54_run(prelude(d) .. [[
local n = tonumber(os.getenv("UV_THREADPOOL_SIZE")) or 4
local holds = {}
for i = 1, n do
  holds[i] = dir .. "/hold" .. i
  assert(os.execute("mkfifo " .. holds[i]))
  green.spawn(function() return fs.open(holds[i], "r") end)
end
assert(io.open(dir .. "/regular", "w")):close()
for _ = 1, 4 do
  green.spawn(function() return fs.open(dir .. "/regular") end)
  green.spawn(function() return fs.scandir("/usr/bin") end)
  green.spawn(function() return fs.stat("/") end)
  green.spawn(function() return fs.realpath("/usr/bin/..") end)
end
local deadline = os.time() + 20
repeat
  green.sleep(0.001)
  assert(os.time() < deadline, "the requests never all went in")
until fs.stats().inflight == n + 16
-- made after green: finalized as the state closes, before green's hub
-- closes: the FIFO opens end then, and the requests queued behind them
-- run while the hub closes, their threads never to run again
local before = setmetatable({}, {__gc = function()
  for i = 1, n do
    local w = io.open(holds[i], "w")
    if w then w:close() end
  end
end})
_ = after, before
]])
    assert.equal(0, code, err)
    assert.equal("", (err:gsub("==%d+==Running thread.-\n", "")))
    assert.equal("descriptors left: 0\n", out)
  end)
  it("frees what threads woken by their request, never run since, hold",
     function()
    -- Their requests ended in a turn of the hub, and the state closes
    -- before they run again (the thread that woke with them ends the
    -- script): an open's file is closed, a scandir's request freed.
    -- Deterministic: both workers of the pool (UV_THREADPOOL_SIZE=2) held
    -- by FIFO opens; one let go, the requests run on it, then a queued
    -- FIFO open the main thread completes with a blocking io.open: by
    -- then all are posted, and the hub has not turned.
    local d = tmp("ready")
    sh("mkdir " .. d)
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(prelude(d), [[
]] .. S.script_fifos .. [[
local a, b, c = fifo("a"), fifo("b"), fifo("c")
assert(io.open(dir .. "/regular", "w")):close()
-- both workers (UV_THREADPOOL_SIZE=2) held by FIFO opens
green.spawn(function() return fs.open(a, "r") end)
green.spawn(function() return fs.open(b, "r") end)
until_inflight(2)
local ran = 0
for _ = 1, 8 do
  green.spawn(function() fs.open(dir .. "/regular") ran = ran + 1 end)
end
for _ = 1, 2 do
  green.spawn(function() fs.scandir("/usr/bin") ran = ran + 1 end)
end
green.spawn(function() return fs.open(c, "r") end)
until_inflight(13)
-- the hub does not turn from here to the end of the wait below
local wa = assert(io.open(a, "w")) -- one worker free: the requests run
local wc = assert(io.open(c, "w")) -- returns once they all have
-- their callbacks come in one turn, which wakes this thread first
local deadline = os.time() + 20
repeat
  green.sleep(0)
  assert(os.time() < deadline, "the opens never called back")
until fs.stats().inflight <= 2
io.stdout:write("threads that ran after their request: ", ran, "\n")
wa:close(); wc:close()
_ = after
]])
    f:close()
    local out, err, code = S.run_pool_script(script, 2)
    os.remove(script)
    assert.equal(0, code, err)
    assert.equal("threads that ran after their request: 0\n"
                 .. "descriptors left: 0\n", out)
  end)
end)
