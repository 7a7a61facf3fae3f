-- green.tpool: execute(fn, ...) on worker OS threads with their own Lua
-- states (bindings/tpool.c, bindings/tpcopy.c); setup, stats; kills and
-- timeouts of callers; what happens at exit; the examples.
local green = require "green"
local h = require "helper"

local tpool = green.tpool

-- A gate a worker waits at: a FIFO. Both sides open it read-write, which
-- never blocks; the spec's end stays open until `close`, so what `open`
-- writes waits in the pipe for a worker that has not got there yet, and
-- nothing blocks if the task never runs.
local function gate()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkfifo " .. path))
  local keep = assert(io.open(path, "r+"))
  local g = { path = path }
  function g.open()
    keep:write("!")
    keep:flush()
  end
  function g.close()
    keep:close()
    os.remove(path)
  end
  return g
end

-- On a worker: wait at the gate at `path`, then return `...`.
local function wait_gate(path, ...)
  local f = assert(io.open(path, "r+"))
  f:setvbuf("no") -- take one byte: one opening lets one worker through
  f:read(1)
  f:close()
  return ...
end

-- On a worker: return the arguments as they are.
local function id(...)
  return ...
end

local function counts()
  return tpool.stats()
end

-- Until no task is queued or running.
local function quiet()
  h.eventually(function()
    local s = tpool.stats()
    return s.busy == 0 and s.queued == 0
  end, "the pool is quiet")
end

