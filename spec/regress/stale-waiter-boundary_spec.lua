-- A blocking call that fails before it can suspend must not leave the
-- caller queued as a waiter: a later put would hand its item to a thread
-- that is not waiting for it, and the item would be lost. Inside a C-call
-- boundary a green thread parks its C stack (native stacks); when that
-- stack is deeper than the park limit, the blocking call fails after its
-- wait was queued, and must undo it.
local green = require "green"

-- Run f inside 'n' nested table.sort comparators (a deep C stack).
local function nest(n, f)
  if n == 0 then return f() end
  local r
  table.sort({ 2, 1 }, function(a, b)
    r = r or { nest(n - 1, f) }
    return a < b
  end)
  return table.unpack(r)
end

-- Call f with the park limit at its minimum.
local function shallow(f)
  local limit = green.core.cstack().limit
  green.core.cstack(4096)
  local r = table.pack(pcall(f))
  green.core.cstack(limit)
  return table.unpack(r, 1, r.n)
end

describe("a wait that cannot block", function()
  it("leaves no stale waiter in a queue", function()
    green_run(function()
      local q1, q2 = green.Queue(), green.Queue()
      local t = green.spawn(function()
        local ok, err = shallow(function()
          nest(8, function() return q1:get() end)
        end)
        assert.is_false(ok)
        assert.matches("deeper than 4 KB", err)
        return q2:get()
      end)
      green.sleep(0) -- t is now blocked in q2:get()
      assert.are.equal(0, q1:getting())
      q1:put("for q1")
      q2:put("for q2")
      assert.are.equal("for q2", t:wait())
      assert.are.equal("for q1", q1:get())
    end)
  end)

  it("leaves no stale waiter in a semaphore", function()
    green_run(function()
      local sem = green.Semaphore(0)
      local ok = shallow(function()
        nest(8, function() sem:acquire() end)
      end)
      assert.is_false(ok)
      assert.are.equal(0, sem:waiting())
      sem:release()
      assert.are.equal(1, sem:balance())
    end)
  end)

  it("leaves a sleep(0) off the run queue", function()
    green_run(function()
      local ok, err = shallow(function()
        nest(8, function() green.sleep(0) end)
      end)
      assert.is_false(ok)
      assert.matches("deeper than 4 KB", err)
      assert.are.equal(0, green.core.stats().ready)
      green.sleep(0)
    end)
  end)
end)
