local green = require "green"
local helper = require "helper"

local spawn, sleep = green.spawn, green.sleep

describe("green.LoopingCall", function()
  it("calls repeatedly until LoopingCallDone; wait returns its value",
     function()
    local n = 0
    green_run(function()
      local lc = green.LoopingCall(function(step)
        n = n + step
        if n == 3 then error(green.LoopingCallDone("done at 3")) end
      end, 1)
      assert.are.equal(lc, lc:start(0.001))
      assert.are.equal("done at 3", lc:wait())
    end)
    assert.are.equal(3, n)
  end)

  it("stop() ends the loop between calls at once; wait returns true",
     function()
    local n = 0
    green_run(function()
      local lc = green.LoopingCall(function() n = n + 1 end):start(10)
      sleep(0) -- the first call runs, then the loop idles 10 s
      assert.are.equal(1, n)
      lc:stop()
      assert.is_true(lc:wait())
    end)
    assert.are.equal(1, n)
  end)

  it("stop() from inside the function ends after that call", function()
    local n = 0
    green_run(function()
      local lc
      lc = green.LoopingCall(function()
        n = n + 1
        if n == 2 then lc:stop() end
      end):start(0)
      assert.is_true(lc:wait())
    end)
    assert.are.equal(2, n)
  end)

  it("an error in the function ends the loop and is raised by wait",
     function()
    local n = 0
    green_run(function()
      local lc = green.LoopingCall(function()
        n = n + 1
        if n == 2 then error("broken", 0) end
      end):start(0)
      local ok, err = pcall(lc.wait, lc)
      assert.is_false(ok)
      assert.matches("broken", err)
    end)
    assert.are.equal(2, n)
  end)

  it("keeps start-to-start cadence and counts overruns", function()
    -- The interval is long next to what the calls do (nothing, or one
    -- sleep three intervals long), so a loaded machine cannot turn a
    -- quick call into an overrun.
    local interval = 0.1
    local starts = {}
    green_run(function()
      local lc = green.LoopingCall(function()
        starts[#starts + 1] = green.now()
        if #starts == 2 then sleep(3 * interval) end -- one overrun
        if #starts == 4 then error(green.LoopingCallDone()) end
      end)
      lc.on_overrun = function(_, late)
        assert.is_true(late > 0)
      end
      lc:start(interval)
      lc:wait()
      assert.are.equal(1, lc.overruns)
    end)
    -- the call after the overrun started at once, and the one after it an
    -- interval later: no burst of catch-up calls
    assert.is_true(starts[4] - starts[3] >= 0.9 * interval)
  end)

  it("initial_delay delays the first call", function()
    local order = {}
    green_run(function()
      local lc = green.LoopingCall(function()
        order[#order + 1] = "call"
        error(green.LoopingCallDone())
      end):start(0, 0.01)
      sleep(0)
      order[#order + 1] = "after sleep(0)"
      lc:wait()
    end)
    assert.are.same({ "after sleep(0)", "call" }, order)
  end)

  it("start twice raises; wait before start raises", function()
    green_run(function()
      local lc = green.LoopingCall(function() end)
      assert.has_error(function() lc:wait() end)
      lc:start(1)
      assert.has_error(function() lc:start(1) end)
      lc:stop()
      lc:wait()
    end)
  end)

  it("starts again once its loop has ended, however it ended, and not "
     .. "while a stopped loop is still in its call", function()
    green_run(function()
      local ev, n = green.Event(), 0
      local lc = green.LoopingCall(function()
        n = n + 1
        if n == 1 then ev:wait() end
      end):start(10)
      sleep(0) -- blocked in its first call
      lc:stop()
      local ok, err = pcall(lc.start, lc, 10)
      assert.is_false(ok)
      assert.matches("stopped but has not ended yet", err)
      ev:send()
      assert.is_true(lc:wait())
      assert.are.equal(1, n) -- one loop: the call was not made twice
      lc:start(10)
      sleep(0)
      assert.are.equal(2, n)
      lc:stop()
      assert.is_true(lc:wait())

      local fail = true
      local broken = green.LoopingCall(function()
        if fail then
          fail = false
          error("broken", 0)
        end
      end):start(10)
      local ok2, err2 = pcall(broken.wait, broken)
      assert.is_false(ok2)
      assert.matches("^broken", err2)
      broken:start(10) -- not "already running"
      broken:stop()
      assert.is_true(broken:wait())

      local slow = green.LoopingCall(sleep, 0.002) -- always overruns 1 ms
      slow.on_overrun = function() error("report failed", 0) end
      slow:start(0.001)
      ok2, err2 = pcall(slow.wait, slow)
      assert.is_false(ok2)
      assert.matches("^report failed", err2)
      slow:start(10)
      slow:stop()
      assert.is_true(slow:wait())

      local killed = green.LoopingCall(function() end):start(10)
      sleep(0)
      killed.thread:kill()
      assert.is_false(killed.sleeping)
      killed:start(10)
      killed:stop()
      assert.is_true(killed:wait())
    end)
  end)

  it("wait can be killed and timed out; the loop goes on", function()
    green_run(function()
      local lc = green.LoopingCall(function() end):start(0.001)
      local w = spawn(function() return lc:wait() end)
      sleep(0)
      w:kill()
      local ok, err = pcall(function()
        local _ <close> = green.Timeout(0.01, "t")
        return lc:wait()
      end)
      assert.are.same({ false, "t" }, { ok, err })
      assert.is_false(lc.thread:dead())
      lc:stop()
      assert.is_true(lc:wait())
    end)
  end)
end)

describe("green.DynamicLoopingCall", function()
  it("idles for what the function returns, capped by the maximum",
     function()
    local n = 0
    green_run(function()
      local lc = green.DynamicLoopingCall(function()
        n = n + 1
        if n == 3 then error(green.LoopingCallDone(n)) end
        return 100 -- capped to 0.001 below
      end):start(nil, 0.001)
      assert.are.equal(3, lc:wait())
    end)
  end)

  it("raises if the function returns no interval and there is no maximum",
     function()
    green_run(function()
      local lc = green.DynamicLoopingCall(function() end):start()
      assert.has_error(function() lc:wait() end)
    end)
  end)
end)

describe("examples/looping_call.lua", function()
  it("polls the reboot every 0.5 s while the heartbeat keeps 1 s",
     function()
    local out, err, code = helper.sh(helper.greenlua
                                     .. " examples/looping_call.lua")
    assert.are.equal(0, code, err)
    assert.matches("instance state: REBOOTING", out)
    assert.matches("instance is ACTIVE after %d+ polls", out)
    assert.matches("heartbeat 1", out)
    assert.matches("heartbeat 2", out)
    assert.matches("heartbeat overruns: 0", out)
    -- the poller's result comes after it saw the instance reboot
    assert.is_true(out:find("REBOOTING", 1, true)
                   < out:find("is ACTIVE", 1, true))
    assert.are.equal("", err)
  end)
end)
