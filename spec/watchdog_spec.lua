-- The hub never starves silently (issue 9): blocking detection, the time
-- slice, green.atomic and green.debug.stats (bindings/watchdog.c).
-- Every busy loop below is bounded in time: it ends when the behaviour it
-- waits for has happened, or after 10 s (then the spec fails).
local green = require "green"
local helper = require "helper"

local clock = os.clock

-- Spin until cond() (checked every iteration) or 10 s of CPU time.
local function spin(cond)
  local t0, n = clock(), 0
  while not cond() and clock() - t0 < 10 do n = n + 1 end
  return n
end

-- Run fn with blocking detection at 'seconds' (report mode unless
-- 'mode'), reports collected; defaults restored after.
local function detecting(seconds, mode, fn)
  local reports = {}
  local old = green.debug.on_blocking(function(gt, secs, where)
    reports[#reports + 1] = { gt = gt, seconds = secs, where = where }
  end)
  green.debug.hub_blocking_detection(true, seconds, mode)
  local ok, err = pcall(fn, reports)
  green.debug.hub_blocking_detection(true, 1)
  green.debug.on_blocking(old)
  if not ok then error(err, 0) end
  return reports
end

local function ticker()
  local ticks = { n = 0 }
  ticks.thread = green.spawn(function()
    while not ticks.stop do
      ticks.n = ticks.n + 1
      green.sleep(0.01)
    end
  end)
  return ticks
end

describe("blocking detection", function()
  it("reports a Lua loop that keeps the hub while others wait", function()
    green_run(function()
      local ticks = ticker()
      local burner
      local reports = detecting(0.2, nil, function(reports)
        burner = green.spawn(function()
          local function burn_cpu() spin(function() return #reports > 0 end)
          end
          burn_cpu()
        end)
        burner:wait()
      end)
      ticks.stop = true
      ticks.thread:wait()
      assert.are.equal(1, #reports)
      assert.are.equal(burner, reports[1].gt)
      assert.is_true(reports[1].seconds >= 0.2)
      assert.matches("^running Lua code\nstack traceback:", reports[1].where)
      assert.matches("burn_cpu", reports[1].where)
    end)
  end)

  it("reports a C function that blocks, naming it", function()
    green_run(function()
      local ticks = ticker()
      -- the stock os.execute (a spec before this one may have run
      -- green.patch(), which makes os.execute green)
      local patched = os.execute
      os.execute = helper.stock.execute -- luacheck: ignore 122
      local reports = detecting(0.2, nil, function()
        green.spawn(function() os.execute("sleep 1") end):wait()
      end)
      os.execute = patched -- luacheck: ignore 122
      ticks.stop = true
      ticks.thread:wait()
      assert.are.equal(1, #reports)
      assert.matches("^inside the C function 'os.execute'",
                     reports[1].where)
      assert.is_true(reports[1].seconds >= 0.2)
    end)
  end)

  it("leaves a lone computation alone", function()
    green_run(function()
      local reports = detecting(0.05, nil, function()
        local t0 = clock()
        spin(function() return clock() - t0 > 0.3 end) -- 6 thresholds
      end)
      assert.are.equal(0, #reports)
    end)
  end)

  it("raises green.BlockingError in raise mode", function()
    green_run(function()
      local ticks = ticker()
      local ok, err
      detecting(0.2, "raise", function()
        ok, err = pcall(spin, function() return false end)
      end)
      ticks.stop = true
      ticks.thread:wait()
      assert.is_false(ok)
      assert.are.equal(green.BlockingError, err)
      assert.matches("^BlockingError", tostring(err))
    end)
  end)

  it("counts episodes in green.debug.stats", function()
    green_run(function()
      local before = green.debug.stats().blocking
      local ticks = ticker()
      detecting(0.2, nil, function(reports)
        spin(function() return #reports > 0 end)
      end)
      ticks.stop = true
      ticks.thread:wait()
      assert.are.equal(before + 1, green.debug.stats().blocking)
    end)
  end)
end)

describe("the time slice", function()
  after_each(function() green.debug.time_slice(nil) end)

  it("keeps two loops that never block both running", function()
    green_run(function()
      assert.are.equal(0, green.debug.time_slice(0.005))
      -- Each loop counts until both counts pass 1000; without the slice
      -- the first would spin alone until its 10 s bound, the other at 0.
      local a, b, N = 0, 0, 1000
      local function both() return a > N and b > N end
      local ta = green.spawn(function()
        spin(function() a = a + 1; return both() end)
        return both()
      end)
      local tb = green.spawn(function()
        spin(function() b = b + 1; return both() end)
        return both()
      end)
      assert.is_true(ta:wait(), "the first loop never saw the second run")
      assert.is_true(tb:wait())
      assert.is_true(green.debug.stats().preemptions > 0)
    end)
  end)

  it("keeps a heartbeat beating through a long computation", function()
    green_run(function()
      green.debug.time_slice(0.005)
      local ticks = ticker()
      local t0 = ticks.n
      spin(function() return ticks.n > t0 + 5 end)
      ticks.stop = true
      ticks.thread:wait()
      assert.is_true(ticks.n > t0 + 5)
    end)
  end)

  it("never preempts inside green.atomic", function()
    green_run(function()
      green.debug.time_slice(0.005)
      local ticks = ticker()
      green.sleep(0) -- the ticker has started
      local seen = green.atomic(function()
        local before = ticks.n
        local t0 = clock()
        spin(function() return clock() - t0 > 0.1 end) -- 20 slices
        return ticks.n - before
      end)
      ticks.stop = true
      ticks.thread:wait()
      assert.are.equal(0, seen)
    end)
  end)

  it("never splits the toolkit's operations", function()
    green_run(function()
      green.debug.time_slice(0.001)
      local q, sem = green.Queue(), green.Semaphore(3)
      local pool = green.pools.Pool{ create = function() return {} end,
                                     max_size = 2 }
      -- The spec's own shared counters are read-modify-writes in user
      -- code, which the slice may split: they run under green.atomic.
      local held, max_held = 0, 0
      local p0 = green.debug.stats().preemptions
      local function enter()
        held = held + 1
        if held > max_held then max_held = held end
      end
      local function leave() held = held - 1 end
      local workers, stop = {}, false
      for w = 1, 4 do
        workers[w] = green.spawn(function()
          local moved, i = 0, 0
          while not stop do
            i = i + 1
            sem:acquire()
            green.atomic(enter)
            q:put(i)
            local item = pool:get()
            local x = 0
            for k = 1, 200000 do x = x + k end -- work the slice cuts
            assert(q:get() ~= nil and x > 0)
            pool:put(item)
            green.atomic(leave)
            sem:release()
            moved = moved + 1
          end
          return moved, i
        end)
      end
      -- Run until the slice has cut in many times (bounded: 30 s).
      helper.eventually(function()
        return green.debug.stats().preemptions - p0 >= 10
      end, "10 preemptions")
      stop = true
      for w = 1, 4 do
        local moved, iterations = workers[w]:wait()
        assert.are.equal(iterations, moved)
        assert.is_true(moved > 0)
      end
      assert.is_true(max_held <= 3)
      assert.are.equal(0, q:qsize())
      assert.are.equal(3, sem:balance())
      assert.are.equal(2, pool:free())
    end)
  end)

  it("refuses a negative or NaN slice", function()
    assert.has_error(function() green.debug.time_slice(-1) end)
    assert.has_error(function() green.debug.time_slice(0 / 0) end)
    assert.has_error(function()
      green.debug.hub_blocking_detection(true, 0)
    end)
    assert.has_error(function()
      green.debug.hub_blocking_detection(true, 1, "loud")
    end)
  end)
end)

describe("blocking detection's edges", function()
  it("a positive threshold or slice below a nanosecond is not 'off'",
     function()
    green.debug.hub_blocking_detection(true, 1e-10)
    local threshold = green.core.watchdog().threshold
    green.debug.hub_blocking_detection(true, 1)
    local old = green.debug.time_slice(1e-10)
    local slice = green.core.watchdog().slice
    green.debug.time_slice(old)
    assert.is_true(threshold > 0)
    assert.is_true(slice > 0)
  end)

  it("shows a reporter's error that is not a string", function()
    local _, err, code = helper.lua54_run([[
      local green = require "green"
      local reported = false
      green.debug.on_blocking(function()
        reported = true
        error(setmetatable({}, { __tostring = function()
          return "a table of an error"
        end }))
      end)
      green.debug.hub_blocking_detection(true, 0.05)
      local ticker = green.spawn(function()
        while not reported do green.sleep(0.01) end
      end)
      green.spawn(function()
        local t0 = os.clock()
        while not reported and os.clock() - t0 < 10 do end
      end):wait()
      ticker:wait()
      print(reported)
    ]])
    assert.are.equal(0, code, err)
    assert.matches("green: the blocking reporter failed: a table of an "
                   .. "error\n", err)
  end)

  it("ends the starving thread when its reporter kills it", function()
    local reporters = {
      function(gt) gt:kill() end,
      function(gt) pcall(gt.kill, gt) end, -- its own raise caught
    }
    for i, reporter in ipairs(reporters) do
      green_run(function()
        local ticks = ticker()
        local old = green.debug.on_blocking(reporter)
        green.debug.hub_blocking_detection(true, 0.1)
        local finished = false
        local burner = green.spawn(function()
          spin(function() return false end) -- 10 s of CPU unless killed
          finished = true
        end)
        local ok, res = pcall(burner.wait, burner)
        green.debug.hub_blocking_detection(true, 1)
        green.debug.on_blocking(old)
        ticks.stop = true
        ticks.thread:wait()
        assert.is_true(ok, res)
        assert.is_false(finished, "reporter " .. i .. ": the kill was "
                        .. "swallowed")
        assert.are.equal(green.GreenletExit, res)
      end)
    end
  end)
end)

describe("green.debug.stats", function()
  it("counts switches and turns and measures the loop lag", function()
    green_run(function()
      green.debug.stats() -- a new window
      local s0 = green.debug.stats()
      for _ = 1, 10 do green.sleep(0) end
      local s = green.debug.stats()
      assert.is_true(s.switches >= s0.switches + 10)
      assert.is_true(s.turns >= s0.turns + 10)
      assert.is_true(s.threads >= 1)
      assert.is_true(s.lag_max >= 0 and s.lag_mean >= 0)
      assert.is_true(s.lag_mean <= s.lag_max)
    end)
  end)
end)

describe("greenlua", function()
  it("--time-slice=S turns the slice on", function()
    local out, err, code = helper.greenlua_run([[
      local green = require "green"
      print(green.debug.time_slice())
    ]], nil, nil)
    assert.are.equal(0, code, err)
    assert.are.equal("0.0\n", out)
    out, err, code = helper.sh(helper.greenlua
      .. " --time-slice=0.25 -e 'print(require(\"green\").debug"
      .. ".time_slice())'")
    assert.are.equal(0, code, err)
    assert.are.equal("0.25\n", out)
    local _
    _, err, code = helper.sh(helper.greenlua .. " --time-slice=x -e ''")
    assert.are.equal(1, code)
    assert.matches("bad time slice 'x'", err)
  end)

  it("prints a thread dump on SIGQUIT and keeps running", function()
    local out, err, code = helper.sh(table.concat({
      "bin=$(realpath " .. helper.greenlua .. ")",
      "f=$(mktemp)",
      "cat > $f <<'EOF'",
      "local green = require 'green'",
      "local t = green.spawn(function() green.sleep(30) end)",
      "t.name = 'sleeper'",
      "io.stdout:write('ready\\n'); io.stdout:flush()",
      -- until the shell has seen the dump (a bounded wait: 30 s)
      "local go = arg[1] .. '.go'",
      "for _ = 1, 3000 do",
      "  local f = io.open(go)",
      "  if f then f:close(); break end",
      "  green.sleep(0.01)",
      "end",
      "t:kill()",
      "print('still running')",
      "EOF",
      "$bin $f $f > $f.out 2> $f.err &",
      "pid=$!",
      "for i in $(seq 1 3000); do [ -s $f.out ] && break; sleep 0.01; done",
      "kill -QUIT $pid",
      "for i in $(seq 1 3000); do grep -q \"'sleeper' suspended\" $f.err "
        .. "&& break; sleep 0.01; done",
      "touch $f.go",
      "wait $pid; echo \"rc=$?\"; cat $f.out; cat $f.err >&2",
      "rm -f $f $f.out $f.err $f.go",
    }, "\n"))
    assert.are.equal(0, code, err)
    assert.matches("rc=0\nready\nstill running\n", out)
    assert.matches("green threads: %d+ live", err)
    assert.matches("'sleeper' suspended in green.sleep", err)
  end)

  -- The signal comes while the main chunk is inside a C function (the
  -- read of popen's pipe) and the program never yields after it: the dump
  -- must come from the running thread itself, as the hub never runs again.
  it("prints the SIGQUIT dump while a thread keeps the hub", function()
    local _, err, code = helper.greenlua_run([[
      local green = require "green"
      green.debug.hub_blocking_detection(false)
      local t = green.spawn(function() green.sleep(30) end)
      t.name = "sleeper"
      local pid = io.open("/proc/self/stat"):read("*n")
      local function stuck()
        io.popen("kill -QUIT " .. pid):read("a")
        local x = 0
        for i = 1, 1000 do x = x + i end
        return x
      end
      stuck()
      os.exit(0)
    ]])
    assert.are.equal(0, code, err)
    assert.matches("'main' running, spawned at", err)
    assert.matches("'sleeper' new", err)
    assert.matches("in local 'stuck'", err)
  end)

  it("a SIGQUIT dump whose look-up raises changes nothing in the program",
     function()
    -- The signal comes while the main chunk is inside a C function (the
    -- read of popen's pipe), so the dump runs in the main chunk's thread:
    -- the error of green.debug's __index ended the process.
    local out, err, code = helper.greenlua_run([[
      local green = require "green"
      package.loaded["green.debug"] = setmetatable({}, {
        __index = function() error("hostile index") end })
      local pid = io.open("/proc/self/stat"):read("*n")
      io.popen("kill -QUIT " .. pid):read("a")
      green.sleep(0)
      print("after")
    ]])
    assert.are.equal(0, code, err)
    assert.are.equal("after\n", out)
  end)

  -- As at startup, before green.debug is loaded: the thread's hook finds
  -- no dump to call, and the request must wait for the hub (it was lost).
  it("keeps a SIGQUIT that comes before green.debug is loaded", function()
    local _, err, code = helper.greenlua_run([[
      local green = require "green"
      local gdebug = package.loaded["green.debug"]
      package.loaded["green.debug"] = nil
      local pid = io.open("/proc/self/stat"):read("*n")
      io.popen("kill -QUIT " .. pid):read("a")
      local x = 0
      for i = 1, 1000 do x = x + i end
      package.loaded["green.debug"] = gdebug
      green.sleep(0)
      io.stderr:write("after\n")
    ]])
    assert.are.equal(0, code, err)
    assert.matches("green threads: %d+ live.*after\n$", err)
  end)

  -- Both signals come while a thread is inside a C function, so neither
  -- hook has run yet; the Ctrl-C's hook, set first, must dump too.
  it("prints the SIGQUIT dump that comes while a Ctrl-C is pending",
     function()
    local _, err, code = helper.greenlua_run([[
      local green = require "green"
      green.debug.hub_blocking_detection(false)
      local pid = io.open("/proc/self/stat"):read("*n")
      local spinner = green.spawn(function()
        io.popen("kill -INT " .. pid .. "; kill -QUIT " .. pid):read("a")
        local x = 0
        for i = 1, 1000 do x = x + i end
        os.exit(0)
      end)
      spinner.name = "spinner"
      spinner:wait()
    ]])
    assert.are.equal(0, code, err)
    assert.matches("'spinner' running", err)
  end)
end)
