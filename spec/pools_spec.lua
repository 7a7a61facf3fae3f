local green = require "green"

local spawn, sleep = green.spawn, green.sleep

-- A pool of integers 1, 2, 3, ... (eventlet's IntPool).
local function intpool(opts)
  local n = 0
  opts = opts or {}
  opts.create = opts.create or function()
    n = n + 1
    return n
  end
  return green.pools.Pool(opts)
end

describe("green.pools.Pool", function()
  it("creates up to max_size, then reuses (test_getting_and_putting)",
     function()
    green_run(function()
      local pool = intpool({ max_size = 4 })
      local one, two = pool:get(), pool:get()
      assert.are.same({ 1, 2 }, { one, two })
      assert.are.equal(2, pool:free())
      pool:put(one)
      assert.are.equal(3, pool:free())
      assert.are.equal(1, pool:get())
    end)
  end)

  it("min_size items are created up front", function()
    green_run(function()
      local pool = intpool({ min_size = 2, max_size = 3 })
      assert.are.equal(3, pool:free())
      assert.are.equal(1, pool:get())
      assert.are.equal(2, pool:get())
      assert.are.equal(3, pool:get())
    end)
  end)

  it("refuses min_size above max_size, and bad options (issue 7)",
     function()
    local created = 0
    local function create() created = created + 1; return created end
    local ok, err = pcall(green.pools.Pool,
                          { create = create, min_size = math.maxinteger })
    assert.is_false(ok)
    assert.matches("min_size %d+ is larger than max_size 4", err)
    ok, err = pcall(green.pools.Pool,
                    { create = create, min_size = 5, max_size = 2 })
    assert.is_false(ok)
    assert.matches("min_size 5 is larger than max_size 2", err)
    assert.are.equal(0, created) -- nothing was created before the check
    ok, err = pcall(green.pools.Pool, { create = create, maxsize = 2 })
    assert.is_false(ok)
    assert.matches("unknown option 'maxsize'", err)
    ok, err = pcall(green.pools.Pool, { create = "connect" })
    assert.is_false(ok)
    assert.matches("create: function expected", err)
    assert.are.equal(2, green.pools.Pool{ create = create, min_size = 2,
                                          max_size = 2 }:free())
  end)

  it("order_as_stack reuses the most recent item first", function()
    green_run(function()
      local fifo = intpool({ max_size = 3 })
      local stack = intpool({ max_size = 3, order_as_stack = true })
      for _, pool in ipairs({ fifo, stack }) do
        local a, b = pool:get(), pool:get()
        pool:put(a)
        pool:put(b)
      end
      assert.are.equal(1, fifo:get())
      assert.are.equal(2, stack:get())
    end)
  end)

  it("get blocks when max_size are out; put hands over FIFO "
     .. "(test_exhaustion / test_blocks_on_pool)", function()
    local order = {}
    green_run(function()
      local pool = intpool({ max_size = 1 })
      local one = pool:get()
      local ws = {}
      for i = 1, 2 do
        ws[i] = spawn(function()
          local x = pool:get()
          order[#order + 1] = i
          pool:put(x)
        end)
      end
      sleep(0)
      assert.are.equal(2, pool:waiting())
      assert.are.equal(0, pool:free())
      pool:put(one)
      assert.are.same({}, order) -- put never switches
      ws[1]:wait()
      ws[2]:wait()
      assert.are.equal(0, pool:waiting())
      assert.are.equal(1, pool:free())
    end)
    assert.are.same({ 1, 2 }, order)
  end)

  it("never hands an item to two threads; a double put raises",
     function()
    green_run(function()
      local pool = intpool({ max_size = 1 })
      local x = pool:get()
      pool:put(x)
      assert.has_error(function() pool:put(x) end)
      assert.has_error(function() pool:put("stranger") end)
    end)
  end)

  it("a waiter killed in get leaves no stale waiter", function()
    local got = {}
    green_run(function()
      local pool = intpool({ max_size = 1 })
      local x = pool:get()
      local a = spawn(function() got[#got + 1] = pool:get() end)
      local b = spawn(function()
        local y = pool:get()
        got[#got + 1] = y
        pool:put(y)
      end)
      sleep(0)
      a:kill()
      assert.are.equal(1, pool:waiting())
      pool:put(x)
      b:wait()
    end)
    assert.are.same({ 1 }, got)
  end)

  it("a waiter handed an item and killed before it runs passes it on",
     function()
    local got = {}
    green_run(function()
      local pool = intpool({ max_size = 1 })
      local x = pool:get()
      local a = spawn(function() got[#got + 1] = pool:get() end)
      local b = spawn(function()
        local y = pool:get()
        got[#got + 1] = y
        pool:put(y)
      end)
      sleep(0)
      pool:put(x) -- handed to a
      a:kill()    -- a passes it to b
      b:wait()
      assert.are.equal(1, pool:free())
    end)
    assert.are.same({ 1 }, got)
  end)

  it("a Timeout in get leaves no stale waiter (test_pool_smash)",
     function()
    green_run(function()
      local pool = intpool({ max_size = 1 })
      local token = pool:get()
      local gp = green.GreenPool(1)
      local e1 = gp:spawn(function()
        local ok, err = pcall(function()
          local _ <close> = green.Timeout(0, "timed out")
          return pool:get()
        end)
        assert.is_false(ok)
        return err
      end)
      assert.are.equal("timed out", e1:wait())
      assert.are.equal(0, pool:waiting())
      pool:put(token)
      assert.are.equal("resumed", gp:spawn(function()
        return "resumed"
      end):wait())
      assert.are.equal(token, pool:get())
    end)
  end)

  it("a failed create wakes the next waiter instead of stranding it",
     function()
    local got = {}
    green_run(function()
      local fail, started = true, green.Event()
      local gate = green.Event()
      local n = 0
      local pool = green.pools.Pool({ max_size = 1, create = function()
        n = n + 1
        if fail then
          started:send()
          gate:wait() -- a slow connect that then fails
          fail = false
          error("create failed", 0)
        end
        return "item" .. n
      end })
      local a = spawn(function() return pcall(pool.get, pool) end)
      started:wait()
      local b = spawn(function() got[#got + 1] = pool:get() end)
      sleep(0)
      assert.are.equal(1, pool:waiting())
      gate:send()
      local ok, err = a:wait()
      assert.are.same({ false, "create failed" }, { ok, err })
      b:wait() -- not stranded: b created its own item
    end)
    assert.are.same({ "item2" }, got)
  end)

  it("create's error is raised by get and frees the slot", function()
    green_run(function()
      local pool = green.pools.Pool({ max_size = 1, create = function()
        error("nope", 0)
      end })
      assert.has_error(function() pool:get() end, "nope")
      assert.are.equal(1, pool:free())
      assert.has_error(function() green.pools.Pool():get() end)
    end)
  end)

  it("an item put after a shrink is discarded (test_resize)", function()
    green_run(function()
      local pool = intpool({ max_size = 2 })
      local a, b = pool:get(), pool:get()
      assert.are.equal(0, pool:free())
      pool:resize(1)
      pool:put(a) -- discarded
      assert.are.equal(0, pool:free())
      pool:put(b)
      assert.are.equal(1, pool:free())
      assert.are.equal(b, pool:get())
      pool:resize(2)
      assert.are.equal(1, pool:free())
    end)
  end)

  it("resize up lets a blocked get create", function()
    green_run(function()
      local pool = intpool({ max_size = 1 })
      pool:get()
      local t = spawn(function() return pool:get() end)
      sleep(0)
      pool:resize(2)
      assert.are.equal(2, t:wait())
    end)
  end)

  it("item() as a <close> variable puts the item back, also on error",
     function()
    green_run(function()
      local obj = { name = "conn" }
      function obj:hello(x) return self.name .. x end
      local pool = green.pools.Pool({ max_size = 1, create = function()
        return obj
      end })
      do
        local conn <close>, raw = pool:item()
        assert.are.equal(obj, raw)
        assert.are.equal("conn!", conn:hello("!"))
        assert.are.equal("conn", conn.name)
        assert.are.equal(0, pool:free())
      end
      assert.are.equal(1, pool:free())
      assert.has_error(function()
        local _ <close> = pool:item()
        error("boom")
      end)
      assert.are.equal(1, pool:free())
    end)
  end)

  it("item(fn) returns fn's results and puts back on error", function()
    green_run(function()
      local pool = intpool({ max_size = 1 })
      assert.are.same({ 1, "x" }, { pool:item(function(i) return i, "x" end) })
      assert.has_error(function()
        pool:item(function() error("bad", 0) end)
      end, "bad")
      assert.are.equal(1, pool:free())
    end)
  end)

  it("an item held by a killed thread's <close> goes back", function()
    green_run(function()
      local pool = intpool({ max_size = 1 })
      local t = spawn(function()
        local _ <close> = pool:item()
        sleep(10)
      end)
      sleep(0)
      assert.are.equal(0, pool:free())
      t:kill()
      assert.are.equal(1, pool:free())
    end)
  end)

  it("many threads share a small pool (eventlet test_with_intpool)",
     function()
    green_run(function()
      for _, sizes in ipairs({ { 4, 7, 7 }, { 5, 25, 50 } }) do
        local ip = intpool({ max_size = sizes[1] })
        local gp = green.GreenPool(sizes[2])
        local inuse, most = {}, 0
        for _ = 1, sizes[3] do
          gp:spawn(function()
            local tok = ip:get()
            assert.is_nil(inuse[tok])
            inuse[tok] = true
            local n = 0
            for _ in pairs(inuse) do n = n + 1 end
            if n > most then most = n end
            sleep(0.0001)
            inuse[tok] = nil
            ip:put(tok)
          end)
        end
        gp:waitall()
        assert.is_true(most <= sizes[1])
      end
    end)
  end)

  it("a waiter handed a slot and killed before it runs leaves the slot "
     .. "to the next get", function()
    green_run(function()
      local pool = intpool({ max_size = 1 })
      local one = pool:get()
      local t = spawn(function() return pool:get() end)
      sleep(0)
      assert.are.same({ "suspended", "Pool:get" }, { t:status() })
      assert.are.equal(0, pool:free())
      pool:resize(2) -- t is handed a slot to create in
      t:kill()       -- and dies before it runs: nobody else waits
      assert.are.equal(1, pool:free())
      assert.are.equal(2, pool:get()) -- the slot: a new item
      assert.are.equal(0, pool:free())
      pool:put(one)
      assert.are.equal(1, pool:get())
    end)
  end)
end)
