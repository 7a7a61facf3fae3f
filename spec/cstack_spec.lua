-- Native stacks (runtime/cstack.c): a green thread blocks inside a C-call
-- boundary (a C function calling back into Lua, which Lua 5.4 cannot
-- suspend) and continues there once its wait is over, while the hub runs
-- other threads. Kills and Timeouts raised at that point unwind through the
-- C frames as errors do: pcall and <close> work there.
local green = require "green"
local helper = require "spec.helper"

local spawn, sleep = green.spawn, green.sleep
-- A real C library's callback: Debian's lua-lpeg (.ci/setup installs it)
-- ships a 5.4 build; its match-time captures call Lua from lpeg's C matcher.
local lpeg = require "lpeg"

-- Each boundary, as a function that blocks once through `block` inside it
-- and returns what the C function made of the callback's result.
local boundaries = {
  ["table.sort comparator"] = function(block)
    local t = { 3, 1, 2 }
    local first = true
    table.sort(t, function(a, b)
      if first then first = false; block() end
      return a < b
    end)
    return table.concat(t, ",")
  end,
  ["string.gsub callback"] = function(block)
    local first = true
    return (("ab"):gsub("%w", function(c)
      if first then first = false; block() end
      return c:upper()
    end))
  end,
  ["tostring's __tostring"] = function(block)
    return tostring(setmetatable({}, { __tostring = function()
      block()
      return "obj"
    end }))
  end,
  ["__lt reached from table.sort"] = function(block)
    local mt = {}
    local blocked = false
    mt.__lt = function(a, b)
      if not blocked then blocked = true; block() end
      return a.v < b.v
    end
    local t = { setmetatable({ v = 2 }, mt), setmetatable({ v = 1 }, mt) }
    table.sort(t)
    return t[1].v .. "," .. t[2].v
  end,
  ["a require'd module's main chunk"] = function(block)
    local name = "spec_cstack_module_" .. tostring(green.getcurrent().id)
    package.preload[name] = function()
      block()
      return { loaded = true }
    end
    local m = require(name)
    package.loaded[name], package.preload[name] = nil, nil
    return tostring(m.loaded)
  end,
  ["a load reader"] = function(block)
    local parts = { "return ", "4", "2" }
    local first = true
    local fn, err = load(function()
      if first then first = false; block() end
      return table.remove(parts, 1)
    end)
    if not fn then error(err, 0) end -- load returns the reader's error
    return tostring(fn())
  end,
  ["an lpeg match-time capture (lpeg.Cmt)"] = function(block)
    -- A word followed by digits; the Cmt function runs inside lpeg.match's
    -- C matcher, blocks, then accepts the match and returns a capture.
    local word = lpeg.C(lpeg.R("az") ^ 1)
    local p = lpeg.Cmt(word, function(_, pos, w)
      block()
      return pos, w:upper()
    end) * lpeg.C(lpeg.R("09") ^ 1)
    local w, n = p:match("abc123")
    return w .. ":" .. n
  end,
}

local expected = {
  ["table.sort comparator"] = "1,2,3",
  ["string.gsub callback"] = "AB",
  ["tostring's __tostring"] = "obj",
  ["__lt reached from table.sort"] = "1,2",
  ["a require'd module's main chunk"] = "true",
  ["a load reader"] = "42",
  ["an lpeg match-time capture (lpeg.Cmt)"] = "ABC:123",
}

