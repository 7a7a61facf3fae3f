-- Blocking inside a C-call boundary (a C function that called back into
-- Lua, which Lua 5.4 cannot suspend) works on green threads: their C stack
-- is parked (spec/cstack_spec.lua). What remains an error is blocking
-- where no green thread can wait: a finalizer (it runs in the middle of
-- whatever allocated) -- with a message that says why, never Lua's bare
-- "attempt to yield across a C-call boundary", never a hang.
local green = require "green"

local spawn, sleep = green.spawn, green.sleep

describe("blocking at a C-call boundary", function()
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

  it("blocking is fine in the same places on the main thread", function()
    local t = { 3, 1, 2 }
    table.sort(t, function(a, b) sleep(0); return a < b end)
    assert.are.same({ 1, 2, 3 }, t)
  end)
end)

describe("a finalizer that runs after lua_close closed the hub", function()
  -- Its object had its __gc before green loaded, so Lua runs it after
  -- green's own: spawn and Timeout allocated the closed hub's thread
  -- table and timer heap anew, which nothing freed (a leak under ASan).
  it("spawn, spawn_n, spawn_after and Timeout raise", function()
    local h = require "helper"
    local out, err, code = h.lua54_run([[
local green
G = setmetatable({}, { __gc = function()
  print(pcall(green.spawn, print, "late"))
  print(pcall(green.spawn_n, print, "late"))
  print(pcall(green.spawn_after, 1, print, "late"))
  print(pcall(green.Timeout, 1))
end })
green = require "green"
green.spawn(function() green.sleep(10) end) -- parked at the close
green.sleep(0)
]], 60)
    assert.are.equal(0, code, "exit code " .. code .. ": " .. err)
    assert.are.equal(string.rep("false\tgreen: the hub is closed "
                                .. "(lua_close): a finalizer that runs "
                                .. "after it cannot use green\n", 4), out)
  end)

  it("kill and cancel of what was armed at the close raise, Timeout:cancel " ..
     "does nothing, and nothing crashes", function()
    -- They stopped timers in the closed hub's freed heap (a SEGV). (As
    -- spec/lifecycle_spec.lua's walk: kill and cancel raise.)
    local h = require "helper"
    local out, err, code = h.lua54_run([[
local green, victims, timeout = nil, {}, nil
G = setmetatable({}, { __gc = function()
  for _, t in ipairs(victims) do
    print(pcall(t.kill, t), pcall(t.cancel, t))
  end
  print(pcall(timeout.cancel, timeout))
end })
green = require "green"
victims[1] = green.spawn(function() green.sleep(10) end)
victims[2] = green.spawn_after(10, print)
victims[3] = green.spawn(function()
  timeout = green.Timeout(10)
  green.Event():wait()
end)
victims[4] = green.spawn(function()
  table.sort({ 2, 1 }, function(a, b) green.sleep(10); return a < b end)
end)
green.sleep(0)
]], 60)
    assert.are.equal(0, code, "exit code " .. code .. ": " .. err)
    local closed = "false\tgreen: the hub is closed (lua_close): a finalizer "
                   .. "that runs after it cannot use green"
    -- (print(pcall(kill), pcall(cancel)): the first pcall's status only)
    assert.are.equal(string.rep("false\t" .. closed .. "\n", 4)
                     .. "true\n", out)
  end)
end)
