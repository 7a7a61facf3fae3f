local green = require "green"

local spawn, sleep = green.spawn, green.sleep

describe("green.Semaphore", function()
  it("counts down and up without switching (eventlet test_bounded)",
     function()
    green_run(function()
      local sem = green.Semaphore(2)
      assert.is_true(sem:acquire())
      assert.is_true(sem:acquire())
      assert.is_true(sem:locked())
      assert.is_false(sem:acquire(false))
      assert.are.equal(0, sem:balance())
      sem:release()
      assert.is_false(sem:locked())
      assert.are.equal(1, sem:balance())
      sem:release()
    end)
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() green.Semaphore(-1) end)
    assert.has_error(function() green.Semaphore(1.5) end)
    green_run(function()
      local sem = green.Semaphore(1)
      assert.has_error(function() sem:acquire(false, 1) end)
      assert.has_error(function() sem:acquire(true, "x") end)
    end)
  end)

  it("a method given the other class names its own", function()
    local ok, err = pcall(green.BoundedSemaphore().release,
                          green.Semaphore())
    assert.is_false(ok)
    assert.matches("green.BoundedSemaphore expected, got green.Semaphore",
                   err)
  end)

  it("refuses a release past math.maxinteger (no overflow)", function()
    local sem = green.Semaphore(math.maxinteger)
    local ok, err = pcall(sem.release, sem)
    assert.is_false(ok)
    assert.matches("released too many times %(its count is "
                   .. "math.maxinteger%)", err)
    assert.are.equal(math.maxinteger, sem:balance())
    assert.is_false(sem:locked())
    assert.is_true(sem:acquire(false))
    assert.is_true(sem:release())
  end)

  it("hands released units to waiters in FIFO order", function()
    local order = {}
    green_run(function()
      local sem = green.Semaphore(0)
      for i = 1, 3 do
        spawn(function()
          sem:acquire()
          order[#order + 1] = i
        end)
      end
      sleep(0)
      assert.are.equal(-3, sem:balance())
      assert.are.equal(3, sem:waiting())
      for _ = 1, 3 do sem:release() end
      assert.are.same({}, order) -- release never switches
    end)
    assert.are.same({ 1, 2, 3 }, order)
  end)

  it("does not let a later acquire overtake a woken waiter", function()
    local order = {}
    green_run(function()
      local sem = green.Semaphore(0)
      spawn(function() sem:acquire(); order[#order + 1] = "waiter" end)
      sleep(0)
      sem:release()
      assert.is_false(sem:acquire(false)) -- the unit went to the waiter
      order[#order + 1] = "main"
    end)
    assert.are.same({ "main", "waiter" }, order)
  end)

  it("acquire with a timeout returns false and leaves no waiter",
     function()
    green_run(function()
      local sem = green.Semaphore(0)
      assert.is_false(sem:acquire(true, 0.01))
      assert.are.equal(0, sem:waiting())
      sem:release()
      assert.are.equal(1, sem:balance())
      assert.is_true(sem:acquire(true, 0.01))
    end)
  end)

  it("a waiter killed in acquire leaves no stale waiter", function()
    local got = {}
    green_run(function()
      local sem = green.Semaphore(0)
      local a = spawn(function() sem:acquire(); got[#got + 1] = "a" end)
      spawn(function() sem:acquire(); got[#got + 1] = "b" end)
      sleep(0)
      a:kill()
      assert.are.equal(1, sem:waiting())
      sem:release() -- goes to the live waiter b
      sleep(0)
      assert.are.equal(0, sem:balance())
    end)
    assert.are.same({ "b" }, got)
  end)

  it("a waiter woken then killed before it runs passes the unit on",
     function()
    local got = {}
    green_run(function()
      local sem = green.Semaphore(0)
      local a = spawn(function() sem:acquire(); got[#got + 1] = "a" end)
      spawn(function() sem:acquire(); got[#got + 1] = "b" end)
      sleep(0)
      sem:release() -- handed to a
      a:kill()      -- a dies before it runs: the unit goes to b
      sleep(0)
      assert.are.equal(0, sem:balance())
    end)
    assert.are.same({ "b" }, got)
  end)

  it("a foreign Timeout in acquire raises it and leaves no waiter",
     function()
    green_run(function()
      local sem = green.Semaphore(0)
      local ok, err = pcall(function()
        local _ <close> = green.Timeout(0.01)
        sem:acquire()
      end)
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
      assert.are.equal(0, sem:waiting())
      sem:release()
      assert.are.equal(1, sem:balance())
    end)
  end)

  it("a unit handed over as the acquire timeout fires is kept", function()
    green_run(function()
      local sem = green.Semaphore(0)
      local res
      local t = spawn(function() res = sem:acquire(true, 0) end)
      sleep(0) -- t waits; its 0 s timeout fires on the next hub turn
      sem:release()
      t:wait()
      assert.is_true(res)
      assert.are.equal(0, sem:balance())
    end)
  end)

  it("hold() releases when the scope exits, also on error", function()
    green_run(function()
      local sem = green.Semaphore(1)
      do
        local _ <close> = sem:hold()
        assert.is_true(sem:locked())
      end
      assert.is_false(sem:locked())
      assert.has_error(function()
        local _ <close> = sem:hold()
        error("boom")
      end, "boom")
      assert.are.equal(1, sem:balance())
    end)
  end)

  it("hold() releases when its thread is killed", function()
    green_run(function()
      local sem = green.Semaphore(1)
      local t = spawn(function()
        local _ <close> = sem:hold()
        sleep(10)
      end)
      sleep(0)
      assert.is_true(sem:locked())
      t:kill()
      assert.is_false(sem:locked())
    end)
  end)
end)

describe("green.BoundedSemaphore", function()
  it("raises on over-release", function()
    green_run(function()
      local sem = green.BoundedSemaphore(1)
      sem:acquire()
      sem:release()
      assert.has_error(function() sem:release() end,
                       "Semaphore released too many times")
      assert.are.equal(1, sem:balance())
    end)
  end)

  it("hands units to waiters like a Semaphore", function()
    local got = false
    green_run(function()
      local sem = green.BoundedSemaphore(1)
      sem:acquire()
      spawn(function() sem:acquire(); got = true; sem:release() end)
      sleep(0)
      sem:release()
    end)
    assert.is_true(got)
  end)
end)

describe("green.CappedSemaphore", function()
  it("names the method called in its argument errors", function()
    local c = green.CappedSemaphore(1, 1)
    local cases = {
      { c.release, "release", false, 1, "timeout given for a non-blocking "
                                        .. "release" },
      { c.release, "release", true, "x", "number or nil expected, got "
                                         .. "string" },
      { c.acquire, "acquire", false, 1, "timeout given for a non-blocking "
                                        .. "acquire" },
      { c.acquire, "acquire", true, 0 / 0, "number or nil expected, got "
                                           .. "NaN" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(case[1], c, case[3], case[4])
      assert.is_false(ok)
      assert.are.equal("bad argument #2 to '" .. case[2] .. "' ("
                       .. case[5] .. ")", err)
    end
    assert.are.same({ 1, false, 0 }, { c:balance(), c:locked(), c:waiting() })
  end)

  it("blocks release at the limit until an acquire", function()
    local order = {}
    green_run(function()
      local sem = green.CappedSemaphore(1, 2)
      sem:release() -- count 2 = limit
      assert.is_false(sem:release(false))
      spawn(function()
        sem:release()
        order[#order + 1] = "released"
      end)
      sleep(0)
      assert.are.equal(3, sem:balance())
      order[#order + 1] = "acquire"
      sem:acquire()
      sleep(0)
      assert.are.equal(2, sem:balance())
    end)
    assert.are.same({ "acquire", "released" }, order)
  end)

  it("blocks acquire at zero; timeout and kill leave it consistent",
     function()
    green_run(function()
      local sem = green.CappedSemaphore(0, 1)
      assert.is_false(sem:acquire(true, 0.01))
      local t = spawn(function() sem:acquire() end)
      sleep(0)
      assert.are.equal(-1, sem:balance())
      t:kill()
      assert.are.equal(0, sem:balance())
      sem:release()
      assert.is_true(sem:acquire(false))
    end)
  end)

  it("a release blocked at the limit can be killed or timed out",
     function()
    green_run(function()
      local sem = green.CappedSemaphore(1, 1)
      assert.is_false(sem:release(true, 0.01))
      local t = spawn(function() sem:release() end)
      sleep(0)
      t:kill()
      assert.are.equal(1, sem:balance())
      sem:acquire()
      assert.is_true(sem:release(false))
    end)
  end)

  it("a unit handed to a waiter killed before it ran goes to the next "
     .. "waiter, or back to the count", function()
    green_run(function()
      local sem = green.Semaphore(0)
      local a = spawn(function() sem:acquire() end)
      local got_b = false
      local b = spawn(function() sem:acquire(); got_b = true end)
      sleep(0)
      sem:release() -- handed to a
      a:kill()      -- a passes it to b
      b:wait()
      assert.is_true(got_b)
      local c = spawn(function() sem:acquire() end)
      sleep(0)
      sem:release() -- handed to c
      c:kill()      -- nobody waits: back to the count
      assert.are.equal(1, sem:balance())
      assert.is_true(sem:acquire(false))
    end)
  end)

  it("a BoundedSemaphore at its bound refuses release even with waiters",
     function()
    green_run(function()
      local sem = green.BoundedSemaphore(0)
      local t = spawn(function() return sem:acquire(true, 0.01) end)
      sleep(0)
      local ok, err = pcall(sem.release, sem)
      assert.is_false(ok)
      assert.matches("Semaphore released too many times", err)
      assert.is_false(t:wait())
      assert.are.equal(0, sem:waiting())
    end)
  end)

  it("hold is a method of both classes", function()
    green_run(function()
      for _, sem in ipairs { green.Semaphore(1), green.BoundedSemaphore(1) } do
        do
          local _ <close> = sem:hold()
          assert.is_true(sem:locked())
        end
        assert.is_false(sem:locked())
      end
      local ok, err = pcall(green.Semaphore().acquire, green.Event())
      assert.is_false(ok)
      assert.matches("green.Semaphore expected", err)
    end)
  end)
end)