describe("green.tpool", function()
  local default = tpool.stats().threads

  after_each(function()
    tpool.setup { threads = default }
  end)

  it("runs fn(...) on a worker and returns all its results", function()
    green_run(function()
      local r = table.pack(tpool.execute(function(a, b)
        return a + b, a .. b, nil, select("#", a, b)
      end, 2, 3))
      assert.are.same({ n = 4, 5, "23", nil, 2 }, r)
      assert.are.equal(0, select("#", tpool.execute(function() end)))
    end)
  end)

  it("copies nil, booleans, numbers and strings; integers stay integers",
     function()
    green_run(function()
      local big = string.rep("\0ab", 100000)
      local r = table.pack(tpool.execute(id, nil, true, false, 1, 1.0, -0.0,
                                         math.maxinteger, math.mininteger,
                                         2^53, 1/0, -1/0, 0/0, "", big, nil))
      assert.are.equal(15, r.n)
      assert.is_nil(r[1])
      assert.is_true(r[2])
      assert.is_false(r[3])
      assert.are.equal("integer", math.type(r[4]))
      assert.are.equal("float", math.type(r[5]))
      assert.are.equal(1.0, r[5])
      assert.are.equal(-1/0, 1 / r[6]) -- the sign of -0.0
      assert.are.equal(math.maxinteger, r[7])
      assert.are.equal(math.mininteger, r[8])
      assert.are.equal("integer", math.type(r[8]))
      assert.are.equal("float", math.type(r[9]))
      assert.are.equal(1/0, r[10])
      assert.are.equal(-1/0, r[11])
      assert.is_true(r[12] ~= r[12])
      assert.are.equal("", r[13])
      assert.is_true(r[14] == big)
      assert.is_nil(r[15])
    end)
  end)

  it("copies tables: nested, shared references and cycles kept, both ways",
     function()
    green_run(function()
      local shared = { "s" }
      local t = { list = { 1, 2, 3 }, a = shared, b = shared,
                  [true] = "yes", [2.5] = "float key",
                  nested = { deeper = { deepest = "x" } },
                  withmeta = setmetatable({ v = 1 }, { __index = string }) }
      t.self = t
      t[shared] = "table key"
      local r, seen = tpool.execute(function(tt, other)
        -- in the worker: one copy, identities kept across the arguments
        local ok = tt.self == tt and tt.a == tt.b and tt[tt.a] == "table key"
                   and other == tt.a and getmetatable(tt.withmeta) == nil
        tt.back = { tt, tt.list } -- a cycle made on the worker
        return tt, ok
      end, t, shared)
      assert.is_true(seen)
      assert.are_not.equal(t, r)
      assert.are.equal(r, r.self)
      assert.are.equal(r.a, r.b)
      assert.are_not.equal(shared, r.a)
      assert.are.equal("table key", r[r.a])
      assert.are.equal(r, r.back[1])
      assert.are.equal(r.list, r.back[2])
      assert.are.same({ 1, 2, 3 }, r.list)
      assert.are.equal("yes", r[true])
      assert.are.equal("float key", r[2.5])
      assert.are.equal("x", r.nested.deeper.deepest)
      assert.are.equal(1, r.withmeta.v)
      assert.is_nil(getmetatable(r.withmeta)) -- metatables do not cross
      assert.is_nil(t.back) -- the caller's table is untouched
    end)
  end)

  it("copies tables whose length counts holes, both ways", function()
    green_run(function()
      -- the length of such a table is a border past a nil: more than the
      -- pairs the copy holds
      local sparse = {}
      sparse[1], sparse[2], sparse[4] = "a", "b", "d"
      local r, back = tpool.execute(function(holes, s)
        return { holes[1], holes[3], s[4], n = select("#", table.unpack(s)) },
               { 1, nil, nil, 4 }
      end, { 1, nil, 3 }, sparse)
      assert.are.same({ 1, 3, "d", n = #sparse }, r)
      assert.are.equal(1, back[1])
      assert.is_nil(back[2])
      assert.is_nil(back[3])
      assert.are.equal(4, back[4])
    end)
  end)

  it("refuses functions, userdata and threads, naming where they are",
     function()
    green_run(function()
      local before = counts()
      local cases = {
        { "cannot copy a function (argument #2)", print },
        { "cannot copy a userdata (argument #3)", 1, io.stdout },
        { "cannot copy a thread (argument #2, field 'co')",
          { co = coroutine.create(id) } },
        { "cannot copy a function (argument #2, field 'x.y[2]')",
          { x = { y = { 1, id } } } },
        { "cannot copy a function (argument #2, a key)", { [id] = 1 } },
        { "cannot copy a function (argument #2, a key in field 'x')",
          { x = { [id] = 1 } } },
        { "cannot copy a userdata (argument #2, field '[\"a b\"][3]')",
          { ["a b"] = { 1, 2, io.stderr } } },
      }
      for _, c in ipairs(cases) do
        local ok, err = pcall(tpool.execute, id, table.unpack(c, 2))
        assert.is_false(ok)
        assert.are.equal("green.tpool.execute: " .. c[1], err)
      end
      assert.are.equal(before.completed, counts().completed) -- none ran
      local ok, err = pcall(tpool.execute, function()
        return 1, { f = print }
      end)
      assert.is_false(ok)
      assert.are.equal("green.tpool.execute: cannot copy a function "
                       .. "(result #2, field 'f')", err)
      ok, err = pcall(tpool.execute, function() return io.stdout end)
      assert.is_false(ok)
      assert.are.equal("green.tpool.execute: cannot copy a userdata "
                       .. "(result #1)", err)
      ok, err = pcall(tpool.execute, function() error({ f = print }) end)
      assert.is_false(ok)
      assert.are.equal("green.tpool.execute: cannot copy a function "
                       .. "(the error value, field 'f')", err)
      local deep = {}
      for _ = 1, 1200 do deep = { deep } end
      ok, err = pcall(tpool.execute, id, deep)
      assert.is_false(ok)
      assert.matches("green.tpool.execute: tables nested too deeply "
                     .. "(argument #2, field '[1][1]", err, 1, true)
    end)
  end)

  it("refuses a function with upvalues other than _ENV, naming the upvalue",
     function()
    green_run(function()
      local secret = 42
      local ok, err = pcall(tpool.execute, function() return secret end)
      assert.is_false(ok)
      assert.are.equal("green.tpool.execute: fn has upvalue 'secret': a "
                       .. "function run in the pool may have no upvalues "
                       .. "but _ENV (it runs in another Lua state); pass "
                       .. "'secret' as an argument", err)
      ok, err = pcall(tpool.execute, print)
      assert.is_false(ok)
      assert.matches("fn is a C function", err, 1, true)
      ok, err = pcall(tpool.execute, 42)
      assert.is_false(ok)
      assert.matches("bad argument #1 to '.-' %(function expected, got "
                     .. "number%)", err)
      -- _ENV is the worker's own globals
      _G.spec_tpool_host_only = true
      assert.is_true(tpool.execute(function()
        return rawget(_G, "spec_tpool_host_only") == nil
               and type(string.rep) == "function"
      end))
      _G.spec_tpool_host_only = nil
    end)
  end)

  it("runs a stripped function (luac -s) whose one upvalue is the globals",
     function()
    green_run(function()
      -- a stripped function's upvalues have no names: its _ENV is known
      -- by its value, the global table
      local uses_globals = load(string.dump(function(a)
        return type(print), a + 1
      end, true))
      assert.same({ "function", 2 },
                  { tpool.execute(uses_globals, 1) })
      local uses_local = load(string.dump(function()
        return id
      end, true))
      debug.setupvalue(uses_local, 1, {}) -- (load made it the globals)
      local ok, err = pcall(tpool.execute, uses_local)
      assert.is_false(ok)
      assert.are.equal("green.tpool.execute: fn has upvalue #1, not "
                       .. "known to be _ENV (a stripped function: only a "
                       .. "sole upvalue holding the global table is taken "
                       .. "for _ENV): a function run in the pool may have "
                       .. "no upvalues but _ENV (it runs in another Lua "
                       .. "state)", err)
      local two = load(string.dump(function()
        return id, print
      end, true))
      ok, err = pcall(tpool.execute, two)
      assert.is_false(ok)
      assert.matches("fn has upvalue #1, not known to be _ENV", err, 1,
                     true)
    end)
  end)

  it("re-raises the worker's error in the caller with the worker's "
     .. "traceback", function()
    green_run(function()
      local before = counts()
      local function fail(x)
        local y = nil
        return y.field + x -- the line the error names
      end
      local line = debug.getinfo(fail, "S").linedefined + 2
      local ok, err = pcall(tpool.execute, fail, 1)
      assert.is_false(ok)
      assert.matches("tpool_spec.lua:" .. line .. ": attempt to index a nil "
                     .. "value %(local 'y'%)\nworker stack traceback:\n", err)
      assert.matches("tpool_spec.lua:" .. line .. ": in function <[^>]*"
                     .. "tpool_spec.lua:" .. (line - 2) .. ">", err)
      -- a table error value comes back as a table
      ok, err = pcall(tpool.execute, function()
        error({ code = 42, reason = "quota" })
      end)
      assert.is_false(ok)
      assert.are.same({ code = 42, reason = "quota" }, err)
      -- os.exit would end the whole process: it raises instead
      ok, err = pcall(tpool.execute, function() os.exit(3) end)
      assert.is_false(ok)
      assert.matches("os.exit: not available in a green.tpool worker", err,
                     1, true)
      local after = counts()
      assert.are.equal(before.completed + 3, after.completed)
      assert.are.equal(before.failed + 3, after.failed)
      assert.are.equal(7, tpool.execute(function(a) return a + 1 end, 6))
    end)
  end)

  it("keeps worker states between tasks, after errors too", function()
    tpool.setup { threads = 1 }
    green_run(function()
      h.eventually(function() return counts().workers <= 1 end,
                   "one worker left")
      local key = "spec_tpool_counter_" .. tostring({}):match("0x%x+")
      local function bump(k)
        local n = (rawget(_G, k) or 0) + 1
        rawset(_G, k, n)
        return n, package.loaded.string ~= nil
      end
      assert.are.equal(1, tpool.execute(bump, key))
      assert.is_false(pcall(tpool.execute, function() error("boom") end))
      assert.are.equal(2, tpool.execute(bump, key))
      assert.are.equal(1, counts().workers)
    end)
  end)

  it("a task that replaces its worker's cache of functions does not crash "
     .. "the worker", function()
    green_run(function()
      tpool.setup { threads = 1 } -- the next tasks run on that worker
      tpool.execute(function()
        debug.getregistry()["green.tpool.fns"] = 1
      end)
      assert.are.equal(2, tpool.execute(function(x) return x + 1 end, 1))
      assert.are.equal(3, tpool.execute(function(x) return x + 1 end, 2))
    end)
  end)

  it("a killed caller gets its kill at once; the worker finishes and its "
     .. "result is dropped", function()
    green_run(function()
      local g = gate()
      local before = counts()
      local caller = green.spawn(tpool.execute, wait_gate, g.path, "result")
      h.until_suspended(caller, "green.tpool.execute")
      h.eventually(function() return counts().busy == before.busy + 1 end,
                   "the task running")
      caller:kill()
      assert.is_true(caller:dead())
      local s = counts()
      assert.are.equal(before.busy + 1, s.busy) -- still at the gate
      assert.are.equal(before.abandoned + 1, s.abandoned)
      g.open()
      h.eventually(function()
        return counts().completed == before.completed + 1
      end, "the abandoned task finished")
      quiet()
      g.close()
      assert.are.equal(before.failed, counts().failed)
    end)
  end)

  it("a task whose caller is killed while it is queued never runs",
     function()
    tpool.setup { threads = 1 }
    green_run(function()
      local g = gate()
      local marker = os.tmpname()
      os.remove(marker)
      local before = counts()
      local first = green.spawn(tpool.execute, wait_gate, g.path, "first")
      h.eventually(function() return counts().busy == before.busy + 1 end,
                   "the first task running")
      local second = green.spawn(tpool.execute, function(path)
        assert(io.open(path, "w")):close()
      end, marker)
      h.eventually(function() return counts().queued == 1 end,
                   "the second task queued")
      second:kill()
      local s = counts()
      assert.are.equal(0, s.queued)
      assert.are.equal(before.canceled + 1, s.canceled)
      g.open()
      assert.are.equal("first", first:wait())
      quiet()
      g.close()
      assert.is_nil(io.open(marker)) -- it never ran
    end)
  end)

  it("a green.Timeout on a caller raises at once, queued or running",
     function()
    tpool.setup { threads = 1 }
    green_run(function()
      -- Queued behind a task that holds the one worker: it never runs.
      local g = gate()
      local before = counts()
      local first = green.spawn(tpool.execute, wait_gate, g.path, 1)
      h.eventually(function() return counts().busy == 1 end, "running")
      local ok, err = pcall(green.with_timeout, 0.05, tpool.execute, id, 2)
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
      assert.are.equal(before.canceled + 1, counts().canceled)
      g.open()
      assert.are.equal(1, first:wait())
      g.close()
      -- Running: the worker goes on to the end. The worker may not have
      -- taken the task when a short timeout fires (then it never runs):
      -- try with longer ones until it is caught running.
      local abandoned = false
      local seconds = 0.05
      for _ = 1, 8 do
        local gt = gate()
        local s = counts()
        ok, err = pcall(green.with_timeout, seconds, tpool.execute,
                        wait_gate, gt.path)
        assert.is_false(ok)
        assert.is_true(green.is_timeout(err))
        local s2 = counts()
        assert.are.equal(s.canceled + s.abandoned + 1,
                         s2.canceled + s2.abandoned)
        abandoned = s2.abandoned == s.abandoned + 1
        gt.open()
        quiet()
        gt.close()
        if abandoned then break end
        seconds = seconds * 2
      end
      assert.is_true(abandoned, "a timeout while the task ran")
    end)
  end)

  it("a task whose caller has gone holds no place in the pool", function()
    tpool.setup { threads = 1 }
    green_run(function()
      local g = gate()
      local caller = green.spawn(tpool.execute, wait_gate, g.path)
      h.eventually(function() return counts().busy == 1 end, "running")
      caller:kill()
      -- The one worker is still at the gate, yet this runs.
      assert.are.equal("free", tpool.execute(id, "free"))
      assert.are.equal(1, counts().busy)
      assert.are.equal(2, counts().workers)
      g.open()
      quiet()
      g.close()
      h.eventually(function() return counts().workers == 1 end,
                   "the extra worker left")
    end)
  end)

  it("loads C and Lua modules with the host's package.path and cpath",
     function()
    green_run(function()
      local doc = '{"instances":[{"id":1,"vcpus":2},{"id":2,"vcpus":4}]}'
      local total, echo = tpool.execute(function(json)
        local cjson = require "cjson" -- a C module (lua-cjson)
        local t = cjson.decode(json)
        local sum = 0
        for _, i in ipairs(t.instances) do sum = sum + i.vcpus end
        return sum, cjson.encode({ sum = sum })
      end, doc)
      assert.are.equal(6, total)
      assert.are.equal('{"sum":6}', echo)
      -- A Lua module in a directory the host adds to package.path now,
      -- after the workers have started: they see the change.
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. dir))
      local f = assert(io.open(dir .. "/spec_tpool_mod.lua", "w"))
      f:write("return { answer = function() return 42 end }\n")
      f:close()
      local saved = package.path
      package.path = dir .. "/?.lua;" .. saved
      local ok, r = pcall(tpool.execute, function()
        return require("spec_tpool_mod").answer()
      end)
      package.path = saved
      os.remove(dir .. "/spec_tpool_mod.lua")
      os.remove(dir)
      assert.is_true(ok, r)
      assert.are.equal(42, r)
    end)
  end)


  it("refuses green in a task (one hub per process) before it makes "
     .. "anything; the host goes on", function()
    green_run(function()
      for _ = 1, 2 do -- and again: the refusal left nothing behind
        local ok, err = tpool.execute(function()
          local ok, err = pcall(require, "green")
          collectgarbage() -- what a half-made hub would leave is closed
          return ok, err
        end)
        assert.is_false(ok)
        assert.matches("green.core: green runs in another Lua state of "
                       .. "this process (one hub per process: a "
                       .. "green.tpool task cannot use green)", err, 1, true)
      end
      -- The host's hub is whole: threads, timers, processes.
      local ran, out = green.process.run { "echo", "yes" }
      assert.is_true(ran)
      assert.are.equal("yes\n", out)
      local t = green.spawn(function() green.sleep(0.001) return "ran" end)
      assert.are.equal("ran", t:wait())
    end)
  end)
  it("refuses green in tasks of greenlua that find green/core.so on "
     .. "LUA_CPATH (another copy of the code: its own process's hub), "
     .. "all at once, again and again", function()
    local build = h.greenlua:match("^(.*)/greenlua$")
    local p = os.tmpname()
    local f = assert(io.open(p, "w"))
    f:write([[
local green = require "green"
green.tpool.setup { threads = 4 }
local ts = {}
for i = 1, 8 do
  ts[i] = green.spawn(green.tpool.execute, function(i)
    local last
    for _ = 1, 20 do
      local ok, err = pcall(require, i % 2 == 0 and "green" or "green.core")
      if ok then return "loaded" end
      last = err
    end
    return last
  end, i)
end
for i = 1, 8 do print((ts[i]:wait():gsub("\n.*", ""))) end
]])
    f:close()
    local out, err, code = h.sh("LUA_CPATH='" .. build .. "/?.so;;' "
                                .. h.greenlua .. " " .. p)
    os.remove(p)
    assert.are.equal(0, code, err)
    assert.are.equal(("green.core: green runs in another Lua state of this "
      .. "process (one hub per process: a green.tpool task cannot use "
      .. "green)\n"):rep(8), out)
  end)

  it("setup while tasks run: running tasks finish, the size follows",
     function()
    tpool.setup { threads = 2 }
    green_run(function()
      local g1, g2 = gate(), gate()
      local a = green.spawn(tpool.execute, wait_gate, g1.path, "a")
      local b = green.spawn(tpool.execute, wait_gate, g2.path, "b")
      h.eventually(function() return counts().busy == 2 end, "two running")
      tpool.setup { threads = 1 }
      assert.are.equal(1, counts().threads)
      g1.open()
      g2.open()
      assert.are.equal("a", a:wait())
      assert.are.equal("b", b:wait())
      h.eventually(function() return counts().workers == 1 end,
                   "one worker left")
      g1.close()
      g2.close()
      tpool.setup { threads = 3 }
      local gates, callers = {}, {}
      for i = 1, 3 do
        gates[i] = gate()
        callers[i] = green.spawn(tpool.execute, wait_gate, gates[i].path, i)
      end
      h.eventually(function() return counts().busy == 3 end, "three running")
      for i = 1, 3 do gates[i].open() end
      for i = 1, 3 do
        assert.are.equal(i, callers[i]:wait())
        gates[i].close()
      end
    end)
  end)

  it("setup refuses what it does not know", function()
    for _, bad in ipairs({ 0, 257, 1.5, "2" }) do
      local ok, err = pcall(tpool.setup, { threads = bad })
      assert.is_false(ok)
      assert.matches("green.tpool.setup: threads must be an integer from 1 "
                     .. "to 256", err, 1, true)
    end
    local ok, err = pcall(tpool.setup, { thread = 2 })
    assert.is_false(ok)
    assert.matches("unknown option 'thread'", err, 1, true)
    assert.is_false(pcall(tpool.setup, 4))
    assert.are.equal(default, counts().threads)
  end)

  it("stats counts what ran, failed and waits", function()
    green_run(function()
      quiet()
      local s = counts()
      assert.are.equal(default, s.threads)
      assert.is_true(s.workers >= s.idle)
      tpool.execute(id)
      pcall(tpool.execute, function() error("x") end)
      local s2 = counts()
      assert.are.equal(s.completed + 2, s2.completed)
      assert.are.equal(s.failed + 1, s2.failed)
      assert.are.equal(0, s2.busy)
      assert.are.equal(0, s2.queued)
      h.eventually(function()
        local s3 = counts()
        return s3.idle == s3.workers
      end, "every worker idle")
    end)
  end)

  it("serves many concurrent callers, with at most its size of workers",
     function()
    green_run(function()
      h.eventually(function() return counts().workers <= default end,
                   "extra workers gone")
      local before = counts()
      local n, bad = 300, 0
      local threads = {}
      for i = 1, n do
        threads[i] = green.spawn(function()
          local sq, s = tpool.execute(function(x)
            return x * x, tostring(x)
          end, i)
          if sq ~= i * i or s ~= tostring(i) then bad = bad + 1 end
        end)
      end
      for i = 1, n do threads[i]:wait() end
      assert.are.equal(0, bad)
      local s = counts()
      assert.are.equal(before.completed + n, s.completed)
      assert.is_true(s.workers <= default)
    end)
  end)

  it("works from the main thread of stock lua5.4, and the program ends "
     .. "while an abandoned task still runs", function()
    local out, err, code = h.lua54_run([[
      local green = require "green"
      print(green.tpool.execute(function(a) return a * 2 end, 21))
      local caller = green.spawn(green.tpool.execute, function()
        while true do end -- never ends
      end)
      local limit = green.now() + 20 -- a bounded wait
      while green.tpool.stats().busy == 0 do
        assert(green.now() < limit, "the task never started")
        green.sleep(0.001)
      end
      caller:kill()
      print("abandoned", green.tpool.stats().abandoned)
    ]])
    assert.are.equal(0, code, err)
    assert.are.equal("42\nabandoned\t1\n", out)
  end)

  it("at the end of the program: waits for a task whose caller waits, not "
     .. "for one whose caller has gone (greenlua)", function()
    local out, err, code = h.greenlua_run([[
      local green = require "green"
      green.spawn(function()
        print(green.tpool.execute(function()
          local t = os.clock()
          while os.clock() - t < 0.2 do end
          return "the result came"
        end))
      end)
      print("the main chunk ends")
    ]])
    assert.are.equal(0, code, err)
    assert.are.equal("the main chunk ends\nthe result came\n", out)
    -- A task blocked in C for good (opening a FIFO nobody writes), and a
    -- Lua loop, both abandoned: the process still exits.
    local fifo = os.tmpname()
    os.remove(fifo)
    assert(os.execute("mkfifo " .. fifo))
    out, err, code = h.greenlua_run([[
      local green = require "green"
      local fifo = ...
      local a = green.spawn(green.tpool.execute, function(path)
        return io.open(path, "r") -- blocks in open(2): no writer ever
      end, fifo)
      local b = green.spawn(green.tpool.execute, function()
        while true do end
      end)
      local limit = green.now() + 20 -- a bounded wait
      while green.tpool.stats().busy < 2 do
        assert(green.now() < limit, "the two tasks never both started")
        green.sleep(0.001)
      end
      a:kill()
      b:kill()
      print("both abandoned")
    ]], fifo)
    os.remove(fifo)
    assert.are.equal(0, code, err)
    assert.are.equal("both abandoned\n", out)
  end)

  it("examples/cpu_offload.lua: the heartbeat beats through the offloaded "
     .. "computation", function()
    local out, err, code = h.sh(h.greenlua .. " examples/cpu_offload.lua 1")
    assert.are.equal(0, code, err)
    assert.matches("computation: %d+ primes up to %d+", out)
    local during = tonumber(out:match("heartbeat: (%d+) beats during"))
    assert.is_true(during >= 2, out) -- the hub ran while it computed
    assert.is_nil(err:match("kept the hub"), err)
  end)

  it("examples/tpool_sqlite.lua: SQLite queries on workers, the heartbeat "
     .. "goes on", function()
    local out, err, code = h.sh(h.greenlua .. " examples/tpool_sqlite.lua")
    assert.are.equal(0, code, err)
    assert.matches("created 10000 instances in /", out)
    -- The join's answer, counted here: same vcpus, host ordered.
    local per = {}
    for i = 1, 10000 do
      local key = (i % 8 + 1) .. "/" .. (i % 20)
      per[key] = (per[key] or 0) + 1
    end
    local pairs_n = 0
    for v = 1, 8 do
      for h1 = 0, 19 do
        for h2 = h1 + 1, 19 do
          pairs_n = pairs_n + (per[v .. "/" .. h1] or 0)
                    * (per[v .. "/" .. h2] or 0)
        end
      end
    end
    assert.matches("same%-flavour pairs across hosts: " .. pairs_n .. "\n",
                   out)
    assert.matches("busiest: compute%-%d%d, %d+ active instances, %d+ vcpus",
                   out)
    local during = tonumber(out:match("heartbeat: (%d+) beats while"))
    assert.is_true(during >= 2, out)
    assert.is_nil(err:match("kept the hub"), err)
  end)
end)
