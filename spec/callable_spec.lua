-- Every public function that takes a function takes any callable (a table
-- or userdata whose metatable has __call), as eventlet takes any Python
-- callable, and refuses anything else with one wording, naming itself, at
-- its caller's line: `bad argument #N to 'f' (function expected, got T)`
-- (bindings/lgreen.c's lgreen_checkcallable, lua/green/opts.lua's
-- callable_arg). Also: a PriorityQueue refuses a NaN priority.
local green = require "green"
local h = require "helper"

local HERE = debug.getinfo(1, "S").short_src

-- A callable table that records the arguments of each call (its own self
-- left out) and answers with ret(...) (or nothing).
local function callable(ret)
  local calls = {}
  local c = setmetatable({}, { __call = function(_, ...)
    calls[#calls + 1] = table.pack(...)
    if ret then return ret(...) end
  end })
  return c, calls
end

-- The arguments of a recorded call, without the 'n' field.
local function args(call)
  return { table.unpack(call, 1, call.n) }
end

-- f makes one call with a non-callable on the line it is defined on: it
-- must raise the one wording, with `fname` and f's line. C functions'
-- names are Lua's guess: `cname` is a pattern then.
local function refused(fname, argn, got, f, field, cname)
  local line = debug.getinfo(f, "S").linedefined
  local ok, err = pcall(f)
  assert.is_false(ok, fname .. " took a non-callable")
  local want = ("bad argument #%d to '%s' (%sfunction expected, got %s)")
    :format(argn, fname, field and field .. ": " or "", got)
  if cname then
    local pat = ("^%s:%d: bad argument #%d to '%s' %%(function expected, "
                 .. "got %s%%)$"):format(HERE:gsub("%p", "%%%0"), line, argn,
                                        cname, got)
    assert.matches(pat, err)
  else
    assert.are.equal(("%s:%d: %s"):format(HERE, line, want), err)
  end
end

describe("callables", function()
  it("green.spawn, spawn_n, spawn_after take a callable table", function()
    green_run(function()
      local done = green.Queue()
      local c, calls = callable(function(...) done:put(select("#", ...)) end)
      green.spawn(c, 1, 2):wait()
      green.spawn_n(c, 3)
      green.spawn_after(0, c, 4, nil, 5)
      for _ = 1, 3 do assert(done:get(true, 10), "a thread did not run") end
      table.sort(calls, function(a, b) return a[1] < b[1] end)
      assert.are.same({ { 1, 2 }, { 3 }, { 4, nil, 5 } },
                      { args(calls[1]), args(calls[2]), args(calls[3]) })
      assert.are.equal(3, calls[3].n)
      refused("spawn", 1, "table", function() green.spawn({}) end,
              nil, "[%w_.]*spawn")
      refused("spawn_n", 1, "number", function() green.spawn_n(1) end,
              nil, "[%w_.]*spawn_n")
      refused("spawn_after", 2, "string",
              function() green.spawn_after(0, "f") end,
              nil, "[%w_.]*spawn_after")
    end)
  end)

  it("GreenThread:link and unlink take a callable table", function()
    green_run(function()
      local c, calls = callable()
      local gt = green.spawn(function() return "r" end)
      gt:link(c, "x", "y")
      local c2 = callable()
      gt:link(c2)
      assert.is_true(gt:unlink(c2))
      gt:wait()
      h.eventually(function() return #calls == 1 end, 10, "the link ran")
      assert.are.same({ gt, "x", "y" }, args(calls[1]))
      -- on an ended thread: at once
      gt:link(c, "z")
      assert.are.same({ gt, "z" }, args(calls[2]))
      refused("link", 1, "table", function() gt:link({}) end)
      refused("link", 1, "nil", function() gt:link() end)
    end)
  end)

  it("green.run and with_timeout take a callable table", function()
    local c, calls = callable(function(a, b) return a + b end)
    assert.are.equal(3, green.run(c, 1, 2))
    green_run(function()
      assert.are.equal(7, green.with_timeout(10, c, 3, 4))
      refused("with_timeout", 2, "table",
              function() green.with_timeout(1, {}) end)
    end)
    assert.are.same({ 1, 2 }, args(calls[1]))
    assert.are.same({ 3, 4 }, args(calls[2]))
    refused("run", 1, "number", function() green.run(5) end)
  end)

  it("GreenPool and GreenPile take callable tables", function()
    green_run(function()
      local c, calls = callable(function(a, b)
        return (a or 0) * 10 + (b or 0)
      end)
      local pool = green.GreenPool(2)
      assert.are.equal(12, pool:spawn(c, 1, 2):wait())
      pool:spawn_n(c, 3)
      pool:waitall()
      local got = {}
      for v in pool:imap(c, { 4, 5 }) do got[#got + 1] = v end
      assert.are.same({ 40, 50 }, got)
      got = {}
      for v in pool:starmap(c, { { 6, 7 } }) do got[#got + 1] = v end
      assert.are.same({ 67 }, got)
      local pile = green.GreenPile(pool)
      pile:spawn(c, 8, 9)
      assert.are.equal(89, pile:next())
      table.sort(calls, function(a, b) return a[1] < b[1] end)
      assert.are.same({ { 1, 2 }, { 3 }, { 4 }, { 5 }, { 6, 7 }, { 8, 9 } },
                      (function()
                        local t = {}
                        for i, call in ipairs(calls) do t[i] = args(call) end
                        return t
                      end)())
      refused("spawn", 1, "table", function() pool:spawn({}) end)
      refused("spawn_n", 1, "number", function() pool:spawn_n(1) end)
      refused("imap", 1, "string", function() pool:imap("f", {}) end)
      refused("starmap", 1, "boolean", function() pool:starmap(true, {}) end)
      refused("spawn", 1, "table", function() pile:spawn({}) end)
      assert.are.equal(0, pile:count()) -- the refused spawn left no trace
    end)
  end)

  it("pools.Pool takes a callable create, Pool:item a callable fn",
     function()
    green_run(function()
      local n = 0
      local create, ccalls = callable(function() n = n + 1 return n end)
      local pool = green.pools.Pool { create = create, max_size = 1 }
      assert.are.equal(1, pool:get())
      assert.are.same({}, args(ccalls[1]))
      pool:put(1)
      local fn, fcalls = callable(function(item) return item + 100 end)
      assert.are.equal(101, pool:item(fn))
      assert.are.same({ 1 }, args(fcalls[1]))
      assert.are.equal(1, pool:free()) -- the item is back
      refused("Pool", 1, "number",
              function() green.pools.Pool { create = 1 } end, "create")
      refused("item", 1, "table", function() pool:item({}) end)
      assert.are.equal(1, pool:free()) -- refused before taking an item
    end)
  end)

  it("LoopingCall and DynamicLoopingCall take a callable table", function()
    green_run(function()
      local c, calls = callable(function()
        error(green.LoopingCallDone("done"))
      end)
      local lc = green.LoopingCall(c, "a", 1)
      lc:start(0.01)
      assert.are.equal("done", green.with_timeout(10, lc.wait, lc))
      assert.are.same({ "a", 1 }, args(calls[1]))
      refused("LoopingCall", 1, "table",
              function() green.LoopingCall({}) end)
      refused("DynamicLoopingCall", 1, "number",
              function() green.DynamicLoopingCall(2) end)
    end)
  end)

  it("green.on_error takes a callable table", function()
    green_run(function()
      local c, calls = callable()
      local old = green.on_error(c)
      local ok, err = pcall(function()
        local gt = green.spawn(error, "boom", 0)
        h.eventually(function() return #calls == 1 end, 10, "reported")
        assert.are.equal(gt, calls[1][1])
        assert.are.equal("boom", calls[1][2])
      end)
      assert.are.equal(c, green.on_error(old))
      assert(ok, err)
      refused("on_error", 1, "table", function() green.on_error({}) end)
      assert.are.equal(old, green.on_error(old)) -- kept by the refusal
    end)
  end)

  it("PriorityQueue takes a callable lt", function()
    green_run(function()
      local lt, calls = callable(function(a, b) return a > b end)
      local q = green.PriorityQueue(nil, lt)
      q:put(1)
      q:put(3)
      q:put(2)
      assert.are.same({ 3, 2, 1 }, { q:get(), q:get(), q:get() })
      assert.is_true(#calls > 0)
      for _, call in ipairs(calls) do
        assert.are.equal(2, call.n)
        assert.are.equal("number", math.type(call[1]) and "number")
      end
      refused("PriorityQueue", 2, "table",
              function() green.PriorityQueue(nil, {}) end)
    end)
  end)

  it("green.atomic takes a callable table", function()
    green_run(function()
      local c, calls = callable(function(a) return a * 2 end)
      assert.are.equal(10, green.atomic(c, 5))
      assert.are.same({ 5 }, args(calls[1]))
      refused("atomic", 1, "number", function() green.atomic(5) end)
    end)
  end)

  it("green.signal takes a callable handler", function()
    green_run(function()
      local got = green.Queue()
      local c, calls = callable(function(n) got:put(n) end)
      local handle = green.signal("USR2", c)
      assert(green.process.run { "kill", "-USR2",
                                 tostring(green.process.getpid()) })
      assert.are.equal(12, got:get(true, 10))
      handle:cancel()
      assert.are.same({ 12 }, args(calls[1]))
      refused("signal", 2, "table", function() green.signal("USR2", {}) end)
    end)
  end)

  it("green.serve takes a callable handler", function()
    green_run(function()
      local srv = assert(green.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local c, calls = callable(function(client)
        client:send("hi\n")
        error(green.StopServe)
      end)
      local loop = green.spawn(green.serve, srv, c)
      local cl = assert(green.connect("127.0.0.1", port))
      cl:settimeout(10)
      assert.are.equal("hi", cl:receive())
      cl:close()
      green.with_timeout(10, loop.wait, loop)
      srv:close()
      assert.are.equal(2, calls[1].n)
      assert.matches("^127%.0%.0%.1:%d+$", calls[1][2])
      refused("serve", 2, "table", function() green.serve(srv, {}) end)
      local opts = { workers = 2, on_worker_exit = 1 }
      refused("serve", 3, "number", function() green.serve(srv, c, opts) end,
              "on_worker_exit")
    end)
  end)

  it("green.http.serve takes a callable handler and log", function()
    green_run(function()
      local handler, hcalls = callable(function()
        return 200, {}, "ok"
      end)
      local logged = green.Queue()
      local log, lcalls = callable(function(req, status)
        logged:put(status)
        return req
      end)
      local port, stop = h.http_serve(handler, { log = log })
      local resp = assert(green.http.get("http://127.0.0.1:" .. port .. "/x"))
      assert.are.equal(200, resp.status)
      assert.are.equal("ok", resp.body)
      assert.are.equal(200, logged:get(true, 10))
      stop()
      assert.are.equal("/x", hcalls[1][1].path)
      assert.are.equal(hcalls[1][1], lcalls[1][1])
      local srv = assert(green.listen("127.0.0.1", 0))
      refused("serve", 2, "table",
              function() green.http.serve(srv, {}) end)
      refused("serve", 3, "string",
              function() green.http.serve(srv, handler, { log = "x" }) end,
              "log")
      srv:close()
    end)
  end)

  it("green.http streams callable bodies, both ways", function()
    green_run(function()
      -- each call gives the next piece, then nil
      local function pieces(...)
        local list, i = { ... }, 0
        return callable(function()
          i = i + 1
          return list[i]
        end)
      end
      local port, stop = h.http_serve(function(req)
        return 200, {}, pieces("got ", req:body())
      end)
      local body, calls = pieces("a", "bc")
      local resp = assert(green.http.request {
        url = "http://127.0.0.1:" .. port .. "/", method = "POST",
        body = body, timeout = 10 })
      assert.are.equal(200, resp.status)
      assert.are.equal("got abc", resp.body)
      assert.are.equal(3, #calls) -- "a", "bc", nil
      assert.are.equal(0, calls[1].n)
      stop()
    end)
  end)

  it("green.debug.on_blocking takes a callable table", function()
    local c, calls = callable()
    local old = green.debug.on_blocking(c)
    local ok, err = pcall(green_run, function()
      green.debug.hub_blocking_detection(true, 0.05)
      local ticker = green.spawn(function()
        while #calls == 0 do green.sleep(0.01) end
      end)
      green.spawn(function()
        local t0 = os.clock()
        while #calls == 0 and os.clock() - t0 < 10 do end
      end):wait()
      ticker:kill()
    end)
    green.debug.hub_blocking_detection(true, 1)
    assert.are.equal(c, green.debug.on_blocking(old))
    assert(ok, err)
    assert.is_true(#calls >= 1, "the callable reporter was not called")
    assert.are.equal(3, calls[1].n)
    assert.are.equal("number", type(calls[1][2]))
    refused("on_blocking", 1, "table",
            function() green.debug.on_blocking({}) end)
  end)

  it("green.on_fork takes a callable table", function()
    local out, err, code = h.greenlua_run([[
local green = require "green"
local seen = {}
green.on_fork(setmetatable({}, { __call = function(_, ...)
  seen[#seen + 1] = select("#", ...)
end }))
local pid = green.fork()
if pid == 0 then os.exit(#seen == 1 and seen[1] == 0 and 7 or 8) end
print(green.process.wait(pid))
print(pcall(green.on_fork, {}))
]])
    assert.are.equal(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.matches("7", lines[1])
    assert.matches("^false\tbad argument #1 to '[%w_.]*on_fork' "
                   .. "%(function expected, got table%)$", lines[2])
  end)

  it("green.serve's on_worker_start and on_worker_exit take callables",
     function()
    local out, err, code = h.greenlua_run([[
local green = require "green"
local log = os.tmpname()
local master = green.process.getpid()
local function rec(what)
  return setmetatable({}, { __call = function(_, ...)
    local f = assert(io.open(log, "a"))
    f:write(what, " ", select("#", ...), " ", tostring((...)), "\n")
    f:close()
    if what == "start" then -- the worker is up: stop the master
      assert(green.process.run { "kill", "-TERM", tostring(master) })
    end
  end })
end
local server = assert(green.listen("127.0.0.1", 0))
green.serve(server, function() end, { workers = 1, graceful_timeout = 10,
  on_worker_start = rec("start"), on_worker_exit = rec("exit") })
local f = assert(io.open(log))
io.write(f:read("a"))
f:close()
os.remove(log)
]], nil, 60)
    assert.are.equal(0, code, err)
    assert.are.equal("start 1 1\nexit 1 1\n", out)
  end)

  it("green.tpool.execute refuses a callable table, and says why",
     function()
    green_run(function()
      local c = callable()
      local ok, err = pcall(green.tpool.execute, c)
      assert.is_false(ok)
      assert.matches("bad argument #1 to '[%w_.]*' %(Lua function expected, "
                     .. "got a callable value: it cannot be copied to a "
                     .. "worker's Lua state%)", err)
      refused("execute", 1, "number", function() green.tpool.execute(1) end,
              nil, "[%w_.]*execute")
    end)
  end)
end)

describe("PriorityQueue", function()
  it("refuses a NaN priority on put, and loses nothing", function()
    green_run(function()
      local nan = 0 / 0
      local q = green.PriorityQueue()
      q:put { 2, "b" }
      q:put { 1, "a" }
      local function put() q:put(nan) end
      local ok, err = pcall(put)
      assert.is_false(ok)
      assert.are.equal(("%s:%d: bad argument #1 to 'put' (the priority is "
                        .. "NaN, which has no order (it compares false with "
                        .. "everything))"):format(HERE,
                          debug.getinfo(put, "S").linedefined), err)
      ok, err = pcall(q.put_nowait, q, { nan, "x" })
      assert.is_false(ok)
      assert.matches("the priority is NaN", err)
      assert.are.equal(2, q:qsize())
      assert.are.same({ 1, "a" }, q:get())
      assert.are.same({ 2, "b" }, q:get())
      -- refused too when a getter waits (the item would go straight to
      -- it): the getter gets the next item put
      local getter = green.spawn(q.get, q, true, 10)
      h.until_suspended(getter)
      assert.is_false((pcall(put)))
      assert.is_true(q:put(5))
      assert.are.equal(5, getter:wait())
      -- with lt, the order is lt's: NaN is the caller's business
      local q2 = green.PriorityQueue(nil, function(a, b)
        return tostring(a) < tostring(b)
      end)
      assert.is_true(q2:put(nan))
      assert.are.equal(1, q2:qsize())
      -- other queues do not order their items
      assert.is_true(green.Queue():put(nan))
    end)
  end)
end)
