-- core.suspend / core.wake: the Lua-level wait every toolkit primitive is
-- built on.
local green = require "green"
local h = require "helper"

local core = green.core
local spawn, sleep, suspend, wake = green.spawn, green.sleep, core.suspend,
                                    core.wake

describe("core.suspend and core.wake", function()
  it("suspend returns true and the values given to wake", function()
    green_run(function()
      local t = spawn(function() return table.pack(suspend("my wait")) end)
      sleep(0)
      assert.are.same({ "suspended", "my wait" }, { t:status() })
      assert.matches("suspended in my wait", tostring(t))
      assert.is_true(wake(t, 1, nil, "three"))
      local r = t:wait()
      assert.are.same({ n = 4, true, 1, nil, "three" }, r)
    end)
  end)

  it("wake returns false unless the thread is in suspend", function()
    green_run(function()
      local sleeper = spawn(function() sleep(0.001); return "slept" end)
      local waiter = spawn(function() return suspend() end)
      sleep(0)
      assert.is_false(wake(sleeper, "no")) -- blocked in sleep, not suspend
      assert.is_true(wake(waiter, "a"))
      assert.is_false(wake(waiter, "b")) -- already woken
      assert.are.equal("slept", sleeper:wait())
      assert.are.same({ true, "a" }, { waiter:wait() })
      assert.is_false(wake(waiter)) -- dead
    end)
  end)

  it("returns false and the error when killed, then raises no more",
     function()
    green_run(function()
      local log = {}
      local t = spawn(function()
        local ok, err = suspend()
        log[#log + 1] = { ok, err }
        -- killed is sticky: suspend fails at once without blocking
        ok, err = suspend()
        log[#log + 1] = { ok, err }
        return "cleanup done"
      end)
      sleep(0)
      t:kill()
      assert.are.same({ { false, green.GreenletExit },
                        { false, green.GreenletExit } }, log)
      assert.are.equal("cleanup done", t:wait())
    end)
  end)

  it("a kill after wake overrides the delivered values", function()
    green_run(function()
      local t = spawn(function() return suspend() end)
      sleep(0)
      assert.is_true(wake(t, "item"))
      t:kill("stop")
      -- suspend returned false, "stop"; the function returned those
      assert.are.same({ false, "stop" }, { t:wait() })
    end)
  end)

  it("returns false and the Timeout when one fires", function()
    green_run(function()
      local to = green.Timeout(0.001)
      local ok, err = suspend()
      assert.is_false(ok)
      assert.are.equal(to, err)
    end)
  end)

  it("on the main thread, returns a deadlock error when nothing can wake",
     function()
    local ok, err = suspend("nothing")
    assert.is_false(ok)
    assert.matches("deadlock: the main thread is blocked in nothing", err)
  end)

  -- The bound is the process's (the descriptions stay anchored for
  -- good): checked in a process of its own. Filled here, it left every
  -- spec file busted runs after this one in the same process without a
  -- description new to it: "green.suspend" where serve_spec looks for
  -- "green.serve (at the concurrency limit)" (30 s, then a failure), no
  -- cache hits in regress/7-suspend-cache_spec (busted --shuffle-files).
  it("keeps at most 256 distinct descriptions", function()
    local out, err, code = h.greenlua_run([[
      local green = require "green"
      local core = green.core
      local ts = {}
      for i = 1, 300 do
        ts[i] = green.spawn(function()
          return core.suspend("distinct " .. i)
        end)
      end
      green.sleep(0)
      collectgarbage()
      print(tostring(ts[1]))
      print(tostring(ts[300]))
      for i = 1, 300 do core.wake(ts[i]) end
    ]])
    assert.are.equal(0, code, err)
    local first, last = out:match("^([^\n]*)\n([^\n]*)\n$")
    assert.matches("in distinct 1%)", first, nil, false, out)
    assert.matches("in green.suspend%)", last, nil, false, out)
  end)
end)
