local green = require "green"
local helper = require "helper"

local spawn, sleep = green.spawn, green.sleep

describe("green.spawn", function()
  it("starts the thread on a later hub turn, never inside spawn", function()
    green_run(function()
      local log = {}
      local t = spawn(function() log[#log + 1] = "child" end)
      log[#log + 1] = "parent"
      assert.are.equal("new", t:status())
      t:wait()
      assert.are.same({ "parent", "child" }, log)
    end)
  end)

  it("passes arguments and returns every result through wait", function()
    green_run(function()
      local t = spawn(function(a, b, c) return c, b, a, nil end, 1, nil, 3)
      local r = table.pack(t:wait())
      assert.are.equal(4, r.n)
      assert.are.same({ 3, nil, 1, nil }, { r[1], r[2], r[3], r[4] })
      assert.are.same({ 3, nil, 1, nil }, { t:wait() }) -- again: same
    end)
  end)

  it("returns nothing from spawn_n but runs the function", function()
    green_run(function()
      local ran
      assert.are.equal(0, select("#", green.spawn_n(function(x) ran = x end,
                                                     7)))
      sleep(0)
      assert.are.equal(7, ran)
    end)
  end)

  it("accepts callable tables and rejects non-callables", function()
    green_run(function()
      local obj = setmetatable({}, { __call = function(_, x) return x end })
      assert.are.equal(5, spawn(obj, 5):wait())
      assert.has_error(function() spawn(42) end)
      assert.has_error(function() spawn() end)
    end)
  end)

  it("runs ready threads round-robin in FIFO order", function()
    local log = {}
    green_run(function()
      local ts = {}
      for _, name in ipairs { "a", "b", "c" } do
        ts[#ts + 1] = spawn(function()
          for i = 1, 3 do
            log[#log + 1] = name .. i
            sleep(0)
          end
        end)
      end
      for _, t in ipairs(ts) do t:wait() end
    end)
    assert.are.same({ "a1", "b1", "c1", "a2", "b2", "c2", "a3", "b3", "c3" },
                    log)
  end)

  it("spawns from a dying thread (in its cleanup and in a link)", function()
    green_run(function()
      local got = {}
      local t = spawn(function()
        local _ <close> = setmetatable({}, { __close = function()
          spawn(function() got[#got + 1] = "from close" end)
        end })
        error("dying")
      end)
      t:link(function() spawn(function() got[#got + 1] = "from link" end) end)
      assert.has_error(function() t:wait() end)
      sleep(0)
      sleep(0)
      table.sort(got)
      assert.are.same({ "from close", "from link" }, got)
    end)
  end)
end)

describe("green.sleep", function()
  it("wakes sleepers in deadline order", function()
    local log, due = {}, {}
    green_run(function()
      local ts = {}
      for _, d in ipairs { 0.03, 0.01, 0.02 } do
        ts[#ts + 1] = spawn(function()
          due[d] = green.now() + d
          sleep(d)
          log[#log + 1] = d
        end)
      end
      for _, t in ipairs(ts) do t:wait() end
    end)
    -- By deadline, not by duration: on a loaded machine the threads may
    -- start far enough apart to change which deadline comes first.
    local bydue = { 0.03, 0.01, 0.02 }
    table.sort(bydue, function(a, b) return due[a] < due[b] end)
    assert.are.same(bydue, log)
  end)

  it("sleeps at least 1 ms for a positive value below the resolution",
     function()
    green_run(function()
      local t0 = green.now()
      sleep(1e-6)
      assert.is_true(green.now() - t0 >= 0.001)
    end)
  end)

  it("lets other threads run while one sleeps", function()
    green_run(function()
      local n = 0
      local busy = spawn(function()
        while n < 1e9 do n = n + 1; sleep(0) end
      end)
      sleep(0.01)
      assert.is_true(n > 0)
      busy:kill()
    end)
  end)

  it("rejects a non-number", function()
    green_run(function()
      assert.has_error(function() sleep("soon") end)
    end)
  end)
end)

describe("green.spawn_after", function()
  it("starts the thread after the delay", function()
    green_run(function()
      local log = {}
      local t = green.spawn_after(0.01, function(x) log[#log + 1] = x end,
                                  "late")
      spawn(function() log[#log + 1] = "now" end)
      assert.are.equal("delayed", t:status())
      t:wait()
      assert.are.same({ "now", "late" }, log)
    end)
  end)

  it("never runs a thread canceled before it started", function()
    green_run(function()
      local ran = false
      local t = green.spawn_after(0.01, function() ran = true end)
      t:cancel()
      assert.are.equal(green.GreenletExit, t:wait())
      sleep(0.02)
      assert.is_false(ran)
      assert.is_true(t:dead())
    end)
  end)

  it("cancel does nothing to a thread that has started", function()
    green_run(function()
      local t = spawn(function() sleep(0.001); return "done" end)
      sleep(0)
      t:cancel()
      assert.are.equal("done", t:wait())
    end)
  end)

  it("wait raises the string error of a cancel or kill before the start",
     function()
    green_run(function()
      local t = spawn(function() return "ran" end)
      t:cancel("canceled early")
      local ok, err = pcall(t.wait, t)
      assert.is_false(ok)
      assert.are.equal("canceled early", err) -- (it raised nil)
      local t2 = green.spawn_after(10, function() return "ran" end)
      t2:kill("killed early")
      ok, err = pcall(t2.wait, t2)
      assert.is_false(ok)
      assert.are.equal("killed early", err)
    end)
  end)
end)

describe("green.getcurrent", function()
  it("returns the running thread, and the main thread outside", function()
    local main = green.getcurrent()
    assert.are.equal("main", main.name)
    assert.matches("%(main%)", tostring(main))
    green_run(function()
      local me = green.getcurrent()
      assert.are_not.equal(main, me)
      local t = spawn(function() return green.getcurrent() end)
      assert.are.equal(t, t:wait())
    end)
    assert.are.equal(main, green.getcurrent())
  end)
end)

describe("GreenThread:wait", function()
  it("re-raises a string error with the thread's traceback", function()
    green_run(function()
      local t = spawn(function() error("boom") end)
      t.name = "worker"
      local ok, err = pcall(t.wait, t)
      assert.is_false(ok)
      assert.matches("boom", err)
      assert.matches("in green thread %d+ 'worker'", err)
      assert.matches("stack traceback", err)
    end)
  end)

  it("re-raises a non-string error as the same object", function()
    green_run(function()
      local e = { code = 42 }
      local t = spawn(function() error(e) end)
      local ok, err = pcall(t.wait, t)
      assert.is_false(ok)
      assert.are.equal(e, err)
    end)
  end)

  it("raises when a thread waits for itself", function()
    green_run(function()
      local ok, err = pcall(function()
        local me = green.getcurrent()
        me:wait()
      end)
      assert.is_false(ok)
      assert.matches("cannot wait for itself", err)
    end)
  end)

  it("wakes every waiter", function()
    green_run(function()
      local t = spawn(function() sleep(0.005); return "x" end)
      local ws = {}
      for i = 1, 3 do ws[i] = spawn(function() return t:wait() end) end
      for i = 1, 3 do assert.are.equal("x", ws[i]:wait()) end
    end)
  end)
end)

describe("GreenThread:kill", function()
  it("raises GreenletExit at the blocking point and runs cleanup",
     function()
    green_run(function()
      local log = {}
      local t = spawn(function()
        local _ <close> = setmetatable({}, { __close = function(_, err)
          log[#log + 1] = "close " .. tostring(err)
        end })
        local ok, err = pcall(sleep, 10)
        log[#log + 1] = "pcall " .. tostring(ok) .. " " .. tostring(err)
        sleep(10) -- sticky: raises again
        log[#log + 1] = "not reached"
      end)
      sleep(0)
      t:kill()
      assert.is_true(t:dead()) -- kill returns after the target is dead
      assert.are.equal(green.GreenletExit, t:wait())
      assert.are.same({ "pcall false GreenletExit", "close GreenletExit" },
                      log)
    end)
  end)

  it("makes a blocking call in a cleanup handler raise again (sticky)",
     function()
    green_run(function()
      local cleaned = false
      local t = spawn(function()
        local _ <close> = setmetatable({}, { __close = function()
          local ok = pcall(sleep, 0.001) -- killed: even this raises
          cleaned = not ok
        end })
        sleep(10)
      end)
      sleep(0)
      t:kill()
      assert.is_true(cleaned)
    end)
  end)

  it("never runs a thread killed before it started", function()
    green_run(function()
      local ran = false
      local t = spawn(function() ran = true end)
      green.kill(t)
      assert.is_true(t:dead())
      assert.is_false(ran)
      assert.are.equal(green.GreenletExit, t:wait())
    end)
  end)

  it("does nothing to a dead thread", function()
    green_run(function()
      local t = spawn(function() return 1 end)
      assert.are.equal(1, t:wait())
      t:kill()
      t:kill("again")
      assert.are.equal(1, t:wait())
    end)
  end)

  it("raises a custom error, which wait re-raises", function()
    green_run(function()
      local t = spawn(function() sleep(10) end)
      sleep(0)
      t:kill("stop it")
      local ok, err = pcall(t.wait, t)
      assert.is_false(ok)
      assert.matches("stop it", err)
    end)
  end)

  it("raises in the caller when a thread kills itself", function()
    green_run(function()
      local t = spawn(function()
        local me = green.getcurrent()
        me:kill("suicide")
        return "not reached"
      end)
      local ok, err = pcall(t.wait, t)
      assert.is_false(ok)
      assert.matches("suicide", err)
    end)
  end)

  it("kills a thread that was woken but has not run yet", function()
    green_run(function()
      local t = spawn(function() sleep(0); return "ran on" end)
      sleep(0) -- t is in sleep(0), queued again
      t:kill()
      assert.are.equal(green.GreenletExit, t:wait())
    end)
  end)

  it("kills a thread blocked in wait on another", function()
    green_run(function()
      local target = spawn(function() sleep(0.01); return "t" end)
      local waiter = spawn(function() return target:wait() end)
      sleep(0)
      waiter:kill()
      assert.are.equal(green.GreenletExit, waiter:wait())
      assert.are.equal("t", target:wait())
    end)
  end)

  it("a kill of the main thread raises once: main never dies, and " ..
     "blocks again afterwards", function()
    -- (in a subprocess: a main thread killed for good would fail every
    -- spec after this one)
    local out, err, code = helper.lua54_run([[
      local green = require "green"
      local main = green.getcurrent()
      green.spawn(function() main:kill("stop main") end)
      print(pcall(green.sleep, 10))
      local t = green.spawn(function() return "ran" end)
      print(pcall(t.wait, t))
      print(pcall(main.kill, main, "self")) -- itself: raises at once
      print(pcall(green.sleep, 0))
      green.spawn(function() main:kill() end)
      print(pcall(green.run))
      print(pcall(green.run, function() return "run" end))
    ]])
    assert.are.equal(0, code, err)
    assert.are.equal("false\tstop main\ntrue\tran\nfalse\tself\n" ..
                     "true\nfalse\tGreenletExit\ntrue\trun\n", out)
  end)
end)

describe("GreenThread:link", function()
  it("calls fn(gt, ...) when the thread ends, in order", function()
    green_run(function()
      local log = {}
      local t = spawn(function() sleep(0); return "r" end)
      t:link(function(gt, x) log[#log + 1] = { gt == t, x, gt:wait() } end,
             "arg")
      t:link(function() log[#log + 1] = "second" end)
      t:wait()
      sleep(0)
      assert.are.same({ { true, "arg", "r" }, "second" }, log)
    end)
  end)

  it("calls fn at once if the thread has ended", function()
    green_run(function()
      local t = spawn(function() end)
      t:wait()
      local called = false
      t:link(function() called = true end)
      assert.is_true(called)
    end)
  end)

  it("a kill after the function returned changes nothing (issue 7)",
     function()
    green_run(function()
      local release = green.Event()
      local link_done = false
      local t = spawn(function() return 42 end)
      t:link(function()
        release:wait() -- the thread has returned; its link is blocked
        link_done = true
      end)
      sleep(0)
      assert.are.equal("suspended", (t:status()))
      local killer = spawn(function() t:kill() end)
      sleep(0) -- the killer waits for t's links to end
      assert.is_false(killer:dead())
      release:send()
      killer:wait()
      assert.is_true(link_done) -- the kill did not interrupt the link
      assert.is_true(t:dead())
      assert.are.equal(42, t:wait())
    end)
  end)

  it("a thread killing itself from its link keeps its result", function()
    green_run(function()
      local t = spawn(function() return "done" end)
      local ok, err
      t:link(function(gt) ok, err = pcall(gt.kill, gt) end)
      assert.are.equal("done", t:wait())
      sleep(0)
      assert.is_true(ok, err)
      assert.are.equal("done", t:wait())
    end)
  end)

  it("a Timeout inside a link is the link's, not the outcome", function()
    green_run(function()
      local caught
      local t = spawn(function() return "result" end)
      t:link(function()
        local _ <close> = green.Timeout(0.001)
        local ok, err = pcall(sleep, 10)
        caught = not ok and green.is_timeout(err)
      end)
      local finished = green.Event()
      t:link(function() -- blocking still works after it
        sleep(0.001)
        finished:send()
      end)
      finished:wait()
      assert.is_true(caught)
      assert.are.equal("result", t:wait())
    end)
  end)

  it("links of a killed thread may block", function()
    green_run(function()
      local slept
      local t = spawn(function() sleep(10) end)
      t:link(function() slept = pcall(sleep, 0.001) end)
      sleep(0)
      t:kill()
      assert.is_true(slept)
      assert.are.equal(green.GreenletExit, t:wait())
    end)
  end)

  it("link and unlink on a non-thread say so", function()
    for _, name in ipairs({ "link", "unlink" }) do
      for _, bad in ipairs({ 5, {}, "x", io.stdout }) do
        local ok, err = pcall(green.GreenThread[name], bad, print)
        assert.is_false(ok)
        assert.matches("calling '" .. name .. "' on bad self %(green%."
                       .. "GreenThread expected, got " .. type(bad) .. "%)",
                       err)
      end
    end
  end)

  it("unlink removes a link", function()
    green_run(function()
      local called = false
      local function f() called = true end
      local t = spawn(function() end)
      t:link(f)
      assert.is_true(t:unlink(f))
      assert.is_false(t:unlink(f))
      t:wait()
      assert.is_false(called)
    end)
  end)

  it("a link that unlinks itself or an earlier link skips no other link",
     function()
    green_run(function()
      local log = {}
      local t = spawn(function() end)
      local first, self_unlinking
      function first() log[#log + 1] = "first" end
      function self_unlinking(gt)
        log[#log + 1] = "unlinker"
        assert.is_true(gt:unlink(self_unlinking))
        assert.is_true(gt:unlink(first)) -- has run: nothing else moves
        gt:link(function() log[#log + 1] = "added" end)
      end
      t:link(first)
      t:link(self_unlinking)
      t:link(function() log[#log + 1] = "third" end)
      t:link(function(gt) -- unlinks one that has not run: it never runs
        log[#log + 1] = "fourth"
        gt:unlink(first)
      end)
      t:wait()
      assert.are.same({ "first", "unlinker", "third", "fourth", "added" },
                      log)
    end)
  end)

  it("unlink inside a link removes a later link before it runs", function()
    green_run(function()
      local log = {}
      local t = spawn(function() end)
      local function later() log[#log + 1] = "later" end
      t:link(function(gt)
        log[#log + 1] = "first"
        assert.is_true(gt:unlink(later))
      end)
      t:link(later)
      t:link(function() log[#log + 1] = "last" end)
      t:wait()
      assert.are.same({ "first", "last" }, log)
    end)
  end)
end)

describe("error reporting", function()
  it("reports an unobserved error once, with name and spawn site",
     function()
    local reports = {}
    local old = green.on_error(function(gt, err, tb)
      reports[#reports + 1] = { gt = gt, err = err, tb = tb }
    end)
    local ok, err = pcall(green.run, function()
      local t = spawn(function() error("lost") end)
      t.name = "orphan"
      sleep(0)
      sleep(0)
    end)
    green.on_error(old)
    assert.is_true(ok, err)
    assert.are.equal(1, #reports)
    assert.matches("lost", reports[1].err)
    assert.matches("stack traceback", reports[1].tb)
    assert.are.equal("orphan", reports[1].gt.name)
    assert.matches("thread_spec.lua:%d+", green.core.site(reports[1].gt))
  end)

  it("does not report errors that a wait or a link observes", function()
    local reports = 0
    local old = green.on_error(function() reports = reports + 1 end)
    pcall(green.run, function()
      local a = spawn(function() error("a") end)
      local b = spawn(function() error("b") end)
      b:link(function() end)
      pcall(a.wait, a)
      sleep(0)
    end)
    green.on_error(old)
    assert.are.equal(0, reports)
  end)

  it("prints to stderr by default, naming the thread", function()
    local h = require "helper"
    local _, err, code = h.greenlua_run([[
      local green = require "green"
      local t = green.spawn(function() error("unseen failure") end)
      t.name = "bg"
      green.sleep(0.01)
      print("main goes on")
    ]])
    assert.are.equal(0, code)
    assert.matches("unseen failure", err)
    assert.matches("'bg'", err)
    assert.matches("spawned at", err)
    local _, n = err:gsub("unseen failure", "")
    assert.are.equal(1, n)
  end)

  it("survives a failing error handler", function()
    local h = require "helper"
    local old = green.on_error(function() error("handler broke") end)
    local text, ok = h.capture_stderr(pcall, green.run, function()
      spawn(function() error("x") end)
      sleep(0)
      sleep(0)
    end)
    green.on_error(old)
    assert.is_true(ok)
    -- the default report, then the handler's own failure
    assert.matches("died of an error:\n[^\n]*thread_spec.lua:%d+: x\n", text)
    assert.matches("\ngreen: and the error handler failed: [^\n]*"
                   .. "handler broke\n$", text)
  end)
end)

describe("GreenThread fields", function()
  it("has a settable name, an id and a descriptive tostring", function()
    green_run(function()
      local t = spawn(function() sleep(0) end)
      assert.is_nil(t.name)
      t.name = "worker"
      assert.are.equal("worker", t.name)
      assert.is_true(math.type(t.id) == "integer")
      local s = tostring(t)
      assert.matches("GreenThread " .. t.id, s, 1, true)
      assert.matches("'worker'", s)
      assert.matches("spawned at .*thread_spec.lua:%d+", s)
      assert.has_error(function() t.other = 1 end)
      assert.has_error(function() t.name = 5 end)
      t:wait()
      assert.matches("dead", tostring(t))
    end)
  end)
end)

describe("green.run", function()
  it("returns fn's results and raises its error", function()
    assert.are.same({ 1, 2 }, { green.run(function() return 1, 2 end) })
    assert.has_error(function() green.run(function() error("bad") end) end)
  end)

  it("names itself and the caller's line for a non-callable fn", function()
    for _, bad in ipairs({ 5, {}, "f", true }) do
      local ok, err = pcall(function() green.run(bad) end)
      assert.is_false(ok)
      assert.matches("^spec/thread_spec%.lua:%d+: bad argument #1 to 'run' "
                     .. "%(function expected, got " .. type(bad) .. "%)$",
                     err)
    end
    local callable = setmetatable({}, { __call = function(_, x)
      return x
    end })
    assert.are.equal(7, green.run(callable, 7))
  end)

  it("without fn, runs until every thread is done", function()
    local done = 0
    for _ = 1, 3 do spawn(function() sleep(0.001); done = done + 1 end) end
    green.run()
    assert.are.equal(3, done)
    assert.are.equal(0, green.core.stats().threads)
  end)

  it("inside a green thread, waits for the others", function()
    green_run(function()
      local done = false
      spawn(function() sleep(0.005); done = true end)
      green.run()
      assert.is_true(done)
    end)
  end)

  it("from the main thread, does not return while a thread whose own " ..
     "run() has just returned is still to run on", function()
    -- (a subprocess: it lost the thread's rest under stock lua5.4, the
    -- script ending with the thread ready)
    local out, err, code = helper.lua54_run([[
      local green = require "green"
      local ev = green.Event()
      green.spawn(function()
        green.run()
        print("after its run")
        green.spawn(function() ev:send("sent") end)
        print(ev:wait())
      end)
      green.run()
      print("main", green.core.stats().threads)
    ]])
    assert.are.equal(0, code, err)
    assert.are.equal("after its run\nsent\nmain\t0\n", out)
  end)
end)

describe("green.Local", function()
  it("keeps fields per green thread", function()
    green_run(function()
      local l = green.Local()
      l.x = "parent"
      local t = spawn(function()
        assert.is_nil(l.x)
        l.x = "child"
        sleep(0)
        return l.x
      end)
      sleep(0)
      assert.are.equal("parent", l.x)
      assert.are.equal("child", t:wait())
    end)
  end)

  it("drops a thread's fields when it dies", function()
    green_run(function()
      local l = green.Local()
      local weak = setmetatable({}, { __mode = "v" })
      local t = spawn(function() l.big = {}; weak[1] = l.big end)
      t:wait()
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
    end)
  end)
end)

describe("memory", function()
  it("collects dead threads: spawning many keeps memory flat", function()
    green_run(function()
      local function batch()
        for _ = 1, 100 do
          local ts = {}
          for i = 1, 100 do ts[i] = spawn(function(x) return x end, i) end
          for i = 1, 100 do ts[i]:wait() end
        end
      end
      batch()
      collectgarbage()
      collectgarbage()
      local base = collectgarbage("count")
      for _ = 1, 5 do batch() end -- 50,000 more threads
      collectgarbage()
      collectgarbage()
      assert.is_true(collectgarbage("count") < base + 256,
                     "grew from " .. base .. " KB to "
                       .. collectgarbage("count") .. " KB")
    end)
  end)
end)

describe("green.now", function()
  it("is monotonic and advances across a sleep", function()
    green_run(function()
      local a = green.now()
      sleep(0.002)
      local b = green.now()
      assert.is_true(b > a)
    end)
  end)
end)

describe("green.core.spawn_closing (green.serve's per-connection slot)",
         function()
  local core = green.core

  it("runs closer(arg, err) in the thread however its function ends",
     function()
    green_run(function()
      local log = {}
      local function closer(arg, err)
        log[#log + 1] = { arg = arg, err = err,
                          me = green.getcurrent() }
      end
      -- a return: err nil, the results are the thread's
      local t = core.spawn_closing(closer, "a", function(x, y)
        return x + y, "r"
      end, 1, 2)
      assert.are.same({ 3, "r" }, { t:wait() })
      assert.are.equal("a", log[1].arg)
      assert.is_nil(log[1].err)
      assert.are.equal(t, log[1].me)
      -- an error: err is the error, which stays the outcome
      t = core.spawn_closing(closer, "b", function() error("boom", 0) end)
      local ok, e = pcall(t.wait, t)
      assert.is_false(ok)
      assert.matches("^boom", e)
      assert.are.same({ "b", "boom" }, { log[2].arg, log[2].err })
      -- a kill while parked
      t = core.spawn_closing(closer, "c", function() sleep(60) end)
      sleep(0)
      t:kill()
      assert.are.equal(green.GreenletExit, t:wait())
      assert.are.same({ "c", green.GreenletExit }, { log[3].arg, log[3].err })
      -- a kill before it started: the function never runs, the closer does
      local ran = false
      t = core.spawn_closing(closer, "d", function() ran = true end)
      t:kill()
      assert.are.equal(green.GreenletExit, t:wait())
      assert.is_false(ran)
      assert.are.same({ "d", green.GreenletExit }, { log[4].arg, log[4].err })
      assert.are.equal(t, log[4].me)
    end)
  end)

  it("lets the closer block, and makes its error the thread's outcome",
     function()
    green_run(function()
      local ev = green.Event()
      local t = core.spawn_closing(function(arg)
        assert.are.equal("x", ev:wait()) -- the closer waits
        error("closer failed: " .. arg, 0)
      end, "arg", function() return "fine" end)
      helper.until_suspended(t)
      ev:send("x")
      local ok, e = pcall(t.wait, t)
      assert.is_false(ok)
      assert.matches("^closer failed: arg", e)
    end)
  end)

  it("holds when the closer blocks and is killed, kills its own thread, "
     .. "spawns, or follows many results or a kill twice over", function()
    green_run(function()
      -- the function returned; the closer, blocked, is killed: the kill
      -- is the outcome
      local ev = green.Event()
      local t = core.spawn_closing(function() ev:wait() end, 1,
                                   function() return 1 end)
      helper.until_suspended(t)
      t:kill()
      assert.are.equal(green.GreenletExit, t:wait())
      -- the closer kills its own thread: it ends there
      local after = false
      t = core.spawn_closing(function()
        green.getcurrent():kill()
        after = true
      end, 1, function() return 1 end)
      assert.are.equal(green.GreenletExit, t:wait())
      assert.is_false(after)
      -- the closer spawns a thread, which gets the function's error
      local seen
      t = core.spawn_closing(function(_, err)
        green.spawn(function() seen = err end)
      end, 1, function() error("x", 0) end)
      assert.is_false((pcall(t.wait, t)))
      helper.eventually(function() return seen == "x" end)
      -- many results: the closer's call needs stack above them
      local n = 0
      t = core.spawn_closing(function() n = n + 1 end, 1, function()
        return table.unpack({}, 1, 100000)
      end)
      assert.are.equal(100000, select("#", t:wait()))
      assert.are.equal(1, n)
      -- killed twice before it started: its closer runs once
      t = core.spawn_closing(function() n = n + 1 end, 1, function() end)
      t:kill()
      t:kill()
      assert.are.equal(green.GreenletExit, t:wait())
      assert.are.equal(2, n)
      -- a closer's error that is not a string
      local obj = {}
      t = core.spawn_closing(function() error(obj) end, 1, function() end)
      t:kill()
      local ok, e = pcall(t.wait, t)
      assert.is_false(ok)
      assert.are.equal(obj, e)
    end)
  end)

  it("refuses a closer that is not a function", function()
    green_run(function()
      assert.has_error(function()
        core.spawn_closing(nil, 1, function() end)
      end)
      assert.has_error(function() core.spawn_closing(print, 1) end)
    end)
  end)
end)
