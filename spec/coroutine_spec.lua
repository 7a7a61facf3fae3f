local green = require "green"
local helper = require "helper"

local spawn, sleep = green.spawn, green.sleep

describe("user coroutines inside green threads", function()
  it("a coroutine.wrap generator that sleeps yields its own values",
     function()
    green_run(function()
      local other = 0
      local ticker = spawn(function()
        for _ = 1, 100 do other = other + 1; sleep(0) end
      end)
      local gen = coroutine.wrap(function()
        for i = 1, 3 do
          sleep(0.001) -- goes to the hub, not to our caller
          coroutine.yield(i)
        end
      end)
      local got = {}
      for v in gen do got[#got + 1] = v end
      assert.are.same({ 1, 2, 3 }, got)
      assert.is_true(other > 0) -- the hub ran others meanwhile
      ticker:kill()
    end)
  end)

  it("coroutine.resume passes yields and returns through", function()
    green_run(function()
      local co = coroutine.create(function(a)
        sleep(0)
        local b = coroutine.yield(a + 1)
        sleep(0.001)
        return b * 2
      end)
      assert.are.same({ true, 2 }, { coroutine.resume(co, 1) })
      assert.are.equal("suspended", coroutine.status(co))
      assert.are.same({ true, 10 }, { coroutine.resume(co, 5) })
      assert.are.equal("dead", coroutine.status(co))
      assert.are.same({ false, "cannot resume dead coroutine" },
                      { coroutine.resume(co) })
    end)
  end)

  it("nests: a generator inside a generator both sleeping", function()
    green_run(function()
      local inner = coroutine.wrap(function()
        for i = 1, 2 do sleep(0); coroutine.yield(i) end
      end)
      local outer = coroutine.wrap(function()
        for v in inner do sleep(0); coroutine.yield(v * 10) end
      end)
      assert.are.same({ 10, 20 }, { outer(), outer() })
    end)
  end)

  it("propagates errors like stock wrap, with position", function()
    green_run(function()
      local gen = coroutine.wrap(function() sleep(0); error("gen failed") end)
      local ok, err = pcall(gen)
      assert.is_false(ok)
      assert.matches("gen failed", err)
    end)
  end)

  it("closes a coroutine's to-be-closed variables on error", function()
    green_run(function()
      local closed = false
      local gen = coroutine.wrap(function()
        local _ <close> = setmetatable({}, { __close = function()
          closed = true
        end })
        sleep(0)
        error("x")
      end)
      pcall(gen)
      assert.is_true(closed)
    end)
  end)

  it("kill reaches a thread blocked inside a generator", function()
    green_run(function()
      local t = spawn(function()
        local gen = coroutine.wrap(function() sleep(10) end)
        gen()
      end)
      sleep(0)
      t:kill()
      assert.are.equal(green.GreenletExit, t:wait())
    end)
  end)

  it("refuses to resume a coroutine that is waiting in the hub", function()
    green_run(function()
      local co = coroutine.create(function() sleep(0.01) end)
      local t = spawn(function() return coroutine.resume(co) end)
      sleep(0)
      assert.are.equal("normal", coroutine.status(co))
      local ok, err = coroutine.resume(co)
      assert.is_false(ok)
      assert.matches("blocked in a green wait", err)
      assert.has_error(function() coroutine.close(co) end)
      assert.is_true(t:wait())
    end)
  end)

  it("isyieldable is false in a green thread and true in a coroutine",
     function()
    green_run(function()
      assert.is_false(coroutine.isyieldable())
      local co = coroutine.wrap(function() return coroutine.isyieldable() end)
      assert.is_true(co())
    end)
  end)

  it("yield outside a user coroutine is an error, as in plain Lua",
     function()
    green_run(function()
      local ok, err = pcall(coroutine.yield, 1)
      assert.is_false(ok)
      assert.matches("outside a coroutine", err)
    end)
  end)

  it("blocks inside a coroutine driven by the stock coroutine.resume " ..
     "(saved before require 'green'): a wait, not a swallowed yield",
     function()
    -- A library that kept the stock functions (local resume =
    -- coroutine.resume at load time) drives a coroutine that blocks. The
    -- hub yield must not reach that resume as the coroutine's own yield
    -- (it returned true and nothing, the sleep never ended, and the
    -- thread ran on while the hub thought it waited).
    local out, err, code = helper.lua54_run([[
      local resume, wrap, create = coroutine.resume, coroutine.wrap,
                                   coroutine.create
      local green = require "green"
      print(green.run(function()
        local co = create(function(x)
          green.sleep(0.01)
          local y = coroutine.yield(x + 1)
          green.sleep(0)
          return y * 2
        end)
        local other = green.spawn(function() return "other ran" end)
        local ok1, v1 = resume(co, 1)
        local ok2, v2 = resume(co, 10)
        local gen = wrap(function() green.sleep(0.001) return "w" end)
        return ok1, v1, ok2, v2, coroutine.status(co), gen(), other:wait()
      end))
    ]])
    assert.are.equal(0, code, err)
    assert.are.equal("true\t2\ttrue\t20\tdead\tw\tother ran\n", out)
  end)

  it("a refused resume of a coroutine in the chain leaves it able to " ..
     "block by yielding (no C stack parked)", function()
    green_run(function()
      local co1
      co1 = coroutine.create(function()
        local co2 = coroutine.create(function()
          return coroutine.resume(co1) -- co1 is normal: refused
        end)
        local _, ok, err = coroutine.resume(co2)
        local parks = green.core.cstack().parks
        sleep(0.001)
        return ok, err, green.core.cstack().parks - parks
      end)
      assert.are.same({ true, false, "cannot resume non-suspended coroutine",
                        0 }, { coroutine.resume(co1) })
    end)
  end)

  it("works on the main thread too (nested hub runs)", function()
    local other = false
    spawn(function() other = true end)
    local gen = coroutine.wrap(function()
      sleep(0.001)
      coroutine.yield("main gen")
    end)
    assert.are.equal("main gen", gen())
    assert.is_true(other)
    green.run()
  end)
end)

describe("blocking in yieldable contexts", function()
  it("works inside pcall and xpcall bodies", function()
    green_run(function()
      assert.are.same({ true, "p" },
                      { pcall(function() sleep(0.001); return "p" end) })
      assert.are.same({ true, "x" }, { xpcall(function()
        sleep(0)
        return "x"
      end, debug.traceback) })
      local ok, err = xpcall(function() sleep(0); error("e") end,
                             function(m) sleep(0); return "handled " .. m end)
      -- A message handler runs where nothing can yield: its sleep parks
      -- the thread's C stack (native stacks) and the handler goes on.
      assert.is_false(ok)
      assert.matches("^handled .*: e$", err)
    end)
  end)

  it("works inside metamethods reached from Lua", function()
    green_run(function()
      local mt = {
        __index = function(_, k) sleep(0); return k .. "!" end,
        __add = function() sleep(0); return 3 end,
        __lt = function() sleep(0); return true end,
        __concat = function() sleep(0); return "cat" end,
        __call = function(_, x) sleep(0.001); return x end,
        __eq = function() sleep(0); return true end,
      }
      local a, b = setmetatable({}, mt), setmetatable({}, mt)
      assert.are.equal("k!", a.k)
      assert.are.equal(3, a + b)
      assert.is_true(a < b)
      assert.are.equal("cat", a .. "x")
      assert.are.equal(9, a(9))
      assert.is_true(a == b)
    end)
  end)

  it("works inside generic-for iterators and __close handlers", function()
    green_run(function()
      local function iter(_, i)
        sleep(0)
        if i < 3 then return i + 1 end
      end
      local seen = {}
      for i in iter, nil, 0 do seen[#seen + 1] = i end
      assert.are.same({ 1, 2, 3 }, seen)
      local closed = false
      do
        local _ <close> = setmetatable({}, { __close = function()
          sleep(0.001)
          closed = true
        end })
      end
      assert.is_true(closed)
    end)
  end)
end)
