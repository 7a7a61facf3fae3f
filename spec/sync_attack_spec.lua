-- Attacks on the synchronisation toolkit and the pools: every blocking
-- call ("wait point") is interrupted in every way a thread can be, and
-- the primitive's counts are checked afterwards (nothing lost, nothing
-- delivered twice, no dead waiter left queued, no wake lost).
local green = require "green"
local h = require "helper"

local spawn = green.spawn

-- A wait point: `setup()` makes a primitive on which `wait(ctx)` blocks;
-- `wait` returns true once it has completed its operation (took a unit,
-- an item, a slot...); `wake(ctx)` completes exactly one waiting call
-- (never switches); `stock(ctx)` is the units the wakes made that no
-- waiter took (left in the primitive); `waiting(ctx)` the calls queued.
-- The invariant: successful waits + stock == wakes, waiting == 0.
local points = {}

local function point(name, what, t)
  t.name, t.what = name, what
  points[#points + 1] = t
end

point("Semaphore:acquire", "Semaphore:acquire", {
  setup = function() return { s = green.Semaphore(0) } end,
  wait = function(c) return c.s:acquire() end,
  wake = function(c) c.s:release() end,
  stock = function(c) return c.s:balance() + c.s:waiting() end,
  waiting = function(c) return c.s:waiting() end,
})

point("BoundedSemaphore:acquire", "Semaphore:acquire", {
  setup = function()
    local s = green.BoundedSemaphore(2)
    assert(s:acquire() and s:acquire())
    return { s = s }
  end,
  wait = function(c) return c.s:acquire() end,
  wake = function(c) c.s:release() end,
  stock = function(c) return c.s:balance() + c.s:waiting() end,
  waiting = function(c) return c.s:waiting() end,
})

point("CappedSemaphore:acquire", "Semaphore:acquire", {
  setup = function() return { s = green.CappedSemaphore(0, 2) } end,
  wait = function(c) return c.s:acquire() end,
  wake = function(c) assert(c.s:release(false)) end,
  stock = function(c) return c.s:balance() + c.s:waiting() end,
  waiting = function(c) return c.s:waiting() end,
})

point("CappedSemaphore:release", "Semaphore:acquire", {
  setup = function() return { s = green.CappedSemaphore(2, 2) } end,
  wait = function(c) return c.s:release() end,
  wake = function(c) assert(c.s:acquire(false)) end,
  -- room made by the wakes and not used by a release
  stock = function(c) return 2 - c.s:balance() end,
  waiting = function(c) return c.s.upper:waiting() end,
})

for _, cls in ipairs { "LightQueue", "Queue", "LifoQueue",
                       "PriorityQueue" } do
  point(cls .. ":get", "Queue:get", {
    setup = function() return { q = green[cls](), n = 0 } end,
    wait = function(c)
      local v = c.q:get()
      c.got = c.got or {}
      assert(not c.got[v], "item " .. tostring(v) .. " delivered twice")
      c.got[v] = true
      return v ~= nil
    end,
    wake = function(c)
      c.n = c.n + 1
      c.q:put(c.n)
    end,
    stock = function(c) return c.q:qsize() end,
    waiting = function(c) return c.q:getting() end,
    check = function(c)
      if c.q.unfinished_tasks then
        assert.are.equal(c.n, c.q:unfinished_tasks())
      end
    end,
  })

  -- A put blocked on a full queue (maxsize 1, holding item 0), or on a
  -- channel (maxsize 0); a wake is a get.
  for _, size in ipairs { 1, 0 } do
    point(cls .. (size == 1 and ":put (full)" or ":put (channel)"),
          "Queue:put", {
      irrevocable = true,
      setup = function()
        local q = green[cls](size)
        if size == 1 then q:put(0) end
        return { q = q, n = 0, put = {}, got = {} }
      end,
      wait = function(c)
        c.n = c.n + 1
        local item = c.n
        local ok = c.q:put(item)
        if ok then c.put[item] = true end
        return ok
      end,
      wake = function(c)
        local v = assert(c.q:get(false))
        assert(not c.got[v], "item " .. tostring(v) .. " got twice")
        c.got[v] = true
      end,
      stock = function(c) return size - c.q:qsize() end,
      waiting = function(c) return c.q:putting() end,
      check = function(c)
        -- every item that came out, or is in, was put (by a put that
        -- said so), and the reverse
        local v = c.q:get(false)
        if v ~= nil then c.got[v] = true end
        for item in pairs(c.got) do
          assert(item == 0 or c.put[item] or c.stands == item,
                 "item " .. item .. " delivered but its put failed")
        end
        for item in pairs(c.put) do
          assert(c.got[item], "item " .. item .. " put but lost")
        end
      end,
    })
  end
end

point("pools.Pool:get", "Pool:get", {
  setup = function()
    local n = 0
    local p = green.pools.Pool { max_size = 1,
                                 create = function()
                                   n = n + 1
                                   return { n }
                                 end }
    return { p = p, held = { p:get() }, got = {} }
  end,
  wait = function(c)
    local item = c.p:get()
    assert(not c.got[item], "item handed out twice")
    c.got[item] = true
    c.held[#c.held + 1] = item
    return true
  end,
  wake = function(c) c.p:put(table.remove(c.held, 1)) end,
  stock = function(c) return c.p:free() end,
  waiting = function(c) return c.p:waiting() end,
})

for _, stack in ipairs { false, true } do
  local suffix = stack and " (order_as_stack)" or ""
  point("pools.Pool:get, a slot made by resize" .. suffix, "Pool:get", {
    setup = function()
      local p = green.pools.Pool { max_size = 0, order_as_stack = stack,
                                   create = function() return {} end }
      return { p = p, got = {} }
    end,
    wait = function(c)
      local item = c.p:get()
      assert(not c.got[item], "item handed out twice")
      c.got[item] = true
      return true
    end,
    wake = function(c) c.p:resize(c.p.max_size + 1) end,
    stock = function(c) return c.p:free() end,
    waiting = function(c) return c.p:waiting() end,
    check = function(c)
      local out = 0
      for _ in pairs(c.got) do out = out + 1 end
      assert.are.equal(c.p.max_size, out + c.p:free())
    end,
  })
end

point("Queue:join", "Queue:join", {
  setup = function()
    local q = green.Queue()
    for i = 1, 3 do q:put(i) end
    for _ = 1, 3 do q:get() end
    return { q = q, left = 3 }
  end,
  wait = function(c) return c.q:join() end,
  -- the last task_done wakes every joiner at once: one wake in all
  wake = function(c)
    while c.left > 0 do
      c.left = c.left - 1
      c.q:task_done()
    end
  end,
  stock = function() return 0 end,
  waiting = function() return 0 end, -- (no count of joiners to read)
  broadcast = true,
})

point("Event:wait", "Event:wait", {
  setup = function() return { ev = green.Event() } end,
  wait = function(c) return c.ev:wait() == "sent" end,
  wake = function(c) c.ev:send("sent") end,
  stock = function() return 0 end,
  waiting = function(c) return c.ev:waiting() end,
  broadcast = true,
})

point("GreenPool:spawn", "GreenPool:spawn", {
  setup = function()
    local c = { pool = green.GreenPool(1), gates = {} }
    local gate = green.Event()
    c.gates[1] = gate
    c.pool:spawn(gate.wait, gate)
    return c
  end,
  wait = function(c)
    local gate = green.Event()
    c.pool:spawn(gate.wait, gate)
    c.gates[#c.gates + 1] = gate
    return true
  end,
  wake = function(c)
    -- end the oldest pool thread: its slot goes to the next spawn
    table.remove(c.gates, 1):send()
  end,
  -- a slot is freed only when the ended thread runs its end: count the
  -- gates not sent as the threads holding slots
  stock = function(c) return c.pool:free() end,
  waiting = function(c) return c.pool:waiting() end,
  settle = function(c)
    h.eventually(function() return c.pool:running() == #c.gates end,
                 "GreenPool:running() == threads not ended")
  end,
  cleanup = function(c)
    for _, g in ipairs(c.gates) do g:send() end
    c.pool:waitall()
  end,
})

-- The ways to interrupt waiter A (B waits behind it, on the same
-- primitive). After each, one wake; then B (and whoever else) must get it.
local function killer(err)
  return function(a) a:kill(err) end
end

local interrupts = {
  { "GreenletExit", killer() },
  { "a custom error", killer("custom") },
  { "a table error", killer({}) },
  { "false as the error", killer(false) },
  { "GreenletExit from a finalizer", function(a)
      -- a finalizer cannot block: the kill is delivered, not waited for
      local fired = false
      setmetatable({}, { __gc = function()
        fired = true
        a:kill()
      end })
      collectgarbage()
      collectgarbage()
      assert(fired, "the finalizer did not run")
    end },
  { "a Timeout object as the error", function(a)
      local t = green.Timeout() -- never fires: only its identity is used
      a:kill(t)
    end },
}

-- Run waiter A under `how`: "kill" A is killed; "timeout" A waits under a
-- foreign Timeout that fires.
-- `boundary`: A waits inside a C-call boundary (a table.sort
-- comparator), its C stack parked while it waits.
local function waiter(p, c, timeout, boundary)
  return spawn(function()
    local ok, v = pcall(function()
      local _ <close> = timeout and green.Timeout(timeout, "foreign")
      if not boundary then return p.wait(c) end
      local r
      table.sort({ 1, 2 }, function(x, y)
        if r == nil then r = p.wait(c) end
        return x < y
      end)
      return r
    end)
    return ok and v == true
  end)
end

local function result(gt)
  return gt:wait() == true
end

local function settle_and_check(p, c, a, b, wakes)
  if p.settle then p.settle(c) end
  local done = 0
  h.eventually(function() return a:dead() end, 5, p.name .. ": A ended")
  if result(a) or c.stands then done = 1 end
  -- B still blocked: wake it (at most twice: a waiter must not starve);
  -- the one wake of a broadcast (Event:send) wakes B or nothing will
  for _ = 1, p.broadcast and 0 or 2 do
    h.eventually(function() return b:dead() or p.waiting(c) > 0 end, 5,
                 p.name .. ": B neither done nor waiting")
    if b:dead() then break end
    p.wake(c)
    wakes = wakes + 1
    if p.settle then p.settle(c) end
  end
  h.eventually(function() return b:dead() end, 5,
               p.name .. ": B was never woken (a wake went to a dead "
               .. "waiter or was lost)")
  if result(b) then done = done + 1 end
  if p.settle then p.settle(c) end
  assert.are.equal(0, p.waiting(c), p.name .. ": a waiter left queued")
  assert.are.equal(wakes, done + p.stock(c),
                   p.name .. ": waits done + stock ~= wakes")
  if p.check then p.check(c) end
  if p.cleanup then p.cleanup(c) end
end

-- Both blocked: A first, then B.
local function two_waiters(p, c, timeout, boundary)
  local a = waiter(p, c, timeout, boundary)
  -- (under its own Timeout, A may have timed out and ended before a poll
  -- sees it suspended, on a loaded machine)
  h.eventually(function()
    return h.suspended(a, p.what) or timeout and a:dead()
  end, tostring(a) .. " suspended in " .. p.what)
  local b = waiter(p, c)
  h.until_suspended(b, p.what)
  -- (A's own Timeout may have fired already on a loaded machine: then
  -- only B waits, and the test checks the same invariants)
  if p.what ~= "Queue:join" and not timeout then
    assert.are.equal(2, p.waiting(c))
  end
  return a, b
end

-- A busy wait (no switch) at least `s` seconds long: CPU time never runs
-- ahead of wall time, so a timer due in less than `s` is due after it.
local function spin(s)
  local t0 = os.clock()
  while os.clock() - t0 < s do end
end

-- Can a green thread park its C stack here (not under ASan's fake stacks,
-- not off x86-64 Linux)?
local parks
local function can_park()
  if parks == nil then
    parks = green.run(function()
      return (pcall(table.sort, { 1, 2 }, function(x, y)
        green.sleep(0)
        return x < y
      end))
    end)
  end
  return parks
end

describe("sync attack: every wait point", function()
  for _, p in ipairs(points) do
    for _, how in ipairs(interrupts) do
      it(p.name .. ": waiter killed with " .. how[1] .. ", then a wake",
         function()
        green_run(function()
          local c = p.setup()
          local a, b = two_waiters(p, c)
          how[2](a)
          h.eventually(function() return a:dead() end, "A died")
          p.wake(c)
          settle_and_check(p, c, a, b, 1)
        end)
      end)

      it(p.name .. ": waiter parked in a C-call boundary killed with "
         .. how[1] .. ", then a wake", function()
        if not can_park() then return pending("no parking here") end
        green_run(function()
          local c = p.setup()
          local a, b = two_waiters(p, c, nil, true)
          how[2](a)
          p.wake(c)
          settle_and_check(p, c, a, b, 1)
        end)
      end)

      it(p.name .. ": a wake, then the woken waiter killed with "
         .. how[1] .. " before it runs", function()
        green_run(function()
          local c = p.setup()
          local a, b = two_waiters(p, c)
          p.wake(c)
          -- A put whose item was taken stands; its killed putter still
          -- raises the kill (A put item 1)
          if p.irrevocable then c.stands = 1 end
          how[2](a)
          settle_and_check(p, c, a, b, 1)
        end)
      end)
    end

    it(p.name .. ": a foreign Timeout fires in the wait, then a wake",
       function()
      green_run(function()
        local c = p.setup()
        local a, b = two_waiters(p, c, 0.01)
        h.eventually(function() return a:dead() end, "A timed out")
        assert.is_false(result(a))
        p.wake(c)
        settle_and_check(p, c, a, b, 1)
      end)
    end)

    it(p.name .. ": a foreign Timeout due in the hub turn of the wake",
       function()
      green_run(function()
        local c = p.setup()
        local a, b = two_waiters(p, c, 0.02)
        spin(0.05) -- A's Timeout is due when this thread next yields
        p.wake(c)
        h.eventually(function() return a:dead() end, "A ended")
        settle_and_check(p, c, a, b, 1)
      end)
    end)
  end
end)

describe("sync attack: a Timeout due after a put completed", function()
  -- A putter blocked in `q:put("A")` under a Timeout of its own; once the
  -- put returned it runs `inside` in the Timeout's block, then, the block
  -- left, `after`. The Timeout must still be armed when this thread
  -- starts to spin (a loaded machine may have let it fire while the
  -- putter was being started: then the race is set up again).
  local function blocked_putter(q, inside, after)
    for _ = 1, 5 do
      local box = {}
      local a = spawn(function()
        local ok, r1, r2
        do
          local t <close> = green.Timeout(0.02, "late")
          box.t = t
          ok = q:put("A")
          r1 = table.pack(pcall(inside))
        end
        r2 = table.pack(pcall(after))
        return ok, r1, r2
      end)
      h.eventually(function()
        return h.suspended(a, "Queue:put") or a:dead()
      end, "the putter suspended or timed out")
      if not a:dead() and box.t:pending() then
        spin(0.05) -- the Timeout is due when this thread next yields
        return a
      end
      a:kill()
    end
    error("the putter's Timeout fired early five times over")
  end

  local function nothing() end
  local function block() green.sleep(0.001) end

  it("fires at the putter's next blocking call", function()
    green_run(function()
      local q = green.Queue(1)
      q:put(0)
      local a = blocked_putter(q, block, block)
      assert.are.equal(0, q:get()) -- A's item goes in: the put stands
      local ok, inside, after = a:wait()
      assert.is_true(ok)
      assert.are.same({ n = 2, false, "late" }, inside)
      assert.are.same({ n = 1, true }, after)
      assert.are.equal("A", q:get(false))
    end)
  end)

  it("is dropped when its block is left first", function()
    green_run(function()
      local q = green.Queue(0)
      local a = blocked_putter(q, nothing, block)
      assert.are.equal("A", q:get(false)) -- a channel: taken at once
      local ok, inside, after = a:wait()
      assert.is_true(ok)
      assert.are.same({ n = 1, true }, inside)
      assert.are.same({ n = 1, true }, after)
    end)
  end)
end)

describe("sync attack: hostile arguments", function()
  it("GreenPile(-1) names GreenPile and the call site, not GreenPool",
     function()
    for _, bad in ipairs { -1, math.mininteger, 1.5, 0 / 0, "4" } do
      local ok, err = pcall(function()
        local pile = green.GreenPile(bad)
        return pile
      end)
      assert.is_false(ok)
      assert.matches("^spec/sync_attack_spec%.lua:%d+: bad argument #1 to "
                     .. "'GreenPile' %(non%-negative integer or GreenPool "
                     .. "expected%)$", err)
    end
  end)
end)

describe("sync attack: a storm of kills, Timeouts and finalizers", function()
  -- Workers move tokens through a Queue, a Semaphore and a pools.Pool
  -- while others kill them and Timeouts fire; finalizers (run by the
  -- allocations all this makes) put and release too. At the end every
  -- token is accounted for: in the queue, or counted as got, exactly once.
  it("loses and duplicates nothing", function()
    local mode = collectgarbage("incremental")
    local ok, err = pcall(green_run, function()
      local rnd = 12345
      local function rand(n) -- a fixed sequence: the same run each time
        rnd = (rnd * 1103515245 + 12345) % 2147483648
        return rnd % n + 1
      end
      local q = green.Queue(3)
      local sem = green.Semaphore(2)
      local pool = green.pools.Pool { max_size = 2,
                                      create = function() return {} end }
      local put, got, inuse, killed = {}, {}, {}, {}
      local nextid, held = 0, 0
      local function token()
        nextid = nextid + 1
        return nextid
      end
      local function gc_putter()
        -- a finalizer cannot block: a put that would is refused, and the
        -- token is not put then
        setmetatable({}, { __gc = function()
          local id = token()
          if q:put(id, false) then put[id] = true end
          if sem:acquire(false) then sem:release() end
        end })
      end
      local function worker(i)
        local r = rand(6)
        local _ <close> = rand(3) == 1 and green.Timeout(rand(3) / 1000)
        if r == 1 then
          local id = token()
          local ok_, e = pcall(q.put, q, id)
          if not ok_ then
            -- a kill that came after a getter took the token raises,
            -- the put done all the same (docs/api.md, Queue:put)
            if e == "storm" or e == green.GreenletExit then
              killed[id] = true
            end
            error(e, 0)
          end
          if e then put[id] = true end
        elseif r == 2 then
          local v = q:get()
          assert(not got[v], "token " .. tostring(v) .. " got twice")
          got[v] = true
          q:task_done()
        elseif r == 3 then
          local _ <close> = sem:hold()
          held = held + 1
          local _ <close> = setmetatable({}, {
            __close = function() held = held - 1 end })
          green.sleep(0)
        elseif r == 4 then
          local _ <close>, item = pool:item()
          assert(not inuse[item], "pool item out twice")
          inuse[item] = true
          local _ <close> = setmetatable({}, {
            __close = function() inuse[item] = nil end })
          green.sleep(0)
        elseif r == 5 then
          gc_putter()
          collectgarbage("step", 0)
        else
          green.sleep(i % 2 == 0 and 0 or 0.001)
        end
      end
      local threads = {}
      for round = 1, 40 do
        for i = 1, 10 do
          threads[#threads + 1] = spawn(function()
            local ok_, e = pcall(worker, i)
            if not ok_ and e ~= "storm" and not green.is_timeout(e)
               and e ~= green.GreenletExit then
              error(e, 0)
            end
          end)
        end
        for _ = 1, rand(4) do
          local victim = threads[rand(#threads)]
          if rand(2) == 1 then victim:kill("storm") else victim:kill() end
        end
        green.sleep(0)
        if round % 10 == 0 then collectgarbage() end
      end
      -- let everyone finish: drain the queue, free everyone blocked
      local deadline = green.now() + 10
      while true do
        local live = 0
        for _, t in ipairs(threads) do
          if not t:dead() then live = live + 1 end
        end
        if live == 0 then break end
        assert(green.now() < deadline, live .. " workers never ended")
        local v = q:get(false)
        if v ~= nil then
          assert(not got[v], "token " .. tostring(v) .. " got twice")
          got[v] = true
          q:task_done()
        else
          local id = token()
          if q:put(id, false) then put[id] = true end
        end
        green.sleep(0.001)
      end
      for _, t in ipairs(threads) do
        local ok_, e = pcall(t.wait, t) -- a kill "storm" before it ran
        assert(ok_ or e == "storm", e)
      end
      collectgarbage()
      collectgarbage()
      while true do
        local v = q:get(false)
        if v == nil then break end
        assert(not got[v], "token " .. tostring(v) .. " got twice")
        got[v] = true
        q:task_done()
      end
      for id in pairs(put) do
        assert(got[id], "token " .. id .. " was put and is lost")
      end
      for id in pairs(got) do
        assert(put[id] or killed[id],
               "token " .. id .. " came out but its put failed")
      end
      assert.are.equal(0, q:unfinished_tasks())
      assert.are.equal(0, q:getting())
      assert.are.equal(0, q:putting())
      assert.are.equal(0, held)
      assert.are.equal(2, sem:balance())
      assert.are.equal(0, pool:waiting())
      assert.are.equal(2, pool:free())
    end)
    collectgarbage(mode)
    if not ok then error(err, 0) end
  end)
end)

describe("sync attack: hold's bad timeout", function()
  it("names hold and its argument, at the caller's line", function()
    local function capped() return green.CappedSemaphore(0, 1) end
    for _, make in ipairs { green.Semaphore, capped } do
      for _, bad in ipairs { "1", 0 / 0, {} } do
        local sem = make()
        local ok, err = pcall(function()
          local holder = sem:hold(bad)
          return holder
        end)
        assert.is_false(ok)
        assert.matches("^spec/sync_attack_spec%.lua:%d+: bad argument #1 "
                       .. "to 'hold' %(number or nil expected, got %a+%)$",
                       err)
      end
    end
  end)
end)

describe("sync attack: pools.Pool's create returns NaN", function()
  it("get raises and frees the slot; a waiter creates in it", function()
    green_run(function()
      local nan = true
      local pool = green.pools.Pool { max_size = 1, create = function()
        if nan then return 0 / 0 end
        return "item"
      end }
      local ok, err = pcall(pool.get, pool)
      assert.is_false(ok)
      assert.matches("create returned NaN", err)
      assert.are.equal(1, pool:free()) -- the slot is not leaked
      nan = false
      local item = pool:get()
      assert.are.equal("item", item)
      -- a waiter handed a slot whose create returns NaN: the same
      local w = spawn(function() return pool:get() end)
      h.until_suspended(w, "Pool:get")
      nan = true
      pool:resize(2)
      assert.is_false(pcall(w.wait, w))
      assert.are.equal(1, pool:free())
      assert.are.equal(0, pool:waiting())
      pool:put(item)
      assert.are.equal(2, pool:free())
    end)
  end)

  it("min_size items: Pool raises", function()
    local ok, err = pcall(green.pools.Pool, { min_size = 1,
      create = function() return 0 / 0 end })
    assert.is_false(ok)
    assert.matches("create returned NaN", err)
  end)
end)

describe("sync attack: a queue shrunk below its size by resize", function()
  for _, cls in ipairs { "LightQueue", "Queue", "LifoQueue",
                         "PriorityQueue" } do
    it(cls .. ": lets no putter in until a get makes room under the new "
       .. "maxsize", function()
      green_run(function()
        local q = green[cls](3)
        for i = 1, 3 do q:put(i) end
        local p = spawn(function() return q:put(9) end)
        h.until_suspended(p, "Queue:put")
        q:resize(1)
        local out = {}
        for round = 1, 2 do -- 3 items, then 2: the queue stays too full
          out[#out + 1] = q:get(false)
          assert.are.equal(3 - round, q:qsize())
          assert.are.equal(1, q:putting(), "a putter was let into a "
                           .. "queue above its maxsize")
          assert.is_true(q:full())
        end
        out[#out + 1] = q:get(false) -- 1 left, under maxsize 1: room
        assert.are.equal(0, q:putting())
        assert.are.equal(1, q:qsize())
        assert.is_true(p:wait())
        out[#out + 1] = q:get(false)
        table.sort(out)
        assert.are.same({ 1, 2, 3, 9 }, out)
      end)
    end)
  end
end)

describe("sync attack: GreenPile:next, two readers, one thread", function()
  -- The pile's one thread is still being spawned (its pool is full), so
  -- both readers block; reader A is interrupted before or after the
  -- thread reaches it. The result goes to exactly one reader, once.
  local function setup()
    local pool = green.GreenPool(1)
    local gate = green.Event()
    pool:spawn(gate.wait, gate)
    local pile = green.GreenPile(pool)
    local spawner = spawn(function()
      pile:spawn(function() return "result" end)
    end)
    h.until_suspended(spawner, "GreenPool:spawn")
    local function reader()
      return spawn(function()
        local ok, v = pcall(pile.next, pile)
        return ok and v
      end)
    end
    local a = reader()
    h.until_suspended(a)
    local b = reader()
    h.until_suspended(b)
    return pile, gate, a, b, spawner
  end

  for _, how in ipairs(interrupts) do
    for _, order in ipairs { "before", "after" } do
      it("reader A killed with " .. how[1] .. " " .. order
         .. " the thread reached it", function()
        green_run(function()
          local pile, gate, a, b, spawner = setup()
          if order == "before" then how[2](a) end
          gate:send() -- the spawn goes through: its thread is queued
          if order == "after" then
            -- A (the longest reader) was handed the thread
            h.eventually(function() return spawner:dead() end,
                         "the spawn went through")
            how[2](a)
          end
          h.eventually(function() return a:dead() and b:dead() end,
                       "both readers ended")
          local got = { a:wait(), b:wait() }
          local n = 0
          for _, v in pairs(got) do
            if v == "result" then n = n + 1 end
          end
          assert.are.equal(1, n, "the result went to " .. n .. " readers")
          assert.are.equal(0, pile:count())
          assert.is_nil(pile:next())
        end)
      end)
    end
  end
end)
