local green = require "green"

local spawn, sleep = green.spawn, green.sleep

local function passthru(a)
  sleep(0.001)
  return a
end

describe("green.GreenPool", function()
  it("spawn returns threads whose results come back (test_spawn)",
     function()
    green_run(function()
      local p = green.GreenPool(4)
      local ts = {}
      for i = 1, 10 do ts[i] = p:spawn(passthru, i) end
      local res = {}
      for i = 1, 10 do res[i] = ts[i]:wait() end
      assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, res)
    end)
  end)

  it("spawn blocks while full; running/free/waiting track it", function()
    local order = {}
    green_run(function()
      local p = green.GreenPool(2)
      assert.are.equal(2, p:free())
      local ev = green.Event()
      p:spawn(function() ev:wait() end)
      p:spawn(function() ev:wait() end)
      assert.are.equal(0, p:free())
      assert.are.equal(2, p:running())
      local s = spawn(function()
        p:spawn(function() order[#order + 1] = "third ran" end)
        order[#order + 1] = "third spawned"
      end)
      sleep(0)
      assert.are.equal(1, p:waiting())
      order[#order + 1] = "send"
      ev:send()
      s:wait()
      p:waitall()
      assert.are.equal(0, p:running())
      assert.are.equal(2, p:free())
    end)
    assert.are.same({ "send", "third spawned", "third ran" }, order)
  end)

  it("spawn_n runs the function (test_spawn_n)", function()
    local res = {}
    green_run(function()
      local p = green.GreenPool(4)
      for i = 1, 10 do
        assert.is_nil(p:spawn_n(function() sleep(0.001); res[#res + 1] = i end))
      end
      p:waitall()
      table.sort(res)
    end)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, res)
  end)

  it("waiting counts blocked spawns (test_waiting)", function()
    green_run(function()
      local pool = green.GreenPool(1)
      local done = green.Event()
      local function waiter()
        pool:spawn(function() done:wait() end):wait()
      end
      local ws = {}
      ws[1] = spawn(waiter)
      sleep(0)
      assert.are.equal(0, pool:waiting())
      ws[2] = spawn(waiter)
      sleep(0)
      assert.are.equal(1, pool:waiting())
      ws[3] = spawn(waiter)
      sleep(0)
      assert.are.equal(2, pool:waiting())
      assert.are.equal(1, pool:running())
      done:send()
      for _, w in ipairs(ws) do w:wait() end
      assert.are.equal(0, pool:waiting())
      assert.are.equal(0, pool:running())
    end)
  end)

  it("a pool thread spawning into its full pool runs inline "
     .. "(test_reentrant)", function()
    green_run(function()
      local pool = green.GreenPool(1)
      local outer = pool:spawn(function()
        local w = pool:spawn(function(a) return a end, "reenter")
        return w:wait()
      end)
      assert.are.equal("reenter", outer:wait())
      local ev = green.Event()
      pool:spawn_n(function()
        pool:spawn_n(function(a) return a end, "reenter")
        ev:send("done")
      end)
      assert.are.equal("done", ev:wait())
      pool:waitall()
    end)
  end)

  it("an inline spawn's error is raised by its thread's wait", function()
    green_run(function()
      local pool = green.GreenPool(1)
      local outer = pool:spawn(function()
        local w = pool:spawn(function() error("inner", 0) end)
        local ok, err = pcall(w.wait, w)
        return ok, err
      end)
      local ok, err = outer:wait()
      assert.is_false(ok)
      assert.matches("inner", err)
    end)
  end)

  it("a kill or Timeout of the caller in an inline spawn raises in the "
     .. "caller", function()
    green_run(function()
      local pool = green.GreenPool(1)
      local timed = pool:spawn(function()
        local ok, err = pcall(function()
          local _ <close> = green.Timeout(0.001, "caller's timeout")
          pool:spawn(sleep, 10) -- inline: the pool is full, we are in it
          return "went on past its Timeout"
        end)
        return ok, err
      end)
      assert.are.same({ false, "caller's timeout" }, { timed:wait() })
      local ev, reached = green.Event(), false
      local killed = pool:spawn(function()
        pool:spawn_n(ev.wait, ev) -- inline
        reached = true
      end)
      sleep(0)
      killed:kill()
      assert.are.equal(green.GreenletExit, killed:wait())
      assert.is_false(reached)
    end)
  end)

  it("resize: shrink lets running threads finish; grow frees slots "
     .. "(test_resize)", function()
    green_run(function()
      local pool = green.GreenPool(2)
      local ev = green.Event()
      pool:spawn(function() ev:wait() end)
      pool:spawn(function() ev:wait() end)
      assert.are.equal(0, pool:free())
      pool:resize(1)
      ev:send()
      pool:waitall()
      assert.are.equal(1, pool:free())
      pool:resize(2)
      assert.are.equal(2, pool:free())
    end)
  end)

  it("resize up lets blocked spawns go at once", function()
    local started = 0
    green_run(function()
      local pool = green.GreenPool(1)
      local ev = green.Event()
      pool:spawn(function() ev:wait() end)
      local s = spawn(function()
        pool:spawn(function() started = started + 1 end)
      end)
      sleep(0)
      assert.are.equal(1, pool:waiting())
      pool:resize(2)
      s:wait()
      ev:send()
      pool:waitall()
    end)
    assert.are.equal(1, started)
  end)

  it("a failing thread frees its slot (test_exceptions)", function()
    green_run(function()
      local p = green.GreenPool(2)
      local gt = p:spawn(function() error("boom", 0) end)
      assert.are.equal(1, p:free())
      assert.has_error(function() gt:wait() end)
      p:waitall()
      assert.are.equal(2, p:free())
      gt = p:spawn(function() error(green.GreenletExit) end)
      gt:wait()
      p:waitall()
      assert.are.equal(2, p:free())
    end)
  end)

  it("a thread killed before it starts frees its slot", function()
    local ran = false
    green_run(function()
      local p = green.GreenPool(1)
      local gt = p:spawn(function() ran = true end)
      gt:kill()
      assert.are.equal(1, p:free())
      assert.are.equal(0, p:running())
    end)
    assert.is_false(ran)
  end)

  it("a spawn blocked on a full pool can be killed: no stale waiter",
     function()
    local ran = {}
    green_run(function()
      local p = green.GreenPool(1)
      local ev = green.Event()
      p:spawn(function() ev:wait() end)
      local a = spawn(function()
        p:spawn(function() ran[#ran + 1] = "a" end)
      end)
      local b = spawn(function()
        p:spawn(function() ran[#ran + 1] = "b" end)
      end)
      sleep(0)
      a:kill()
      assert.are.equal(1, p:waiting())
      ev:send()
      b:wait()
      p:waitall()
      assert.are.equal(1, p:free())
    end)
    assert.are.same({ "b" }, ran)
  end)

  it("a spawn blocked on a full pool can time out (test_pile_spawn_times_out)",
     function()
    green_run(function()
      local p = green.GreenPool(1)
      local ev = green.Event()
      p:spawn(function() ev:wait() end)
      local ok, err = pcall(function()
        local _ <close> = green.Timeout(0.01, "full")
        return p:spawn(function() end)
      end)
      assert.are.same({ false, "full" }, { ok, err })
      assert.are.equal(0, p:waiting())
      ev:send()
      p:waitall()
      assert.are.equal(1, p:free())
    end)
  end)

  it("a spawner woken with a slot, then killed, passes the slot on",
     function()
    local ran = {}
    green_run(function()
      local p = green.GreenPool(1)
      local ev = green.Event()
      p:spawn(function() ev:wait() end)
      local a = spawn(function()
        p:spawn(function() ran[#ran + 1] = "a" end)
      end)
      local b = spawn(function()
        p:spawn(function() ran[#ran + 1] = "b" end)
      end)
      sleep(0)
      ev:send()
      sleep(0) -- the first thread ends: its slot is handed to a
      a:kill()
      b:wait()
      p:waitall()
    end)
    assert.are.same({ "b" }, ran)
  end)

  it("waitall on an empty pool returns; from inside the pool raises",
     function()
    green_run(function()
      local p = green.GreenPool()
      p:waitall()
      local gt = p:spawn(function() p:waitall() end)
      assert.has_error(function() gt:wait() end)
    end)
  end)

  it("waitall can be killed and timed out", function()
    green_run(function()
      local p = green.GreenPool()
      local ev = green.Event()
      p:spawn(function() ev:wait() end)
      local w = spawn(function() p:waitall() end)
      sleep(0)
      w:kill()
      local ok, err = pcall(function()
        local _ <close> = green.Timeout(0.01, "t")
        p:waitall()
      end)
      assert.are.same({ false, "t" }, { ok, err })
      ev:send()
      p:waitall()
      assert.are.equal(0, p:running())
    end)
  end)

  it("a <close> pool waits for its threads", function()
    local done = false
    green_run(function()
      do
        local p <close> = green.GreenPool(2)
        p:spawn(function() sleep(0.001); done = true end)
      end
      assert.is_true(done)
    end)
  end)
end)

describe("GreenPool:imap", function()
  it("returns results in input order (test_imap)", function()
    green_run(function()
      local p = green.GreenPool(4)
      local res = {}
      for r in p:imap(function(x)
        sleep(0.001 * (10 - x))
        return x
      end, { 1, 2, 3, 4, 5, 6, 7, 8, 9 }) do
        res[#res + 1] = r
      end
      assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9 }, res)
    end)
  end)

  it("an empty input ends at once (test_empty_imap)", function()
    green_run(function()
      local it = green.GreenPool(4):imap(passthru, {})
      assert.is_nil(it())
    end)
  end)

  it("nil function returns the arguments (test_imap_nonefunc)", function()
    green_run(function()
      local it = green.GreenPool(4):imap(nil, { 1, 2 }, { "a", "b" })
      assert.are.same({ 1, "a" }, { it() })
      assert.are.same({ 2, "b" }, { it() })
      assert.is_nil(it())
    end)
  end)

  it("zips several iterables, stopping at the shortest "
     .. "(test_imap_multi_args)", function()
    green_run(function()
      local res = {}
      local i = 0
      local function gen()
        i = i + 1
        return i * 10
      end
      for a in green.GreenPool(3):imap(function(x, y) return x + y end,
                                        { 1, 2, 3 }, gen) do
        res[#res + 1] = a
      end
      assert.are.same({ 11, 22, 33 }, res)
    end)
  end)

  it("an error surfaces at its item and iteration continues "
     .. "(test_imap_raises)", function()
    green_run(function()
      local p = green.GreenPool(4)
      local input = {}
      for i = 0, 9 do input[#input + 1] = i end
      local it = p:imap(function(item)
        if item == 1 or item == 7 then error("intentional error", 0) end
        return item
      end, input)
      local res = {}
      while true do
        local ok, r = pcall(it)
        if not ok then
          assert.matches("intentional error", r)
          res[#res + 1] = "r"
        elseif r == nil then
          break
        else
          res[#res + 1] = r
        end
      end
      assert.are.same({ 0, "r", 2, 3, 4, 5, 6, "r", 8, 9 }, res)
    end)
  end)

  it("keeps at most the pool size of calls ahead of the consumer",
     function()
    green_run(function()
      local p = green.GreenPool(3)
      local started, consumed, most = 0, 0, 0
      local n = 0
      local function forever() -- an endless input
        n = n + 1
        return n
      end
      local it = p:imap(function(x)
        started = started + 1
        if started - consumed > most then most = started - consumed end
        return x
      end, forever)
      for _ = 1, 100 do
        assert.is_not_nil(it())
        consumed = consumed + 1
        sleep(0)
      end
      assert.is_true(most <= 3, "ahead: " .. most)
      assert.is_true(n <= 100 + 3)
      p:waitall()
    end)
  end)

  it("a consumer timed out in imap keeps its place", function()
    green_run(function()
      local p = green.GreenPool(2)
      local ev = green.Event()
      local it = p:imap(function(x)
        if x == 1 then ev:wait() end
        return x
      end, { 1, 2 })
      local ok, err = pcall(function()
        local _ <close> = green.Timeout(0.01, "t")
        return it()
      end)
      assert.are.same({ false, "t" }, { ok, err })
      ev:send()
      assert.are.same({ 1, 2 }, { it(), it() })
      assert.is_nil(it())
    end)
  end)

  it("a consumer killed just as its call ended keeps its place",
     function()
    green_run(function()
      local p = green.GreenPool(2)
      local ev = green.Event()
      local call1
      local it = p:imap(function(x)
        if x == 1 then
          call1 = green.getcurrent()
          ev:wait()
        end
        return x
      end, { 1, 2 })
      local consumer = spawn(function() return it() end)
      sleep(0) -- the consumer waits for the call of 1
      ev:send() -- the call ends and wakes the consumer ...
      local killer = spawn(function()
        assert.is_true(call1:dead()) -- ... which has not run yet
        consumer:kill()
      end)
      assert.are.equal(green.GreenletExit, consumer:wait())
      killer:wait()
      assert.are.same({ 1, 2 }, { it(), it() })
      assert.is_nil(it())
    end)
  end)

  it("a consumer interrupted while a spawn waits for the shared pool "
     .. "loses no input", function()
    green_run(function()
      local pool = green.GreenPool(1)
      local ev = green.Event()
      pool:spawn(ev.wait, ev) -- another user holds the pool
      local it = pool:starmap(function(a, b) return a .. b end,
                              { { "a", 1 }, { "b", 2 } })
      local ok, err = pcall(function()
        local _ <close> = green.Timeout(0.001, "t")
        return it()
      end)
      assert.are.same({ false, "t" }, { ok, err })
      ev:send()
      assert.are.same({ "a1", "b2" }, { it(), it() })
      assert.is_nil(it())
    end)
  end)

  it("starmap unpacks argument tables (test_starmap)", function()
    green_run(function()
      local res = {}
      for r in green.GreenPool(4):starmap(function(a, b) return a * b end,
                                          { { 1, 2 }, { 3, 4 } }) do
        res[#res + 1] = r
      end
      assert.are.same({ 2, 12 }, res)
    end)
  end)
end)
