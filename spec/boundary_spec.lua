-- Blocking where Lua 5.4 cannot suspend a coroutine (inside a C function
-- that called back into Lua) fails with a greenlua error that names the
-- boundary and the fix: never Lua's bare "attempt to yield across a C-call
-- boundary", never a hang.
local green = require "green"

local spawn, sleep = green.spawn, green.sleep

local function failure_of(fn)
  local t = spawn(fn)
  local ok, err = pcall(t.wait, t)
  assert.is_false(ok, "expected the thread to fail")
  assert.is_string(err)
  assert.not_matches("attempt to yield across a C%-call boundary", err)
  return err
end

describe("blocking at a C-call boundary", function()
  it("inside a table.sort comparator", function()
    green_run(function()
      local err = failure_of(function()
        table.sort({ 3, 1, 2 }, function(a, b) sleep(0); return a < b end)
      end)
      assert.matches("green.sleep: cannot block inside table.sort", err)
      assert.matches("before sorting", err)
    end)
  end)

  it("inside a string.gsub replacement function", function()
    green_run(function()
      local err = failure_of(function()
        return ("abc"):gsub("%w", function(c) sleep(0.001); return c end)
      end)
      assert.matches("cannot block inside string.gsub", err)
      assert.matches("string.gmatch", err)
    end)
  end)

  it("inside the main chunk of a module being required", function()
    green_run(function()
      package.preload["spec_blocking_module"] = function()
        sleep(0)
        return {}
      end
      local err = failure_of(function() require "spec_blocking_module" end)
      package.preload["spec_blocking_module"] = nil
      assert.matches("cannot block inside require", err)
      assert.matches("after require returns", err)
    end)
  end)

  it("inside __tostring called by tostring", function()
    green_run(function()
      local obj = setmetatable({}, { __tostring = function()
        sleep(0)
        return "obj"
      end })
      local err = failure_of(function() return tostring(obj) end)
      assert.matches("cannot block inside tostring", err)
      assert.matches("__tostring must not block", err)
    end)
  end)

  it("inside a generator resumed from a comparator", function()
    green_run(function()
      local err = failure_of(function()
        local gen = coroutine.wrap(function()
          while true do sleep(0); coroutine.yield(true) end
        end)
        table.sort({ 2, 1 }, function(a, b) gen(); return a < b end)
      end)
      assert.matches("cannot block inside table.sort", err)
    end)
  end)

  it("inside a finalizer", function()
    green_run(function()
      local msg
      spawn(function()
        setmetatable({}, { __gc = function()
          local _, err = pcall(sleep, 0)
          msg = err
        end })
        collectgarbage()
        collectgarbage()
      end):wait()
      assert.is_string(msg)
      assert.matches("cannot block inside a finalizer %(__gc%)", msg)
    end)
  end)

  it("names the boundary, not a pcall inside it (issue 7)", function()
    green_run(function()
      local err
      table.sort({ 2, 1 }, function(a, b)
        local _, e = pcall(sleep, 0)
        err = err or e
        return a < b
      end)
      assert.matches("green.sleep: cannot block inside table.sort", err)
      assert.not_matches("inside pcall", err)
    end)
  end)

  it("inside a finalizer on the main thread (issue 7)", function()
    -- The main thread blocks by running the hub, which could run close
    -- callbacks that free what the interrupted code is still using.
    local msg, can
    setmetatable({}, { __gc = function()
      can = green.core.cansuspend()
      local _, err = pcall(sleep, 0)
      msg = err
    end })
    collectgarbage()
    collectgarbage()
    assert.matches("green.sleep: cannot block inside a finalizer %(__gc%)",
                   msg)
    assert.is_false(can)
    assert.is_true(green.core.cansuspend()) -- outside it, the main can
  end)

  it("kill from a finalizer delivers and returns (issue 7)", function()
    local t = spawn(function() sleep(10) end)
    sleep(0) -- t waits in sleep
    local ok, err
    setmetatable({}, { __gc = function() ok, err = pcall(t.kill, t) end })
    collectgarbage()
    collectgarbage()
    assert.is_true(ok, err)
    assert.are.equal(green.GreenletExit, t:wait())
  end)

  it("reports the error like any other when nobody waits", function()
    local seen
    local old = green.on_error(function(_, err) seen = err end)
    local ok = pcall(green.run, function()
      spawn(function()
        table.sort({ 2, 1 }, function(a, b) sleep(0); return a < b end)
      end)
      sleep(0)
      sleep(0)
    end)
    green.on_error(old)
    assert.is_true(ok)
    assert.matches("cannot block inside table.sort", seen)
  end)

  it("leaves the hub usable afterwards", function()
    green_run(function()
      failure_of(function()
        table.sort({ 2, 1 }, function(a, b) sleep(0); return a < b end)
      end)
      sleep(0.001)
      assert.are.equal(3, spawn(function() sleep(0); return 3 end):wait())
    end)
  end)

  it("blocking is fine in the same places on the main thread", function()
    local t = { 3, 1, 2 }
    table.sort(t, function(a, b) sleep(0); return a < b end)
    assert.are.same({ 1, 2, 3 }, t)
  end)
end)
