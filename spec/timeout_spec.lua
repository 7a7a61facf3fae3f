local green = require "green"

local spawn, sleep, Timeout = green.spawn, green.sleep, green.Timeout

describe("green.Timeout", function()
  it("raises itself at the blocking call once it expires", function()
    green_run(function()
      local t = Timeout(0.005)
      local ok, err = pcall(sleep, 1)
      assert.is_false(ok)
      assert.are.equal(t, err)
      assert.is_true(green.is_timeout(err))
      assert.is_false(t:pending())
      assert.matches("Timeout", tostring(err))
    end)
  end)

  it("raises the given error instead", function()
    green_run(function()
      local _ <close> = Timeout(0.001, "too slow")
      local ok, err = pcall(sleep, 1)
      assert.is_false(ok)
      assert.are.equal("too slow", err)
    end)
  end)

  it("is canceled when its <close> block exits", function()
    green_run(function()
      local t
      do
        local tt <close> = Timeout(0.002)
        t = tt
        -- no blocking call here: a Timeout fires only in the hub, so it
        -- is pending however long this takes
        assert.is_true(t:pending())
      end
      assert.is_false(t:pending())
      sleep(0.005) -- would have fired
      assert.are.equal(0.002, t.seconds)
    end)
  end)

  it("cancel() stops it; nil seconds never fires", function()
    green_run(function()
      local t = Timeout(0.001)
      t:cancel()
      t:cancel()
      local never <close> = Timeout(nil)
      assert.is_false(never:pending())
      sleep(0.003)
    end)
  end)

  it("does not raise in a block that never blocks again", function()
    green_run(function()
      local t = Timeout(0.001)
      local x = 0
      local deadline = green.now() + 0.003
      while green.now() < deadline do x = x + 1 end -- no blocking call
      -- it fired in the hub? No: the hub never ran. It is still pending
      -- and raises at the next blocking call.
      assert.is_true(t:pending())
      local ok, err = pcall(sleep, 0)
      assert.is_false(ok)
      assert.are.equal(t, err)
    end)
  end)

  it("two Timeouts due at the same poll both raise, one blocking call "
     .. "after the other (neither is lost)", function()
    green_run(function()
      local outer = Timeout(0.001, "outer")
      local inner = Timeout(0.001, "inner")
      local deadline = green.now() + 0.003
      while green.now() < deadline do end -- both overdue, not fired yet
      local ok1, e1 = pcall(sleep, 0)
      local ok2, e2 = pcall(sleep, 0)
      assert.is_false(ok1)
      assert.is_false(ok2)
      local got = { [e1] = true, [e2] = true }
      assert.are.same({ outer = true, inner = true }, got)
      assert.is_false(outer:pending())
      assert.is_false(inner:pending())
      assert.is_true(pcall(sleep, 0))
    end)
  end)

  it("nested: the inner firing does not cancel the outer", function()
    green_run(function()
      -- The outer deadline is a second after the inner one, a margin no
      -- loaded machine eats up.
      local outer <close> = Timeout(1, "outer")
      do
        local _ <close> = Timeout(0.001, "inner")
        local ok, err = pcall(sleep, 60)
        assert.are.same({ false, "inner" }, { ok, err })
      end
      assert.is_true(outer:pending())
      local ok, err = pcall(sleep, 60)
      assert.are.same({ false, "outer" }, { ok, err })
    end)
  end)

  it("nested: the outer firing inside the inner block raises the outer",
     function()
    green_run(function()
      local _ <close> = Timeout(0.001, "outer")
      local inner <close> = Timeout(60, "inner")
      local ok, err = pcall(sleep, 60)
      assert.are.same({ false, "outer" }, { ok, err })
      assert.is_true(inner:pending())
    end)
  end)

  it("interrupts a wait on another thread, leaving no stale waiter",
     function()
    green_run(function()
      local slow = spawn(function() sleep(0.01); return "slow" end)
      local ok, err = pcall(function()
        local _ <close> = Timeout(0.001)
        return slow:wait()
      end)
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
      assert.are.equal("slow", slow:wait())
    end)
  end)

  it("is dropped when its thread dies, so the hub can finish", function()
    green_run(function()
      local t = spawn(function()
        Timeout(100) -- never canceled
        return "done"
      end)
      assert.are.equal("done", t:wait())
      assert.are.equal(0, green.core.stats().timers)
    end)
  end)

  it("fires even when nothing keeps a reference to it", function()
    green_run(function()
      local ok, err = pcall(function()
        Timeout(0.001)
        collectgarbage()
        sleep(1)
      end)
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
    end)
  end)

  it("does not override a kill", function()
    green_run(function()
      local t = spawn(function()
        local _ <close> = Timeout(0.001)
        sleep(1)
      end)
      sleep(0)
      t:kill()
      assert.are.equal(green.GreenletExit, t:wait())
    end)
  end)

  it("works on the main thread", function()
    local ok, err = pcall(function()
      local _ <close> = Timeout(0.001, "main timeout")
      sleep(1)
    end)
    assert.are.same({ false, "main timeout" }, { ok, err })
  end)

  it("fires on the main thread looping on sleep(0), as other threads' "
     .. "sleeps end", function()
    -- Each sleep(0) of the main thread is a pass of the hub: timers and
    -- I/O come in at every pass, not only when the main thread blocks.
    local limit = green.now() + 10
    local ok, err = pcall(function()
      local _ <close> = Timeout(0.001, "main timeout")
      while green.now() < limit do sleep(0) end
    end)
    assert.are.same({ false, "main timeout" }, { ok, err })
    local woke = false
    local t = green.spawn(function() sleep(0.001); woke = true end)
    while not woke and green.now() < limit do sleep(0) end
    assert.is_true(woke)
    t:wait()
    local now = Timeout(0)
    ok, err = pcall(sleep, 0) -- "seconds <= 0 fires at the next blocking call"
    assert.are.same({ false, now }, { ok, err })
  end)

  it("a negative seconds fires at once, and says so", function()
    green_run(function()
      local t = Timeout(-1)
      assert.are.equal(-1, t.seconds)
      assert.are.equal("Timeout: -1.0 seconds", tostring(t))
      local ok, err = pcall(sleep, 0)
      assert.are.same({ false, t }, { ok, err })
      assert.is_nil(Timeout(nil).seconds)
      assert.are.equal("Timeout (never)", tostring(Timeout()))
    end)
  end)

  it("with_timeout raises in fn's blocking call, or returns its results",
     function()
    green_run(function()
      assert.are.same({ 1, 2 }, { green.with_timeout(1, function(a, b)
        sleep(0)
        return a, b
      end, 1, 2) })
      local ok, err = pcall(green.with_timeout, 0.001, sleep, 1)
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
    end)
  end)

  it("rejects bad arguments", function()
    green_run(function()
      assert.has_error(function() Timeout("x") end)
      assert.is_false(green.is_timeout("Timeout"))
    end)
  end)

  -- with_timeout("x") raised at the line of green/init.lua that calls
  -- Timeout, under Timeout's name: the error is the caller's now
  it("raises its argument errors at the caller's line", function()
    green_run(function()
      local here = debug.getinfo(1, "S").short_src
      local function line(f)
        local ok, err = pcall(f)
        assert.is_false(ok)
        return err
      end
      local nan = 0 / 0
      local l0 = debug.getinfo(1, "l").currentline
      local errs = {
        line(function() local r = green.with_timeout("x", sleep) return r end),
        line(function() local r = green.with_timeout(nan, sleep) return r end),
        line(function() local r = green.with_timeout(1, "fn") return r end),
      }
      local want = {
        "bad argument #1 to 'with_timeout' (number expected, got string)",
        "bad argument #1 to 'with_timeout' (number of seconds expected, "
          .. "got NaN)",
        "bad argument #2 to 'with_timeout' (function expected, got string)",
      }
      for i, err in ipairs(errs) do
        assert.are.equal(("%s:%d: %s"):format(here, l0 + i + 1, want[i]),
                         err)
      end
    end)
  end)
end)
