-- A blocking call that fails before it can suspend (here: at a C-call
-- boundary) must not leave the caller queued as a waiter: a later put
-- would hand its item to a thread that is not waiting for it, and the
-- item would be lost.
local green = require "green"

describe("a wait that cannot block", function()
  it("leaves no stale waiter in a queue", function()
    green_run(function()
      local q1, q2 = green.Queue(), green.Queue()
      local t = green.spawn(function()
        local ok, err = pcall(string.gsub, "a", "a", function()
          q1:get()
        end)
        assert.is_false(ok)
        assert.matches("cannot block inside string.gsub", err)
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
      local ok = pcall(table.sort, { 2, 1 }, function(a, b)
        sem:acquire()
        return a < b
      end)
      assert.is_false(ok)
      assert.are.equal(0, sem:waiting())
      sem:release()
      assert.are.equal(1, sem:balance())
    end)
  end)
end)
