-- The greenlua executable and stock lua5.4 with require("green"), each run
-- in a subprocess.
local h = require "helper"

-- Run greenlua with `args` in the background, send it SIGINT once it has
-- printed "ready" (the script says when it is where the spec wants the
-- signal), and return its stdout without that line, stderr and exit code.
local function interrupt(args)
  local out, err, code = h.sh(string.format([[
out=$(mktemp)
%s %s >"$out" & pid=$!
n=0
until grep -q '^ready$' "$out"; do
  n=$((n+1)); [ $n -gt 3000 ] && break
  sleep 0.01
done
kill -INT $pid; wait $pid; code=$?
cat "$out"; rm -f "$out"; exit $code]], h.greenlua, args))
  return (out:gsub("ready\n", "", 1)), err, code
end

local function run(args, stdin)
  local cmd = h.greenlua .. " " .. args
  if stdin then
    local p = os.tmpname()
    local f = assert(io.open(p, "w"))
    f:write(stdin)
    f:close()
    cmd = cmd .. " < " .. p
  end
  return h.sh(cmd)
end

describe("greenlua script.lua", function()
  it("runs the main chunk as a green thread with args and arg", function()
    local out, err, code = h.greenlua_run([[
      local green = require "green"
      print(select("#", ...), table.concat({ ... }, ","), arg[1],
            arg[0] ~= nil)
      print(green.getcurrent().name, coroutine.isyieldable())
      green.sleep(0.001)
    ]], "x y")
    assert.are.equal(0, code, err)
    assert.are.equal("2\tx,y\tx\ttrue\nmain\tfalse\n", out)
  end)

  it("keeps running until no green thread is left", function()
    local out, _, code = h.greenlua_run([[
      local green = require "green"
      green.spawn(function() green.sleep(0.02); print("late") end)
      print("main done")
    ]])
    assert.are.equal(0, code)
    assert.are.equal("main done\nlate\n", out)
  end)

  it("exits 1 with a traceback on an error in the main chunk", function()
    local out, err, code = h.greenlua_run([[
      local green = require "green"
      green.spawn(function() green.sleep(5); print("never") end)
      local function f() error("main failed") end
      f()
    ]])
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("main failed", err)
    assert.matches("stack traceback", err)
    assert.matches("in local 'f'", err)
  end)

  it("reports a main chunk blocked forever instead of hanging", function()
    local _, err, code = h.greenlua_run([[
      require("green").core.suspend()
    ]])
    assert.are.equal(1, code)
    assert.matches("deadlock", err)
  end)

  it("reports a missing script", function()
    local _, err, code = run("/nonexistent/script.lua")
    assert.are.equal(1, code)
    assert.matches("cannot open /nonexistent/script.lua", err)
  end)
end)

