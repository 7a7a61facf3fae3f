-- Issue 7, fault 12: the hub caches the anchored descriptions of
-- core.suspend(what) by address, but the cache was wiped on every hub
-- yield, so it never hit (0 hits in 19,999 suspends).
local green = require "green"
local core = green.core

describe("the suspend() description cache", function()
  it("hits for a description used again across hub yields", function()
    green_run(function()
      local n = 200
      local t = green.spawn(function()
        for _ = 1, n do core.suspend("cache spec wait") end
      end)
      green.sleep(0) -- t anchors the description once
      local before = core.stats().suspend_cache_hits
      for _ = 1, n - 1 do
        assert.is_true(core.wake(t))
        green.sleep(0) -- t runs and suspends again: a hub yield each time
      end
      assert.is_true(core.wake(t))
      t:wait()
      assert.is_true(core.stats().suspend_cache_hits - before >= n - 1)
    end)
  end)
end)
