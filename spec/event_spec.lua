local green = require "green"

local spawn, sleep = green.spawn, green.sleep

describe("green.Event", function()
  it("wakes every waiter with the sent values, in wait order", function()
    local got = {}
    green_run(function()
      local ev = green.Event()
      for i = 1, 3 do
        spawn(function()
          local a, b = ev:wait()
          got[#got + 1] = { i, a, b }
        end)
      end
      sleep(0)
      assert.are.equal(3, ev:waiting())
      ev:send("x", nil)
      assert.are.same({}, got) -- send never switches
      assert.is_true(ev:ready())
    end)
    assert.are.same({ { 1, "x" }, { 2, "x" }, { 3, "x" } }, got)
  end)

  it("returns at once once sent (eventlet test_send)", function()
    green_run(function()
      local ev = green.Event()
      assert.is_false(ev:ready())
      ev:send(1, 2, 3)
      assert.are.same({ 1, 2, 3 }, { ev:wait() })
      assert.are.same({ 1, 2, 3 }, { ev:wait() })
    end)
  end)

  it("raises on a second send", function()
    green_run(function()
      local ev = green.Event()
      ev:send(1)
      assert.has_error(function() ev:send(2) end)
      assert.has_error(function() ev:send_exception("e") end)
      assert.are.equal(1, ev:wait())
    end)
  end)

  it("send_exception makes wait raise the error", function()
    local errs = {}
    green_run(function()
      local ev = green.Event()
      local t = spawn(function()
        local ok, err = pcall(ev.wait, ev)
        errs[#errs + 1] = { ok, err }
      end)
      sleep(0)
      local e = { "boom" }
      ev:send_exception(e)
      t:wait()
      assert.is_true(ev:has_exception())
      local ok, err = pcall(ev.wait, ev)
      errs[#errs + 1] = { ok, err }
      assert.are.equal(e, errs[1][2])
      assert.are.equal(e, errs[2][2])
    end)
    assert.is_false(errs[1][1])
  end)

  it("reset makes a sent event fresh; resetting a fresh one raises",
     function()
    green_run(function()
      local ev = green.Event()
      assert.has_error(function() ev:reset() end)
      ev:send("a")
      ev:reset()
      assert.is_false(ev:ready())
      spawn(function() ev:send("b") end)
      assert.are.equal("b", ev:wait())
    end)
  end)

  it("a waiter woken before reset still gets the value", function()
    local got
    green_run(function()
      local ev = green.Event()
      local t = spawn(function() got = ev:wait() end)
      sleep(0)
      ev:send("v")
      ev:reset()
      t:wait()
    end)
    assert.are.equal("v", got)
  end)

  it("wait with a timeout returns nil, 'timeout' and leaves no waiter",
     function()
    green_run(function()
      local ev = green.Event()
      local v, err = ev:wait(0.01)
      assert.is_nil(v)
      assert.are.equal("timeout", err)
      assert.are.equal(0, ev:waiting())
    end)
  end)

  it("a waiter killed in wait leaves no stale waiter", function()
    local got = {}
    green_run(function()
      local ev = green.Event()
      local a = spawn(function() got[#got + 1] = ev:wait() end)
      spawn(function() got[#got + 1] = ev:wait() end)
      sleep(0)
      a:kill()
      assert.are.equal(1, ev:waiting())
      ev:send("b")
    end)
    assert.are.same({ "b" }, got)
  end)

  it("a foreign Timeout raises out of wait", function()
    green_run(function()
      local ev = green.Event()
      local t = green.Timeout(0.01)
      local ok, err = pcall(ev.wait, ev)
      assert.is_false(ok)
      assert.are.equal(t, err)
      assert.are.equal(0, ev:waiting())
    end)
  end)

  it("nested timeouts: the outer one firing in an inner wait raises the outer",
     function()
    green_run(function()
      local ev = green.Event()
      local outer = green.Timeout(0.01)
      local ok, err = pcall(function()
        local _ <close> = green.Timeout(5)
        return ev:wait()
      end)
      assert.is_false(ok)
      assert.are.equal(outer, err)
      -- the inner timeout firing does not cancel the outer
      local outer2 <close> = green.Timeout(5)
      assert.are.same({ nil, "timeout" }, { ev:wait(0.01) })
      assert.is_true(outer2:pending())
    end)
  end)

  it("producer/consumer ordering (eventlet test_multiple_coros)", function()
    local results = {}
    green_run(function()
      local ev = green.Event()
      local pool = green.GreenPool(2)
      local done = pool:spawn(function()
        results[#results + 1] = "cons1"
        ev:wait()
        results[#results + 1] = "cons2"
      end)
      pool:spawn_n(function()
        results[#results + 1] = "prod"
        ev:send()
      end)
      done:wait()
    end)
    assert.are.same({ "cons1", "prod", "cons2" }, results)
  end)

  it("hands every value, nils included, to waiters inside user "
     .. "coroutines too", function()
    green_run(function()
      local ev = green.Event()
      local plain = spawn(function() return ev:wait() end)
      local nested = spawn(function()
        return coroutine.wrap(function() return "co", ev:wait() end)()
      end)
      sleep(0)
      assert.are.equal(2, ev:waiting())
      ev:send(nil, 2, nil)
      assert.are.same({ n = 3, nil, 2, nil }, table.pack(plain:wait()))
      assert.are.same({ n = 4, "co", nil, 2, nil },
                      table.pack(nested:wait()))
      assert.are.same({ n = 3, nil, 2, nil }, table.pack(ev:wait()))
    end)
  end)

  it("send() with no value wakes waiters with none", function()
    green_run(function()
      local ev = green.Event()
      local t = spawn(function() return select("#", ev:wait()) end)
      sleep(0)
      ev:send()
      assert.are.equal(0, t:wait())
      assert.are.equal(0, select("#", ev:wait()))
    end)
  end)

  it("send_exception refuses nil; a timeout refuses a string", function()
    green_run(function()
      local ev = green.Event()
      local ok, err = pcall(ev.send_exception, ev)
      assert.is_false(ok)
      assert.matches("error value expected", err)
      assert.is_false(ev:ready())
      ok, err = pcall(function() return ev:wait("1") end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'wait' %(number or nil expected, "
                     .. "got string%)", err)
    end)
  end)

  it("wakes thousands of waiters in wait order, without switching",
     function()
    local order = {}
    green_run(function()
      local ev = green.Event()
      for i = 1, 5000 do
        spawn(function()
          ev:wait()
          order[#order + 1] = i
        end)
      end
      sleep(0)
      assert.are.equal(5000, ev:waiting())
      ev:send(true)
      assert.are.equal(0, ev:waiting())
      assert.are.equal(0, #order)
    end)
    assert.are.equal(5000, #order)
    for i = 1, 5000 do assert.are.equal(i, order[i]) end
  end)
end)
