local green = require "green"
local h = require "helper"

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

  it("a PriorityQueue getter killed after it took an item puts it back "
     .. "even when 'lt' cannot compare it (the item was lost, and the "
     .. "comparison error replaced the kill)", function()
    green_run(function()
      local q = green.PriorityQueue(nil, function(a, b)
        if a.bad or b.bad then error("cannot compare", 0) end
        return a.p < b.p
      end)
      local bad, one, two = { bad = true }, { p = 1 }, { p = 2 }
      local seen
      local a = spawn(function()
        local ok, err = pcall(q.get, q)
        seen = err
        if not ok then error(err, 0) end
      end)
      h.until_suspended(a)
      q:put(bad)  -- handed to a, which has not run yet
      q:put(two)  -- stored: no getter left (one item: no comparison)
      q:put(one)  -- compares only numbers
      a:kill()    -- a gives `bad` back: the comparison with `one` raises
      assert.are.equal(green.GreenletExit, seen)
      assert.are.equal(3, q:qsize())
      assert.are.equal(bad, q:get()) -- given back: it comes out first
      assert.are.equal(one, q:get())
      assert.are.equal(two, q:get())
      assert.are.equal(0, q:qsize())
      -- the heap is whole again: ordered puts and gets work
      for _, p in ipairs { 5, 3, 4 } do q:put({ p = p }) end
      assert.are.equal(3, q:get().p)
      assert.are.equal(4, q:get().p)
      assert.are.equal(5, q:get().p)
    end)
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

  -- Drain q with get_nowait, checking qsize agrees with what comes out.
  local function drain(q)
    local n, got = q:qsize(), {}
    while true do
      local v = q:get_nowait()
      if v == nil then break end
      got[#got + 1] = v
    end
    assert.are.equal(n, #got)
    return got
  end

  it("a comparison that uses the queue makes the outer call raise, and "
     .. "loses nothing", function()
    green_run(function()
      local q, reenter
      q = green.PriorityQueue(nil, function(a, b)
        if reenter then
          local f = reenter
          reenter = nil
          f()
        end
        return a < b
      end)
      q:put(5)
      q:put(4)
      reenter = function() assert.is_true(q:put_nowait(1)) end
      local ok, err = pcall(q.put, q, 3)
      assert.is_false(ok)
      assert.matches("queue changed during a comparison", err)
      assert.are.same({ 1, 4, 5 }, drain(q)) -- 3 was not put: it raised
      for _, v in ipairs({ 5, 4, 6 }) do q:put(v) end
      local inner
      reenter = function() inner = q:get_nowait() end
      ok, err = pcall(q.get, q)
      assert.is_false(ok)
      assert.matches("queue changed during a comparison", err)
      assert.are.equal(4, inner)
      assert.are.same({ 5, 6 }, drain(q)) -- not 5 twice, none lost
    end)
  end)

  it("a comparison that blocks while another thread uses the queue "
     .. "loses nothing", function()
    green_run(function()
      local q, gate
      q = green.PriorityQueue(nil, function(a, b)
        if gate then
          local ev = gate
          gate = nil
          ev:wait(10) -- a C-call boundary: the thread parks
        end
        return a < b
      end)
      q:put(1)
      q:put(2)
      local ev = green.Event()
      gate = ev
      local putter = spawn(function() return pcall(q.put, q, 0) end)
      sleep(0)
      assert.is_nil(gate) -- it is blocked in its comparison
      assert.are.equal(1, q:get_nowait()) -- the heap is whole meanwhile
      ev:send()
      local ok, err = putter:wait()
      assert.is_false(ok)
      assert.matches("queue changed during a comparison", err)
      assert.are.same({ 2 }, drain(q))
    end)
  end)
end)

describe("queue storage and hand-offs (bindings/queue.c)", function()
  -- A fixed pseudo-random sequence: the spec is repeatable.
  local function rng(seed)
    return function(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    end
  end

  it("keeps FIFO and LIFO order through growth, wrap-around and "
     .. "give-backs (against a model)", function()
    green_run(function()
      for _, lifo in ipairs { false, true } do
        local rand = rng(lifo and 7 or 3)
        local q = lifo and green.LifoQueue() or green.LightQueue()
        local model = {} -- model[1] comes out next
        for step = 1, 5000 do
          local r = rand(10)
          if r < 5 or #model == 0 then -- bursts grow the ring past 4, 8, ...
            for _ = 1, rand(40) + 1 do
              local v = { step }
              assert.is_true(q:put(v))
              if lifo then
                table.insert(model, 1, v)
              else
                model[#model + 1] = v
              end
            end
          elseif r < 9 then
            for _ = 1, rand(#model) + 1 do
              assert.are.equal(table.remove(model, 1), q:get_nowait())
            end
          else -- an item given back comes out next
            local v = q:get_nowait()
            assert.are.equal(table.remove(model, 1), v)
            q:_unpop(v)
            table.insert(model, 1, v)
          end
          assert.are.equal(#model, q:qsize())
        end
        while #model > 0 do
          assert.are.equal(table.remove(model, 1), q:get_nowait())
        end
        assert.is_true(q:empty())
        assert.are.same({ nil, "empty" }, { q:get_nowait() })
      end
    end)
  end)

  it("starts over after a big queue was drained", function()
    green_run(function()
      local q = green.Queue()
      for i = 1, 5000 do q:put(i) end
      for i = 1, 5000 do assert.are.equal(i, q:get()) end
      assert.is_true(q:empty())
      for i = 1, 10 do q:put(-i) end
      for i = 1, 10 do assert.are.equal(-i, q:get()) end
      assert.are.equal(5010, q:unfinished_tasks()) -- nothing marked done
    end)
  end)

  it("keeps stored and in-flight items alive through full collections",
     function()
    green_run(function()
      local q, ch, q2 = green.Queue(), green.Queue(0), green.Queue()
      for i = 1, 100 do q:put({ n = i }) end
      -- A channel putter's item lives only on the putter's stack, and an
      -- item handed to a getter that has not run yet on the getter's.
      local putter = spawn(function() ch:put({ n = "put" }) end)
      local getter = spawn(function() return q2:get() end)
      sleep(0)
      q2:put({ n = "handed" })
      collectgarbage()
      collectgarbage()
      assert.are.equal("handed", getter:wait().n)
      for i = 1, 100 do assert.are.equal(i, q:get().n) end
      assert.are.equal("put", ch:get().n)
      putter:wait()
    end)
  end)

  it("hands items to and takes them from threads blocked inside user "
     .. "coroutines", function()
    green_run(function()
      local q, ch = green.Queue(), green.Queue(0)
      local getter = spawn(function()
        return coroutine.wrap(function() return "got", q:get() end)()
      end)
      local putter = spawn(function()
        local co = coroutine.create(function() return ch:put("from co") end)
        return coroutine.resume(co)
      end)
      sleep(0)
      assert.are.equal(1, q:getting())
      assert.are.equal(1, ch:putting())
      q:put("item")
      assert.are.equal("from co", ch:get())
      assert.are.same({ "got", "item" }, { getter:wait() })
      assert.are.same({ true, true }, { putter:wait() })
    end)
  end)

  it("gives an item back to a waiting getter first (_unpop)", function()
    green_run(function()
      local q = green.LightQueue()
      local t = spawn(function() return q:get() end)
      sleep(0)
      q:_unpop("back")
      assert.is_true(q:empty())
      assert.are.equal("back", t:wait())
    end)
  end)

  it("refuses a method call on anything but its own class", function()
    green_run(function()
      local q = green.Queue()
      local ev = green.Event()
      local ok, err = pcall(q.get, ev)
      assert.is_false(ok)
      assert.matches("green.Queue expected, got green.Event", err)
      ok, err = pcall(q.put, setmetatable({}, getmetatable(q)), 1)
      assert.is_false(ok)
      assert.matches("green.Queue expected", err)
      -- LightQueue has its own methods: they refuse a Queue, and say
      -- which class they wanted
      ok, err = pcall(green.LightQueue().qsize, q)
      assert.is_false(ok)
      assert.matches("green.LightQueue expected, got green.Queue", err)
      assert.are.equal(0, q:qsize())
      ok, err = pcall(green.PriorityQueue().get, green.LifoQueue())
      assert.is_false(ok)
      assert.matches("green.PriorityQueue expected, got green.LifoQueue",
                     err)
    end)
  end)

  it("a full PriorityQueue's get lets the longest putter in first, so "
     .. "the lowest of all comes out", function()
    green_run(function()
      local q = green.PriorityQueue(2)
      q:put(5)
      q:put(6)
      local t = spawn(function() return q:put(1) end)
      sleep(0)
      assert.are.equal(1, q:putting())
      assert.are.equal(1, q:get())
      assert.is_true(t:wait())
      assert.are.same({ 5, 6 }, { q:get(), q:get() })
    end)
  end)

  it("a full PriorityQueue's get whose comparison fails loses nothing",
     function()
    green_run(function()
      local q = green.PriorityQueue(1)
      q:put(3)
      local t = spawn(function() return q:put("x") end) -- cannot compare
      sleep(0)
      local ok, err = pcall(q.get, q)
      assert.is_false(ok)
      assert.matches("compare", err)
      assert.are.equal(1, q:qsize())
      assert.are.equal(1, q:putting()) -- still waiting with its item
      t:kill()
      assert.are.equal(3, q:get())
    end)
  end)
end)

describe("toolkit waits from the host's main thread (stock lua5.4)",
         function()
  it("run the hub until a green thread hands over, and report deadlocks",
     function()
    local out, err, code = h.lua54_run([[
      local green = require "green"
      local q, ev, sem = green.Queue(), green.Event(), green.Semaphore(0)
      green.spawn(function() q:put("item") end)
      print(q:get())
      local ch = green.Queue(0)
      local t = green.spawn(function() return ch:get() end)
      print(ch:put("to t"), t:wait())
      green.spawn(function() ev:send("a", nil, "c") end)
      print(ev:wait())
      green.spawn(function() sem:release() end)
      print(sem:acquire(), sem:balance())
      print(q:get(true, 0.01))
      local ok, e = pcall(q.get, q)
      print(ok, e, q:getting())
      ok, e = pcall(ch.put, ch, "none")
      print(ok, e, ch:putting())
    ]])
    assert.are.equal(0, code, err)
    assert.are.equal(table.concat({
      "item",
      "true\tto t",
      "a\tnil\tc",
      "true\t0",
      "nil\ttimeout",
      "false\tdeadlock: the main thread is blocked in Queue:get and no "
        .. "green thread, timer or I/O is left to wake it\t0",
      "false\tdeadlock: the main thread is blocked in Queue:put and no "
        .. "green thread, timer or I/O is left to wake it\t0",
    }, "\n") .. "\n", out)
  end)
end)
