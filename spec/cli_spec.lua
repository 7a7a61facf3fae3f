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

  -- The prompt's reader had a buffer of 4096 bytes and gave a longer line
  -- as several lines: the first ran cut short ("unfinished string").
  it("-i reads a line longer than its buffer as one line", function()
    local long = string.rep("a", 100000)
    local out, err, code = run("-i", 'x = "' .. long .. '"\nprint(#x)\n'
                                     .. "print('x' .. x:sub(-3))\n")
    assert.is_true(err == "", "stderr: " .. err:sub(1, 200))
    assert.are.equal(0, code)
    assert.matches("\n?>? ?100000\n", out)
    assert.matches("xaaa\n", out)
  end)

  -- A kill is for good: each read of the prompt raised it again, and the
  -- prompt printed it in a loop at full speed, forever.
  it("-i ends when the main thread is killed, as a script would", function()
    for _, input in ipairs {
      "green = require 'green'\ngreen.getcurrent():kill()\nprint('alive')\n",
      "green = require 'green'\nlocal m = green.getcurrent() "
        .. "green.spawn(function() m:kill() end) green.sleep(0)\n"
        .. "print('alive')\n",
    } do
      local p = os.tmpname()
      local f = assert(io.open(p, "w"))
      f:write(input)
      f:close()
      -- (the output is cut short: without the fix it has no end)
      local out, err, code = h.sh(string.format(
        "(timeout 10 %s -i < %s 2>&1; echo \"rc=$?\" > %s.rc) | "
        .. "head -c 4000; cat %s.rc; rm -f %s.rc", h.greenlua, p, p, p, p),
        30)
      os.remove(p)
      assert.are.equal(0, code, err)
      local _, n = out:gsub("GreenletExit", "")
      assert.are.equal(1, n, out)
      assert.is_nil(out:find("alive", 1, true), out)
      assert.matches("rc=1\n$", out)
    end
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

describe("greenlua, Ctrl-C before the target runs", function()
  -- A Ctrl-C whose target had not started yet (the main chunk, between
  -- its spawn and its first run; here a thread made the target by hand,
  -- spawned or spawn_after's) was lost: the hub handled the signal before
  -- it ran its queue, and an interrupt only reaches a blocking call. The
  -- target ends with "interrupted!" now, without running.
  for _, how in ipairs({ "spawn", "spawn_after" }) do
    it("ends a target that has not started (" .. how .. ")", function()
      local out, err, code = h.greenlua_run(([[
        local green = require "green"
        local core = require "green.core"
        local ran = false
        local gt = %s(function()
          ran = true
          green.sleep(0.05)
          return "ran"
        end)
        core.interrupt_target(gt)
        assert(io.popen("kill -INT $PPID")):close() -- this process
        local status = gt:status()
        local ok, e = pcall(gt.wait, gt)
        print(status, ok, e, ran)
      ]]):format(how == "spawn" and "green.spawn"
                 or "(function(f) return green.spawn_after(30, f) end)"))
      assert.are.equal(0, code, err)
      assert.are.equal((how == "spawn" and "new" or "delayed")
                       .. "\tfalse\tinterrupted!\tfalse\n", out)
    end)
  end
end)

describe("greenlua, Ctrl-C inside greenlua's own modules", function()
  -- The hook raised "interrupted!" at the next instruction wherever it
  -- was, inside green's Lua modules too (a pool's count or a queue's
  -- list half updated, for a program that goes on after catching it).
  -- It waits for the first instruction outside them, as the time slice
  -- does: here the C function with_timeout calls signals this process,
  -- and the next code is with_timeout's own.
  it("is raised at the first instruction outside them", function()
    local out, err, code = h.greenlua_run([[
      local green = require "green"
      local core = require "green.core"
      local reached = false
      local ok, e = xpcall(function()
        green.with_timeout(5, core.kill_pid, green.process.getpid(), 2)
        reached = true
        return reached
      end, debug.traceback)
      local top = e:match("stack traceback:\n%s*([^\n]*)")
      print(ok, reached, e:match("interrupted!") ~= nil,
            top:find("init.lua", 1, true) == nil, top:match(":(%d+):"))
    ]])
    assert.are.equal(0, code, err)
    -- the top of the stack: the line after with_timeout's call
    assert.are.equal("false\tfalse\ttrue\ttrue\t6\n", out)
  end)
end)

describe("greenlua -h", function()
  it("prints the usage on stdout and exits 0, running nothing", function()
    for _, opt in ipairs({ "-h", "--help" }) do
      local out, err, code = run("-e \"print('ran')\" " .. opt
                                 .. " -e \"print('ran too')\"",
                                 "print('stdin ran')")
      assert.are.equal(0, code, err)
      assert.are.equal("", err)
      assert.matches("^usage: .* %[options%] %[script %[args%]%]\n", out)
      assert.matches("\n  %-e stat ", out)
      assert.matches("\n  %-h ", out)
      assert.not_matches("ran", out)
    end
  end)

  it("is a bad option with anything after it, and the script's own "
     .. "argument after the script", function()
    for _, opt in ipairs({ "-hx", "--helpx", "--h" }) do
      local out, err, code = run(opt)
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches("unrecognized option '" .. opt:gsub("%-", "%%-")
                     .. "'", err)
    end
    local out, err, code = run("- -h", "print(...)")
    assert.are.equal(0, code, err)
    assert.are.equal("-h\n", out)
  end)

  it("does not stop a bad option before it from failing", function()
    local out, err, code = run("-z -h")
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("unrecognized option '%-z'", err)
  end)
end)

-- The same command lines under lua5.4 and greenlua: the same exit code,
-- stdout, error message and traceback or not (tracebacks differ: the main
-- chunk is a green thread). The command line is parsed once, in
-- runtime/main.c; green.cli runs what it parsed, in lua.c's order.
describe("greenlua's command line is lua5.4's", function()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. dir))
  local function put(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
    return dir .. "/" .. name
  end
  local script = put("script.lua", [[
    print(select("#", ...), ..., #arg, arg[0], arg[-1] ~= nil, arg[-2],
          arg[-3])
  ]])
  local init = put("init.lua", "x = 'from init file'\n")
  put("mod.lua", "return { name = 'mod' }\n")
  -- { args, env = "VAR=value ...", stdin = text }
  local cases = {
    { [[-e "print(#arg, arg[1], arg[2], arg[0] ~= nil, arg[-1])"]] },
    { "SCRIPT a b" },
    { [[-e "x = 1" SCRIPT a]] },
    { "-- SCRIPT -e" },
    { "-- -" },
    { "- a b", stdin = "print(..., arg[0], #arg)" },
    { [[-e "print(1)" -]], stdin = "print(2)" },
    { "", stdin = "print('stdin', ...)" },
    { [[-e "print(1)"]], stdin = "print('not run')" },
    { [[-l mod -e "print(mod.name)"]], stdin = "print('not run')" },
    { [[-W -e "warn('w')"]] },
    { [[-e "warn('a')" -W -e "warn('b')"]] },
    { [[-l m=mod -e "print(m.name, mod)"]] },
    { [[-lmod -e "print(mod.name)"]] },
    { [[-l =mod -e "print(_G[''].name)"]] },
    { "-l nonexistent_module" },
    { [[-e "error('boom')"]] },
    { [[-e "error(42)"]] },
    { [[-e "error({})"]] },
    { [[-e "error(setmetatable({}, {__tostring = function() ]]
      .. [[return 'custom' end}))"]] },
    { [[-e "error()"]] },
    { [[-e "x = "]] },
    { [[-e "print('first')" -e "error('second')" -e "print('third')"]] },
    { [[-e "os.exit(3)"]] },
    { [[-e "os.exit(false)"]] },
    { dir .. "/missing.lua" },
    { "-z" }, { "-e" }, { "-l" }, { "-e -x" }, { "-vx" }, { "--x" },
    { "-Ex" }, { "-Wx" }, { "-ix" },
    { [[-e "print(x)"]], env = "LUA_INIT='x = 5'" },
    { [[-e "print(x)"]], env = "LUA_INIT='x = 5' LUA_INIT_5_4='x = 6'" },
    { [[-e "print(x)"]], env = "LUA_INIT=@" .. init },
    { [[-e "print(1)"]], env = "LUA_INIT='error(\"bad init\")'" },
    { [[-E -e "print(x)"]], env = "LUA_INIT='x = 5'" },
    { [[-W -e "warn('w')"]], env = "LUA_INIT='warn(\"from init\")'" },
    { [[-e "print(package.path:find('NOWHERE', 1, true) ~= nil)"]],
      env = "LUA_PATH='/NOWHERE/?.lua;;'" },
    { [[-E -e "print(package.path:find('NOWHERE', 1, true) ~= nil)"]],
      env = "LUA_PATH='/NOWHERE/?.lua;;'" },
  }

  local function unprog(s, prog)
    return (s:gsub(prog:gsub("%p", "%%%0"), "PROG"))
  end

  -- stderr's message, and whether it has a traceback.
  local function message(err)
    return err:match("^[^\n]*"), err:find("stack traceback:", 1, true) ~= nil
  end

  local function under(prog, case)
    local args = case[1]:gsub("SCRIPT", script)
    local stdin = ""
    if case.stdin then
      stdin = " < " .. put("stdin.lua", case.stdin)
    end
    return h.sh(string.format(
      "env -u LUA_INIT -u LUA_INIT_5_4 LUA_PATH='%s/?.lua;;' %s %s %s%s",
      dir, case.env or "", prog, args, stdin))
  end

  for _, case in ipairs(cases) do
    local what = case[1]:gsub(dir, "DIR")
    if case.env then what = case.env:gsub(dir, "DIR") .. " " .. what end
    it(what, function()
      local lout, lerr, lcode = under("lua5.4", case)
      local gout, gerr, gcode = under(h.greenlua, case)
      lout, lerr = unprog(lout, "lua5.4"), unprog(lerr, "lua5.4")
      gout, gerr = unprog(gout, h.greenlua), unprog(gerr, h.greenlua)
      local lmsg, ltb = message(lerr)
      local gmsg, gtb = message(gerr)
      assert.are.equal(lcode, gcode, gerr)
      assert.are.equal(lout, gout)
      assert.are.equal(lmsg, gmsg)
      assert.are.equal(ltb, gtb, gerr)
      if lerr:find("\nusage:") then
        assert.matches("\nusage: PROG %[options%]", gerr)
      end
    end)
  end

  teardown(function()
    os.execute("rm -rf " .. dir)
  end)
end)

describe("Ctrl-C at the prompt", function()
  it("interrupts each line, running or blocked, and the prompt goes on",
     function()
    local input = os.tmpname()
    local f = assert(io.open(input, "w"))
    f:write("print('ready1') io.stdout:flush() ",
            "local x = 0 while true do x = x + 1 end\n",
            "print('ready2') io.stdout:flush() require('green').sleep(60)\n",
            "print('ready3') io.stdout:flush() ",
            "local x = 0 while true do x = x + 1 end\n",
            "print('after')\n")
    f:close()
    -- each "readyN" is followed by one SIGINT
    local out, err, code = h.sh(string.format([[
out=$(mktemp)
%s -i <%s >"$out" & pid=$!
for r in ready1 ready2 ready3; do
  n=0
  until grep -q "$r" "$out"; do
    n=$((n+1)); [ $n -gt 3000 ] && break
    sleep 0.01
  done
  kill -INT $pid
done
wait $pid; code=$?
cat "$out"; rm -f "$out"; exit $code]], h.greenlua, input))
    os.remove(input)
    assert.are.equal(0, code, err)
    assert.matches("ready1\n.*ready2\n.*ready3\n.*after\n", out)
    local n = select(2, err:gsub("interrupted!", ""))
    assert.are.equal(3, n, err)
  end)
end)

describe("Ctrl-C while the hub is stuck", function()
  it("a second one ends the process, as SIGINT's default action", function()
    -- another thread never yields: the first interrupt cannot be
    -- delivered to the main chunk, blocked in sleep
    local out, err, code = h.sh(string.format([[
out=$(mktemp)
%s -e "local g = require('green') g.spawn(function() print('ready') ]]
  .. [[io.stdout:flush() while true do end end) g.sleep(60)" >"$out" &
pid=$!
n=0
until grep -q ready "$out"; do
  n=$((n+1)); [ $n -gt 3000 ] && break
  sleep 0.01
done
n=0
while kill -INT $pid 2>/dev/null; do
  n=$((n+1)); [ $n -gt 200 ] && break
  sleep 0.05
done
kill -KILL $pid 2>/dev/null # still alive: the spec fails (137)
wait $pid; code=$?
cat "$out"; rm -f "$out"; exit $code]], h.greenlua))
    assert.are.equal(130, code, err) -- killed by SIGINT (128 + 2)
    assert.are.equal("ready\n", out)
    assert.not_matches("interrupted", err)
  end)
end)

describe("Ctrl-C after one was delivered", function()
  -- lua5.4 ends the process on a second Ctrl-C during a chunk; greenlua
  -- delivered each one, so a chunk that caught "interrupted!" in a loop
  -- could not be stopped by Ctrl-C at all
  it("ends the process, as lua5.4's second Ctrl-C", function()
    local out, err, code = h.greenlua_run([[
      local pid = io.open("/proc/self/stat"):read("*n")
      for i = 1, 2 do
        print(i, pcall(function()
          io.popen("kill -INT " .. pid):read("a") -- the signal comes here
          local x = 0
          for j = 1, 1000 do x = x + j end
          return x
        end))
        io.stdout:flush()
      end
      print("survived")
    ]])
    assert.are.equal(130, code, err) -- killed by SIGINT (128 + 2)
    assert.matches("^1\tfalse\t[^\n]*interrupted!\n$", out)
  end)

  it("stops the wait for the other threads after the main chunk caught "
     .. "one", function()
    local out, err, code = h.greenlua_run([[
      local green = require "green"
      local pid = io.open("/proc/self/stat"):read("*n")
      print(pcall(function()
        io.popen("kill -INT " .. pid):read("a") -- the signal comes here
        local x = 0
        for j = 1, 1000 do x = x + j end
        return x
      end))
      green.spawn(function() -- runs once the main chunk has ended
        io.popen("kill -INT " .. pid):read("a")
        green.sleep(30)
        print("not reached")
      end)
    ]])
    assert.are.equal(1, code, err) -- not killed by SIGINT (130)
    assert.matches("^false\t[^\n]*interrupted!\n$", out)
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
