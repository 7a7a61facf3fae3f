local green = require "green"

local spawn, sleep = green.spawn, green.sleep

describe("green.Queue", function()
  it("send first, then get (eventlet test_send_first)", function()
    green_run(function()
      local q = green.Queue()
      q:put("hi")
      assert.are.equal("hi", q:get())
    end)
  end)

  it("get first, then put (eventlet test_send_last)", function()
    green_run(function()
      local q = green.Queue()
      local t = spawn(function() return q:get() end)
      sleep(0)
      assert.are.equal(1, q:getting())
      q:put("hi")
      assert.are.equal("hi", t:wait())
    end)
  end)

  it("put blocks at maxsize (eventlet test_max_size)", function()
    local order = {}
    green_run(function()
      local q = green.Queue(2)
      local t = spawn(function()
        q:put("a"); order[#order + 1] = "put a"
        q:put("b"); order[#order + 1] = "put b"
        q:put("c"); order[#order + 1] = "put c"
      end)
      sleep(0)
      assert.is_true(q:full())
      assert.are.equal(2, q:qsize())
      assert.are.equal(1, q:putting())
      order[#order + 1] = "get"
      assert.are.equal("a", q:get())
      t:wait()
      assert.are.same({ "b", "c" }, { q:get(), q:get() })
    end)
    assert.are.same({ "put a", "put b", "get", "put c" }, order)
  end)

  it("Queue(0) is a channel: put waits for a getter", function()
    local order = {}
    green_run(function()
      local q = green.Queue(0)
      assert.is_true(q:full())
      assert.are.same({ nil, "full" }, { q:put_nowait(1) })
      local t = spawn(function()
        q:put("x")
        order[#order + 1] = "put returned"
      end)
      sleep(0)
      sleep(0)
      assert.are.same({}, order)
      assert.are.equal(0, q:qsize())
      assert.are.equal("x", q:get())
      t:wait()
    end)
    assert.are.same({ "put returned" }, order)
  end)

  it("a channel get waits for a putter (eventlet test_channel_wait)",
     function()
    local events = {}
    green_run(function()
      local q = green.Queue(0)
      local t = spawn(function()
        events[#events + 1] = "get"
        local v = q:get()
        events[#events + 1] = v
      end)
      sleep(0)
      q:put("hi") -- handed straight to the getter: does not block
      events[#events + 1] = "put"
      t:wait()
    end)
    assert.are.same({ "get", "put", "hi" }, events)
  end)

  it("no maxsize means unbounded", function()
    green_run(function()
      local q = green.Queue()
      for i = 1, 1000 do assert.is_true(q:put_nowait(i)) end
      assert.is_false(q:full())
      assert.are.equal(1000, q:qsize())
      for i = 1, 1000 do assert.are.equal(i, q:get_nowait()) end
      assert.is_true(q:empty())
    end)
  end)

  it("non-blocking calls return nil plus a reason; nil items raise",
     function()
    green_run(function()
      local q = green.Queue(1)
      assert.are.same({ nil, "empty" }, { q:get_nowait() })
      assert.are.same({ nil, "empty" }, { q:get(false) })
      assert.is_true(q:put(false))
      assert.are.same({ nil, "full" }, { q:put("y", false) })
      assert.is_false(q:get())
      assert.has_error(function() q:put(nil) end)
      assert.has_error(function() q:put_nowait(nil) end)
      assert.has_error(function() green.Queue(-1) end)
    end)
  end)

  it("wakes getters FIFO (eventlet test_multiple_waiters)", function()
    local got = {}
    green_run(function()
      local q = green.Queue()
      for i = 1, 3 do
        spawn(function() local v = q:get(); got[#got + 1] = { i, v } end)
      end
      sleep(0)
      for i = 1, 3 do q:put(i * 10) end
      assert.are.same({}, got) -- put never switches
    end)
    assert.are.same({ { 1, 10 }, { 2, 20 }, { 3, 30 } }, got)
  end)

  it("wakes putters FIFO", function()
    green_run(function()
      local q = green.Queue(1)
      q:put(0)
      for i = 1, 3 do spawn(function() q:put(i) end) end
      sleep(0)
      local got = {}
      for _ = 1, 4 do got[#got + 1] = q:get() end
      assert.are.same({ 0, 1, 2, 3 }, got)
    end)
  end)

  it("get with a timeout returns nil, 'timeout' and leaves no waiter",
     function()
    green_run(function()
      local q = green.Queue()
      assert.are.same({ nil, "timeout" }, { q:get(true, 0.01) })
      assert.are.equal(0, q:getting())
      q:put(1)
      assert.are.equal(1, q:qsize())
    end)
  end)

  it("put with a timeout returns nil, 'timeout' and leaves no waiter",
     function()
    green_run(function()
      local q = green.Queue(1)
      q:put(1)
      assert.are.same({ nil, "timeout" }, { q:put(2, true, 0.01) })
      assert.are.equal(0, q:putting())
      assert.are.equal(1, q:get())
      assert.is_true(q:empty())
    end)
  end)

  it("a getter killed while waiting leaves no stale waiter "
     .. "(eventlet test_waiters_that_cancel)", function()
    local got = {}
    green_run(function()
      local q = green.Queue()
      local a = spawn(function()
        local v = q:get()
        got[#got + 1] = { "a", v }
      end)
      spawn(function() local v = q:get(); got[#got + 1] = { "b", v } end)
      sleep(0)
      a:kill()
      q:put("item")
    end)
    assert.are.same({ { "b", "item" } }, got)
  end)

  it("a getter woken then killed before it runs puts the item back",
     function()
    local got = {}
    green_run(function()
      local q = green.Queue()
      local a = spawn(function()
        local v = q:get()
        got[#got + 1] = { "a", v }
      end)
      sleep(0)
      q:put("first")
      q:put("second")
      a:kill() -- a was handed "first" but dies before it runs
      assert.are.equal("first", q:get())
      assert.are.equal("second", q:get())
    end)
    assert.are.same({}, got)
  end)

  it("an item put back by a killed getter goes to the next getter",
     function()
    local got = {}
    green_run(function()
      local q = green.Queue()
      local a = spawn(function()
        local v = q:get()
        got[#got + 1] = { "a", v }
      end)
      spawn(function() local v = q:get(); got[#got + 1] = { "b", v } end)
      sleep(0)
      q:put("item") -- handed to a
      a:kill()      -- a gives it to b
      sleep(0)
    end)
    assert.are.same({ { "b", "item" } }, got)
  end)

  it("a foreign Timeout in get raises it and loses nothing", function()
    green_run(function()
      local q = green.Queue()
      local ok, err = pcall(function()
        local _ <close> = green.Timeout(0.01, "too slow")
        return q:get()
      end)
      assert.are.same({ false, "too slow" }, { ok, err })
      assert.are.equal(0, q:getting())
    end)
  end)

  it("a putter killed while blocked leaves no stale item", function()
    green_run(function()
      local q = green.Queue(1)
      q:put(1)
      local t = spawn(function() q:put(2) end)
      spawn(function() q:put(3) end)
      sleep(0)
      t:kill()
      assert.are.equal(1, q:putting())
      assert.are.same({ 1, 3 }, { q:get(), q:get() })
      assert.is_true(q:empty())
    end)
  end)

  it("a put that went through as its timeout fires reports success",
     function()
    green_run(function()
      local q = green.Queue(0)
      local res
      local t = spawn(function() res = { q:put("x", true, 0) } end)
      sleep(0) -- t waits; its 0 s timeout fires on the next hub turn
      assert.are.equal("x", q:get())
      t:wait()
      assert.are.same({ true }, res)
    end)
  end)

  it("a channel putter killed while blocked delivers nothing", function()
    green_run(function()
      local q = green.Queue(0)
      local t = spawn(function() q:put("lost") end)
      sleep(0)
      t:kill()
      assert.are.same({ nil, "empty" }, { q:get_nowait() })
    end)
  end)

  it("resize up lets blocked putters in (eventlet test_resize_up)",
     function()
    green_run(function()
      local q = green.Queue(0)
      local t = spawn(function() q:put("a") end)
      sleep(0)
      q:resize(1)
      assert.are.equal(1, q:qsize())
      t:wait()
      assert.are.equal("a", q:get())
    end)
  end)

  it("task_done and join (eventlet test_task_done / test_join)",
     function()
    local order = {}
    green_run(function()
      local q = green.Queue()
      for i = 1, 3 do q:put(i) end
      local joiner = spawn(function()
        q:join()
        order[#order + 1] = "joined"
      end)
      for _ = 1, 3 do
        q:get()
        sleep(0)
        order[#order + 1] = "done"
        q:task_done()
      end
      joiner:wait()
      assert.has_error(function() q:task_done() end,
                       "task_done() called too many times")
      assert.is_true(q:join())
    end)
    assert.are.same({ "done", "done", "done", "joined" }, order)
  end)

  it("join with a timeout returns false; a killed joiner leaves no waiter",
     function()
    green_run(function()
      local q = green.Queue()
      q:put(1)
      assert.is_false(q:join(0.01))
      local t = spawn(function() q:join() end)
      sleep(0)
      t:kill()
      q:get()
      q:task_done()
      assert.is_true(q:join())
    end)
  end)
end)

describe("green.LightQueue", function()
  it("has no task_done/join", function()
    green_run(function()
      local q = green.LightQueue()
      assert.is_nil(q.task_done)
      q:put(1)
      assert.are.equal(1, q:get())
    end)
  end)
end)

describe("green.LifoQueue", function()
  it("returns the last item put first", function()
    green_run(function()
      local q = green.LifoQueue()
      for i = 1, 3 do q:put(i) end
      assert.are.same({ 3, 2, 1 }, { q:get(), q:get(), q:get() })
    end)
  end)
end)

describe("green.PriorityQueue", function()
  it("returns the lowest first, equal priorities in put order", function()
    green_run(function()
      local q = green.PriorityQueue()
      q:put({ 2, "b1" })
      q:put({ 1, "a" })
      q:put({ 3, "c" })
      q:put({ 2, "b2" })
      local got = {}
      while not q:empty() do got[#got + 1] = q:get()[2] end
      assert.are.same({ "a", "b1", "b2", "c" }, got)
      for _, v in ipairs({ 5, 3, 9, 1 }) do q:put(v) end
      assert.are.same({ 1, 3, 5, 9 }, { q:get(), q:get(), q:get(), q:get() })
    end)
  end)

  it("a killed getter's item comes out next", function()
    green_run(function()
      local q = green.PriorityQueue(nil, function(a, b) return a > b end)
      local a = spawn(function() q:get() end)
      sleep(0)
      q:put(5)
      q:put(9)
      a:kill()
      assert.are.same({ 9, 5 }, { q:get(), q:get() })
    end)
  end)
end)