describe("greenlua options", function()
  it("-e runs statements, in a green thread", function()
    local out, _, code = run([[-e "local g = require 'green'; ]]
      .. [[g.sleep(0.001); print(g.getcurrent().name)"]])
    assert.are.equal(0, code)
    assert.are.equal("main\n", out)
  end)

  it("-l loads a library into a global, and g=mod renames", function()
    local out, _, code = run([[-l green -l s=string ]]
      .. [[-e "print(type(green.spawn), s.rep('a', 2))"]])
    assert.are.equal(0, code)
    assert.are.equal("function\taa\n", out)
  end)

  it("-W turns warnings on, as lua5.4 does (issue 7, fault 11)", function()
    local _, err, code = run("-W -e \"warn('careful')\"")
    assert.are.equal(0, code, err)
    assert.are.equal("Lua warning: careful\n", err)
    _, err, code = run("-e \"warn('careful')\"")
    assert.are.equal(0, code, err)
    assert.are.equal("", err)
  end)

  it("-v prints the version", function()
    local out, _, code = run("-v")
    assert.are.equal(0, code)
    assert.matches("^greenlua %d+%.%d+%.%d+ %(Lua 5%.4%)", out)
  end)

  it("- runs stdin as the script", function()
    local out, _, code = run("- a b", "print(...)")
    assert.are.equal(0, code)
    assert.are.equal("a\tb\n", out)
  end)

  it("-- stops option handling", function()
    local p = os.tmpname()
    local f = assert(io.open(p, "w"))
    f:write("print(...)")
    f:close()
    local out, _, code = run("-- " .. p .. " -e")
    os.remove(p)
    assert.are.equal(0, code)
    assert.are.equal("-e\n", out)
  end)

  it("rejects an unknown option with usage", function()
    local _, err, code = run("-z")
    assert.are.equal(1, code)
    assert.matches("unrecognized option '%-z'", err)
    assert.matches("usage:", err)
  end)

  it("-i reads lines that run in green threads", function()
    local out, err, code = run("-i",
      "green = require 'green'\n"
      .. "green.spawn(function() green.sleep(0.01) print('bg') end)\n"
      .. "green.sleep(0.05)\n"
      .. "1 + 1\n"
      .. "for i = 1, 2 do\nprint(i)\nend\n"
      .. "error('oops')\n"
      .. "print('after')\n")
    assert.are.equal(0, code, err)
    assert.matches("bg\n", out)
    assert.matches("2\n", out)
    assert.matches("1\n2\n", out)
    assert.matches("oops", err)
    assert.matches("after\n", out)
  end)

  it("Ctrl-C interrupts a main chunk blocked in the hub", function()
    -- the spawned thread runs once the main chunk blocks in sleep
    local _, err, code = interrupt([[-e "local g = require('green') ]]
      .. [[g.spawn(function() print('ready') io.stdout:flush() end) ]]
      .. [[g.sleep(60)"]])
    assert.are.equal(1, code)
    assert.matches("interrupted!", err)
    assert.not_matches("cli.lua", err) -- the driver's frames are hidden
  end)

  it("Ctrl-C interrupts a main chunk running Lua code", function()
    local _, err, code = interrupt([[-e "print('ready') io.stdout:flush() ]]
      .. [[local x = 0 while true do x = x + 1 end"]])
    assert.are.equal(1, code)
    assert.matches("interrupted!", err)
  end)
end)

describe("Ctrl-C after the main chunk has ended", function()
  it("stops waiting for the remaining green threads", function()
    -- threads spawned by the main chunk start once it has ended
    local out, err, code = interrupt([[-e "local g = require('green') ]]
      .. [[g.spawn(function() g.sleep(60) print('late') end) ]]
      .. [[g.spawn(function() print('ready') io.stdout:flush() end) ]]
      .. [[print('main')"]])
    assert.are.equal(1, code)
    assert.are.equal("main\n", out)
    assert.matches("interrupted!", err)
  end)
end)

describe("require('green') from stock lua5.4", function()
  it("runs the hub from the main thread for blocking calls", function()
    local out, err, code = h.lua54_run([[
      local green = require "green"
      local log = {}
      local t = green.spawn(function() green.sleep(0.005); return "r" end)
      green.spawn(function() log[#log + 1] = "other" end)
      green.sleep(0.001)
      log[#log + 1] = t:wait()
      local late = false
      green.spawn(function() green.sleep(0.005); late = true end)
      green.run()
      print(table.concat(log, " "), late)
    ]])
    assert.are.equal(0, code, err)
    assert.are.equal("other r\ttrue\n", out)
  end)

  it("raises a deadlock error instead of hanging", function()
    local out, err, code = h.lua54_run([[
      local green = require "green"
      local t = green.spawn(function() green.core.suspend() end)
      print(pcall(t.wait, t))
      t:kill()
      print(t:dead())
    ]])
    assert.are.equal(0, code, err)
    assert.matches("false\tdeadlock: the main thread is blocked in "
                   .. "GreenThread:wait", out)
    assert.matches("true\n$", out)
  end)
end)
