-- green.debug.threads() and green.debug.dump(): every live green thread,
-- with its state, what it waits in, for how long, where it was spawned
-- and its traceback (bindings/debug.c, lua/green/debug.lua).
local green = require "green"
local helper = require "helper"

-- The entry of `gt` in a threads() list.
local function entry(list, gt)
  for _, e in ipairs(list) do
    if e.thread == gt then return e end
  end
end

local pair = require("helper").pair

-- Named functions, so the tracebacks have something to name (called
-- without tail calls, which would leave no frame to name).
local function receive_here(sock)
  local line, err = sock:receive()
  return line, err
end
local function sleep_here() green.sleep(60) end
local function wait_here(ev)
  local v = ev:wait()
  return v
end

describe("green.debug.threads", function()
  it("describes threads blocked in receive, sleep and Event:wait",
     function()
    green_run(function()
      local c, s = pair()
      local ev = green.Event()
      local reader = green.spawn(function()
        local line, err = receive_here(s)
        return line, err
      end)
      reader.name = "reader"
      local sleeper = green.spawn(function() sleep_here() end)
      local line = debug.getinfo(1, "l").currentline + 1
      local waiter = green.spawn(function()
        local v = wait_here(ev)
        return v
      end)
      green.sleep(0) -- one pass: each has reached its blocking call
      local list = green.debug.threads()

      local r = entry(list, reader)
      assert.are.equal(reader.id, r.id)
      assert.are.equal("reader", r.name)
      assert.are.equal("suspended", r.state)
      assert.are.equal("socket:receive", r.waiting_in)
      assert.is_true(r.waiting_for >= 0)
      assert.matches("in %w+ 'receive_here'", r.traceback)
      assert.matches("^stack traceback:", r.traceback)

      local sl = entry(list, sleeper)
      assert.is_nil(sl.name)
      assert.are.equal("suspended", sl.state)
      assert.are.equal("green.sleep", sl.waiting_in)
      assert.matches("in %w+ 'sleep_here'", sl.traceback)

      local w = entry(list, waiter)
      assert.are.equal("suspended", w.state)
      assert.are.equal("Event:wait", w.waiting_in)
      assert.matches("in %w+ 'wait_here'", w.traceback)
      assert.are.equal("spec/debug_spec.lua:" .. line, w.site)

      -- The caller is running; its traceback starts at its own frame.
      local me = entry(list, green.getcurrent())
      assert.are.equal("running", me.state)
      assert.is_nil(me.waiting_in)
      assert.is_nil(me.waiting_for)
      assert.matches("spec/debug_spec.lua:%d+: in function <spec/debug_spec",
                     me.traceback)

      -- Spawn order, the main thread (id 0) first; nothing dead.
      assert.are.equal(0, list[1].id)
      for i = 2, #list do
        assert.is_true(list[i].id > list[i - 1].id)
        assert.are_not.equal("dead", list[i].state)
      end

      ev:send("sent")
      sleeper:kill()
      c:send("line\n")
      assert.are.equal("line", reader:wait())
      assert.are.equal("sent", waiter:wait())
      assert.is_nil(entry(green.debug.threads(), reader)) -- dead: gone
      c:close(); s:close()
    end)
  end)

  it("shows new, delayed and ready threads", function()
    green_run(function()
      local ev = green.Event()
      local waiter = green.spawn(function()
        local v = wait_here(ev)
        return v
      end)
      green.sleep(0)
      local fresh = green.spawn(function() end)
      local later = green.spawn_after(60, function() end)
      ev:send() -- woken, queued, not yet resumed
      local list = green.debug.threads()
      local f, l, w = entry(list, fresh), entry(list, later),
                      entry(list, waiter)
      assert.are.equal("new", f.state)
      assert.is_nil(f.traceback) -- not started: no frame yet
      assert.are.equal("delayed", l.state)
      assert.is_nil(l.traceback)
      assert.are.equal("ready", w.state)
      assert.is_nil(w.waiting_in)
      assert.matches("in %w+ 'wait_here'", w.traceback)
      later:cancel()
      waiter:wait()
      fresh:wait()
    end)
  end)

  it("measures how long a thread has waited, by the loop clock", function()
    green_run(function()
      local ev = green.Event()
      local waiter = green.spawn(function()
        local v = wait_here(ev)
        return v
      end)
      green.sleep(0)
      local before = entry(green.debug.threads(), waiter).waiting_for
      green.sleep(0.05) -- time passing is the point here, not a sync
      local after = entry(green.debug.threads(), waiter).waiting_for
      -- generous: the loop clock may be coarse by a few ms
      assert.is_true(after - before >= 0.03,
                     ("waited %.3f, then %.3f"):format(before, after))
      ev:send()
      waiter:wait()
    end)
  end)

  it("includes the host's main thread, blocked, with its traceback",
     function()
    local out, err, code = helper.lua54_run([[
      local green = require "green"
      local seen
      local function main_waits_here() green.sleep(0.05) end
      green.spawn(function() seen = green.debug.threads() end)
      main_waits_here()
      local m = seen[1]
      print(#seen, m.id, m.name, m.state, m.waiting_in)
      print(m.traceback:match("main_waits_here") ~= nil)
      print(seen[2].state, seen[2].id)
    ]])
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("2\t0\tmain\tsuspended\tgreen.sleep\ntrue\n"
                     .. "running\t1\n", out)
  end)
end)

describe("green.debug.dump", function()
  it("writes every live thread to any object with :write", function()
    green_run(function()
      local c, s = pair()
      local reader = green.spawn(function()
        local line, err = receive_here(s)
        return line, err
      end)
      reader.name = "reader"
      green.sleep(0)
      local chunks = {}
      local sink = { write = function(_, ...)
        for i = 1, select("#", ...) do chunks[#chunks + 1] = select(i, ...) end
      end }
      assert.are.equal(sink, green.debug.dump(sink))
      local text = table.concat(chunks)
      assert.matches("green threads: %d+ live", text)
      assert.matches("#" .. reader.id .. " 'reader' suspended in "
                     .. "socket:receive for [%d.]+ s, spawned at "
                     .. "spec/debug_spec.lua:%d+", text)
      assert.matches("'receive_here'", text)
      c:close()
      assert.are.same({ nil, "closed" }, { reader:wait() })
      s:close()
    end)
  end)

  it("writes to io.stderr by default, or to a file", function()
    local out, err, code = helper.lua54_run([[
      local green = require "green"
      local t = green.spawn(function() green.sleep(60) end)
      green.sleep(0)
      green.debug.dump()
      local f = assert(io.tmpfile())
      assert(green.debug.dump(f) == f)
      f:seek("set")
      io.write(f:read("a"))
      t:kill()
    ]])
    assert.are.equal(0, code, err)
    assert.matches("#0 'main' %(main%) running", err)
    assert.matches("#1 suspended in green.sleep for [%d.]+ s", err)
    assert.matches("#1 suspended in green.sleep for [%d.]+ s", out)
  end)

  it("rejects something it cannot write to", function()
    assert.has_error(function() green.debug.dump(42) end,
      "bad argument #1 to 'dump' (file or object with :write expected)")
  end)

  it("raises when the write or the flush fails", function()
    local path = os.tmpname()
    local ro = assert(io.open(path, "r")) -- opened for reading only
    local ok, err = pcall(green.debug.dump, ro)
    ro:close()
    os.remove(path)
    assert.is_false(ok)
    assert.matches("^green.debug.dump: cannot write the dump %(.+%)$", err)
    local writer = { write = function(self) return self end,
                     flush = function() return nil, "disk on fire" end }
    assert.has_error(function() green.debug.dump(writer) end,
      "green.debug.dump: cannot write the dump (disk on fire)")
    -- a writer that returns nothing is not failing
    local parts = {}
    local quiet = { write = function(_, s) parts[#parts + 1] = s end }
    assert.are.equal(quiet, green.debug.dump(quiet))
    assert.matches("^green threads: %d+ live", parts[1])
  end)
end)

describe("core.sleep_unref (the spec helper's deadline)", function()
  local core = green.core

  it("does not keep an idle hub running", function()
    local t = green.spawn(function() core.sleep_unref(3600) end)
    green.run() -- returns: only the unref'd sleeper is left
    assert.are.same({ "suspended", "green.sleep_unref" }, { t:status() })
    t:kill()
    assert.is_true(t:dead())
  end)

  it("refuses NaN seconds", function()
    green_run(function()
      local ok, err = pcall(core.sleep_unref, 0 / 0)
      assert.is_false(ok)
      assert.matches("number of seconds expected, got NaN", err)
    end)
  end)

  it("wakes its thread while the hub blocks in the poller", function()
    green_run(function()
      local c, s = pair()
      local reader = green.spawn(function() return s:receive() end)
      green.sleep(0) -- a read pending, no timer: the hub blocks in epoll
      local t = green.spawn(function()
        core.sleep_unref(0.01)
        return "woke"
      end)
      assert.are.equal("woke", t:wait())
      c:close()
      assert.are.same({ nil, "closed", "" }, { reader:wait() })
      s:close()
    end)
  end)

  it("wakes its sleepers in the order of their deadlines, one killed "
     .. "among them", function()
    green_run(function()
      local c, s = pair() -- a read pending keeps the hub running
      local reader = green.spawn(function() return s:receive() end)
      local order = {}
      local ts = {}
      -- slept in another order than their deadlines' (100 ms apart: a
      -- later sleeper's clock starts later, by less than that)
      for _, d in ipairs { 0.3, 0.1, 0.5, 0.2 } do
        ts[#ts + 1] = green.spawn(function()
          core.sleep_unref(d)
          order[#order + 1] = d
        end)
      end
      green.sleep(0) -- all four asleep
      ts[3]:kill() -- (0.5)
      -- the hub late, blocked past every deadline: the three wake in one
      -- turn, and still in their deadlines' order
      local t0 = green.now()
      repeat helper.sh("sleep 0.1") until green.now() - t0 > 0.35
      for _, t in ipairs(ts) do t:wait() end
      assert.are.same({ 0.1, 0.2, 0.3 }, order)
      c:close()
      reader:wait()
      s:close()
    end)
  end)

  it("leaves nothing behind for sleepers parked when the state closes",
     function()
    -- (under the sanitizers, LeakSanitizer reports what is left)
    local out, err, code = helper.lua54_run([[
local green = require "green"
for i = 1, 3 do
  green.spawn(function() green.core.sleep_unref(3600 * i) end)
end
green.sleep(0)
print(#green.debug.threads())
]])
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("4\n", out)
  end)
end)

describe("core.inherited_hook", function()
  it("runs in coroutines created while it is set, not after", function()
    local core = green.core
    local seen = {}
    core.inherited_hook(function() seen[coroutine.running()] = true end, 10)
    local co = coroutine.create(function() for _ = 1, 100 do end end)
    core.inherited_hook()
    local co2 = coroutine.create(function() for _ = 1, 100 do end end)
    coroutine.resume(co)
    coroutine.resume(co2)
    assert.is_true(seen[co])
    assert.is_nil(seen[co2])
  end)
end)
