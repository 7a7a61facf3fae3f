local green = require "green"

local spawn, sleep = green.spawn, green.sleep

local function passthru(a)
  sleep(0.001 * (a % 3))
  return a
end

describe("green.GreenPile", function()
  it("iterates results in spawn order (test_pile)", function()
    green_run(function()
      local p = green.GreenPile(4)
      for i = 0, 9 do p:spawn(passthru, i) end
      local res = {}
      for r in p do res[#res + 1] = r end
      assert.are.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, res)
      assert.is_nil(p:next())
    end)
  end)

  it("results() iterates too; next returns all the results", function()
    green_run(function()
      local p = green.GreenPile()
      p:spawn(function() return 1, 2 end)
      p:spawn(function() return "x" end)
      assert.are.same({ 1, 2 }, { p:next() })
      local res = {}
      for r in p:results() do res[#res + 1] = r end
      assert.are.same({ "x" }, res)
    end)
  end)

  it("a spawn that times out on a full pile does not break the "
     .. "sequence (test_pile_spawn_times_out)", function()
    green_run(function()
      local p = green.GreenPile(4)
      for i = 0, 3 do p:spawn(passthru, i) end
      local ok, err = pcall(function()
        local _ <close> = green.Timeout(0)
        p:spawn(passthru, "time out")
      end)
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
      for i = 4, 9 do p:spawn(passthru, i) end
      local res = {}
      for r in p do res[#res + 1] = r end
      assert.are.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, res)
    end)
  end)

  it("two piles share one pool (test_constructing_from_pool)", function()
    green_run(function()
      local pool = green.GreenPool(2)
      local pile1, pile2 = green.GreenPile(pool), green.GreenPile(pool)
      local function work(pile, unique)
        for i = 0, 9 do pile:spawn(passthru, i + unique) end
      end
      local w1 = spawn(work, pile1, 0)
      local w2 = spawn(work, pile2, 100)
      sleep(0)
      local r2, r1 = {}, {}
      for r in pile2 do r2[#r2 + 1] = r end
      for r in pile1 do r1[#r1 + 1] = r end
      assert.are.same({ 100, 101, 102, 103, 104, 105, 106, 107, 108, 109 },
                      r2)
      assert.are.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, r1)
      w1:wait()
      w2:wait()
    end)
  end)

  it("raises a thread's error at its turn, then goes on", function()
    green_run(function()
      local p = green.GreenPile(2)
      p:spawn(function() return 1 end)
      p:spawn(function() error("two", 0) end)
      p:spawn(function() return 3 end)
      assert.are.equal(1, p:next())
      local ok, err = pcall(p.next, p)
      assert.is_false(ok)
      assert.matches("two", err)
      assert.are.equal(3, p:next())
      assert.is_nil(p:next())
    end)
  end)

  it("next can be killed or timed out without losing a result", function()
    green_run(function()
      local p = green.GreenPile(2)
      local ev = green.Event()
      p:spawn(function() return ev:wait() end)
      local ok, err = pcall(function()
        local _ <close> = green.Timeout(0.01, "t")
        return p:next()
      end)
      assert.are.same({ false, "t" }, { ok, err })
      local reader = spawn(function() return p:next() end)
      sleep(0)
      reader:kill()
      ev:send("v")
      assert.are.equal("v", p:next())
      assert.is_nil(p:next())
    end)
  end)

  it("a reader killed just as its thread ended leaves the result for "
     .. "the next", function()
    green_run(function()
      local pile = green.GreenPile(2)
      local ev = green.Event()
      local first = pile:spawn(function()
        ev:wait()
        return "first"
      end)
      pile:spawn(function() return "second" end)
      local reader = spawn(function() return pile:next() end)
      sleep(0) -- the reader waits for the first thread
      ev:send() -- the first thread runs next and wakes the reader ...
      local killer = spawn(function()
        assert.is_true(first:dead()) -- ... which has not run yet
        reader:kill()
      end)
      assert.are.equal(green.GreenletExit, reader:wait())
      killer:wait()
      assert.are.equal(2, pile:count())
      assert.are.same({ "first", "second" }, { pile:next(), pile:next() })
      assert.are.equal(0, pile:count())
    end)
  end)

  -- Wait for gt, failing the spec (instead of hanging) after 10 s.
  local function finish_within(gt)
    local ok, err = pcall(function()
      local _ <close> = green.Timeout(10, "still blocked")
      return gt:wait()
    end)
    assert(ok or err ~= "still blocked", "next() never returned")
    return ok, err
  end

  it("a reader waiting for a spawn that is killed returns nothing",
     function()
    green_run(function()
      local pool = green.GreenPool(1)
      local ev = green.Event()
      pool:spawn(ev.wait, ev) -- the pool is full
      local pile = green.GreenPile(pool)
      local spawner = spawn(function() pile:spawn(function() end) end)
      sleep(0)
      local reader = spawn(function() return select("#", pile:next()) end)
      sleep(0)
      assert.are.same({ "suspended", "Queue:get" }, { reader:status() })
      spawner:kill()
      assert.are.equal(0, pile:count())
      assert.are.same({ true, 0 }, { finish_within(reader) })
      ev:send()
    end)
  end)

  it("a reader killed as it was told nothing is coming does not end "
     .. "the next reader early", function()
    green_run(function()
      local pool = green.GreenPool(1)
      local ev = green.Event()
      pool:spawn(ev.wait, ev) -- the pool is full
      local pile = green.GreenPile(pool)
      local reader = spawn(function() return pile:next() end)
      local ok, err = pcall(function()
        local _ <close> = green.Timeout(0.001, "spawn timed out")
        pile:spawn(function() end) -- blocks; the reader waits for it
      end)
      assert.are.same({ false, "spawn timed out" }, { ok, err })
      -- The reader was told nothing is coming, and has not run yet.
      reader:kill()
      ev:send()
      sleep(0) -- the pool's thread ends
      pile:spawn(function() return "after" end)
      assert.are.equal(1, pile:count())
      assert.are.equal("after", pile:next())
      assert.are.equal(0, pile:count())
    end)
  end)

  it("two readers and one thread: the other reader returns nothing once "
     .. "it is read", function()
    green_run(function()
      local pile = green.GreenPile(2)
      local ev = green.Event()
      pile:spawn(function() return ev:wait() end)
      local r1 = spawn(function() return pile:next() end)
      local r2 = spawn(function() return select("#", pile:next()) end)
      sleep(0)
      ev:send("only")
      assert.are.same({ true, "only" }, { finish_within(r1) })
      assert.are.same({ true, 0 }, { finish_within(r2) })
      assert.are.equal(0, pile:count())
      pile:spawn(function() return "later" end) -- still usable
      assert.are.equal("later", pile:next())
    end)
  end)

  it("rejects a bad size", function()
    assert.has_error(function() green.GreenPile("x") end)
  end)
end)