local names = {}
for name in pairs(boundaries) do names[#names + 1] = name end
table.sort(names)

describe("blocking inside a C-call boundary", function()
  for _, name in ipairs(names) do
    local boundary = boundaries[name]

    it("works in " .. name .. ": sleep, while others run", function()
      green_run(function()
        local order = {}
        local t = spawn(function()
          local r = boundary(function()
            order[#order + 1] = "blocks"
            sleep(0.001)
            order[#order + 1] = "continues"
          end)
          order[#order + 1] = "returns"
          return r
        end)
        local other = spawn(function()
          helper.eventually(function() return #order > 0 end)
          order[#order + 1] = "other runs"
        end)
        assert.are.equal(expected[name], t:wait())
        other:wait()
        assert.are.same({ "blocks", "other runs", "continues", "returns" },
                        order)
      end)
    end)

    it("works in " .. name .. ": socket receive, queue get, tpool",
       function()
      green_run(function()
        local c, s = helper.pair()
        local q = green.Queue()
        local got = {}
        local t = spawn(function()
          local r = boundary(function()
            got[#got + 1] = assert(s:receive("*l"))
            got[#got + 1] = q:get()
            got[#got + 1] = green.tpool.execute(function(x) return x * 2 end,
                                                21)
          end)
          return r
        end)
        helper.until_suspended(t, "socket:receive")
        assert(c:send("line\n"))
        helper.until_suspended(t, "Queue:get")
        q:put("item")
        assert.are.equal(expected[name], t:wait())
        assert.are.same({ "line", "item", 42 }, got)
        c:close()
        s:close()
      end)
    end)

    it("works in " .. name .. ": a kill unwinds through the C frames, " ..
       "pcall and <close> run", function()
      green_run(function()
        local log = {}
        local t = spawn(function()
          local ok, err = pcall(boundary, function()
            local _ <close> = setmetatable({}, { __close = function()
              log[#log + 1] = "closed"
            end })
            sleep(10)
            log[#log + 1] = "not reached"
          end)
          log[#log + 1] = ok and "ok" or tostring(err)
          -- kill is sticky: the next blocking call raises it again
          local ok2 = pcall(sleep, 0)
          log[#log + 1] = tostring(ok2)
        end)
        helper.until_suspended(t, "green.sleep")
        t:kill("stop")
        assert.are.same({ "closed", "stop", "false" }, log)
      end)
    end)

    it("works in " .. name .. ": a Timeout raises there", function()
      green_run(function()
        local t = spawn(function()
          local tmo <close> = green.Timeout(0.01)
          local ok, err = pcall(boundary, function() sleep(5) end)
          assert.is_false(ok)
          return err == tmo
        end)
        assert.is_true(t:wait())
      end)
    end)
  end

  it("inside a user coroutine resumed from a comparator", function()
    green_run(function()
      local gen = coroutine.wrap(function()
        while true do sleep(0.001); coroutine.yield(true) end
      end)
      local t = { 2, 1, 3 }
      table.sort(t, function(a, b) assert(gen()); return a < b end)
      assert.are.same({ 1, 2, 3 }, t)
    end)
  end)

  it("wake values reach a core.suspend inside a boundary", function()
    green_run(function()
      local me
      local t = spawn(function()
        me = green.getcurrent()
        local r
        table.sort({ 2, 1 }, function(a, b)
          r = r or { green.core.suspend("spec") }
          return a < b
        end)
        return r
      end)
      helper.until_suspended(t, "spec")
      assert.is_true(green.core.wake(me, "a", "b"))
      assert.are.same({ true, "a", "b" }, t:wait())
    end)
  end)

  it("nested boundaries: a comparator inside a gsub callback", function()
    green_run(function()
      local s = ("ab"):gsub("%w", function(c)
        local t = { 3, 2, 1 }
        table.sort(t, function(a, b) sleep(0); return a < b end)
        return c .. t[1]
      end)
      assert.are.equal("a1b1", s)
    end)
  end)

  it("cansuspend() says true inside a boundary", function()
    green_run(function()
      local can
      table.sort({ 2, 1 }, function(a, b)
        can = green.core.cansuspend()
        return a < b
      end)
      assert.is_true(can)
    end)
  end)

  it("10,000 threads blocked inside boundaries at once", function()
    green_run({ deadline = 120 }, function()
      local N = 10000
      local ev = green.Event()
      local parked, done = 0, 0
      local before = green.core.cstack()
      for _ = 1, N do
        spawn(function()
          local t = { 2, 1 }
          table.sort(t, function(a, b)
            if parked >= 0 then
              parked = parked + 1
              ev:wait()
            end
            return a < b
          end)
          done = done + 1
        end)
      end
      helper.eventually(function() return parked == N end, 60,
                        "every thread parked")
      local st = green.core.cstack()
      assert.are.equal(before.parked + N, st.parked)
      -- each keeps its C frames: a few KB, well under 16 KB
      local per = (st.bytes - before.bytes) / N
      assert.is_true(per > 256 and per < 16384, tostring(per))
      parked = -1
      ev:send()
      helper.eventually(function() return done == N end, 60,
                        "every thread done")
      assert.are.equal(before.parked, green.core.cstack().parked)
    end)
  end)

  it("recursion too deep inside a boundary: a clean error, " ..
     "not a crash", function()
    green_run(function()
      local function nest(n, f)
        if n == 0 then return f() end
        local r
        table.sort({ 2, 1 }, function(a, b)
          r = r or nest(n - 1, f)
          return a < b
        end)
        return r
      end
      -- Lua's own limit on nested C calls, raised as an error in the
      -- thread, with the thread able to block afterwards
      local ok, err = pcall(nest, 1000, function() sleep(0) end)
      assert.is_false(ok)
      assert.matches("stack overflow", err)
      sleep(0)
      -- a C stack deeper than the park limit: the blocking call raises,
      -- its wait is undone, and the thread goes on
      local limit = green.core.cstack().limit
      green.core.cstack(16 * 1024)
      local ok2, e2 = pcall(nest, 40, function() sleep(0) end)
      green.core.cstack(limit)
      assert.is_false(ok2)
      assert.matches("deeper than 16 KB", e2)
      assert.are.equal(0, green.core.stats().ready)
      assert.are.equal("ok", nest(5, function() sleep(0); return "ok" end))
    end)
  end)
end)

describe("where blocking still fails", function()
  it("inside a finalizer, with the reason", function()
    green_run(function()
      local msg
      spawn(function()
        table.sort({ 2, 1 }, function(a, b)
          setmetatable({}, { __gc = function()
            local _, err = pcall(sleep, 0)
            msg = err
          end })
          collectgarbage()
          collectgarbage()
          return a < b
        end)
      end):wait()
      assert.matches("cannot block inside a finalizer %(__gc%)", msg)
    end)
  end)
end)
