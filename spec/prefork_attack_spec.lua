-- Attacks on prefork serving (green.serve with `workers`) and the fork
-- under it: signals racing a fork, stops during startup, hooks that never
-- return, a master whose serve is timed out. Each case runs its processes
-- as greenlua subprocesses, every wait bounded; a master left by a failed
-- case is killed by its <close> (its workers are told to stop when it
-- dies). A hook "that never returns" sleeps 120 s: longer than any wait
-- here, and a bound on what a failing case leaves behind.
local green = require "green"
local h = require "helper"
local S = require "prefork_support"

-- A master on a free 127.0.0.1 port with the options OPTS (Lua source of
-- a table); it prints "port <port>" before it serves and "master
-- returned" after. A connection's "who" is answered "<id> <pid>".
local MASTER = [[
local green = require "green"
local server = assert(green.listen("127.0.0.1", 0))
local _, port = server:getsockname()
local opts = OPTS
io.stdout:write("port ", port, "\n")
io.stdout:flush()
green.serve(server, function(c)
  c:settimeout(30)
  if c:receive("*l") == "who" then
    c:send(green.worker_id() .. " " .. green.process.getpid() .. "\n")
  end
end, opts)
io.stdout:write("master returned\n")
io.stdout:flush()
]]

-- Start a master; returns the Process, its port and its stderr lines.
local function master(opts)
  return S.start_master((MASTER:gsub("OPTS", opts)))
end

local function who(port)
  local c = assert(green.connect("127.0.0.1", port))
  c:settimeout(30)
  assert(c:send("who\n"))
  local reply = assert(c:receive("*l"))
  c:close()
  local id, pid = reply:match("^(%d+) (%d+)$")
  return tonumber(id), tonumber(pid)
end

local running = S.running -- alive and not a zombie

describe("prefork under attack", function()
  -- A signal sent to a child right after green.fork, before the child had
  -- its own loop, ran libuv's handler on the parent's watches: its message
  -- went down the parent's signal pipe, so the PARENT ran its handler
  -- and the child never saw it (a master's SIGTERM to a worker it had
  -- just forked was lost: the master waited graceful_timeout + 1 s to
  -- kill it); later in that window the signal was lost and the closing
  -- watch made the child's loop spin.
  it("green.fork: a signal sent at once reaches the child, not the parent",
     function()
    local out, err, code = h.greenlua_run([[
local green = require "green"
local core = require "green.core"
local got = 0
local handle = green.signal("TERM", function() got = got + 1 end)
for i = 1, 20 do
  local pid = green.fork()
  if pid == 0 then
    green.sleep(30) -- a TERM ends it long before (no handler of its own)
    os.exit(3)
  end
  core.kill_pid(pid, 15)
  local how, c = green.process.wait(pid, 60)
  if how ~= "signal" or c ~= 15 then
    print("child " .. i .. ": " .. tostring(how) .. " " .. tostring(c))
    break
  end
end
handle:cancel()
print("parent got " .. got)
]], nil, 120)
    assert.are.equal(0, code, err)
    assert.are.equal("parent got 0\n", out, err)
  end)

  it("a SIGTERM while the workers start stops them all at once", function()
    green_run({ deadline = 120 }, function()
      -- The master sends itself SIGTERM from a thread that runs once
      -- serve's master waits: right after it forked the workers, while
      -- they start. graceful_timeout: a worker that missed its SIGTERM
      -- would hold the master for 601 s.
      local p <close> = S.start_master([[
local green = require "green"
local server = assert(green.listen("127.0.0.1", 0))
local _, port = server:getsockname()
io.stdout:write("port ", port, "\n")
io.stdout:flush()
green.spawn(function()
  require("green.core").kill_pid(green.process.getpid(), 15)
end)
green.serve(server, function() end, { workers = 16, graceful_timeout = 600 })
io.stdout:write("master returned\n")
io.stdout:flush()
]])
      assert.are.same({ "exit", 0 }, { p:wait(60) })
      assert.are.equal("master returned", p.stdout:receive("*l"))
    end)
  end)

  -- A roll told the old worker to drain and never made sure it went: an
  -- on_stop (or on_worker_exit) that never returns kept it forever.
  it("a worker a roll replaced is gone after graceful_timeout even if "
     .. "on_stop never returns", function()
    green_run({ deadline = 120 }, function()
      local p <close>, port, errs = master(
        "{ workers = 1, graceful_timeout = 0.2, "
        .. "on_stop = function() green.sleep(120) end }")
      local _, old = who(port)
      assert(p:kill("HUP"))
      h.eventually(function() return not running(old) end, 60,
                   function() return "the old worker to go: "
                                     .. table.concat(errs, "\n") end)
      local _, new = who(port)
      assert.are_not.equal(old, new)
      assert.matches("worker 1 %(pid " .. old .. "%) still there",
                     table.concat(errs, "\n"))
      assert(p:kill("TERM"))
      assert.are.same({ "exit", 0 }, { p:wait(60) })
    end)
  end)

  -- The kernel tells the workers of a dead master to stop; one whose
  -- drain never ended served on as an orphan forever.
  it("a worker whose master was killed exits even if on_worker_exit "
     .. "never returns", function()
    green_run({ deadline = 120 }, function()
      local p <close>, port = master(
        "{ workers = 1, graceful_timeout = 0.2, "
        .. "on_worker_exit = function() green.sleep(120) end }")
      local _, pid = who(port)
      assert(p:kill("KILL"))
      assert.are.same({ "signal", 9 }, { p:wait(60) })
      h.eventually(function() return not running(pid) end, 60,
                   "the orphaned worker to exit")
    end)
  end)

  -- A serve timed out (or killed) in the master killed its workers and
  -- left stop's last-resort timer behind: the caller's process lived
  -- graceful_timeout + 1 s longer than its program.
  it("a serve timed out in the master leaves nothing running", function()
    local out, err, code = h.greenlua_run([[
local green = require "green"
local server = assert(green.listen("127.0.0.1", 0))
green.with_timeout(0.2, green.serve, server, function() end,
                   { workers = 2, graceful_timeout = 600 })
print("out")
]], nil, 60)
    assert.are.equal(0, code, err)
    assert.are.equal("out\n", out)
  end)
end)

describe("prefork options under attack", function()
  -- Without `workers` they were not checked at all: a NaN, a negative or
  -- a string, or a hook that is no function, was silently ignored.
  it("are checked without workers too, in serve and http.serve", function()
    green_run(function()
      local server = assert(green.listen("127.0.0.1", 0))
      server:close() -- a serve that took the options returns at once
      local function f() end
      for _, case in ipairs {
        { { graceful_timeout = 0 / 0 },
          "(graceful_timeout: positive number expected, got NaN)" },
        { { graceful_timeout = -1 },
          "(graceful_timeout: positive number expected, got -1)" },
        { { worker_timeout = "30" },
          "(worker_timeout: positive number expected, got string)" },
        { { worker_timeout = 0 / 0 },
          "(worker_timeout: positive number expected, got NaN)" },
        { { on_worker_start = 3 },
          "(on_worker_start: function expected, got " },
        { { on_worker_exit = {} },
          "(on_worker_exit: function expected, got " },
        { { on_stop = "x" }, "(on_stop: function expected, got " },
      } do
        local ok, err = pcall(green.serve, server, f, case[1])
        assert.is_false(ok, case[2])
        assert.matches(case[2], err, 1, true)
        if case[1].on_stop == nil and case[1].graceful_timeout == nil then
          ok, err = pcall(green.http.serve, server, f, case[1])
          assert.is_false(ok, case[2])
          assert.matches(case[2], err, 1, true)
        end
      end
    end)
  end)

  -- A bad number was blamed on serve.lua, not on the caller's line.
  it("a bad number names the caller's line", function()
    green_run(function()
      local server = assert(green.listen("127.0.0.1", 0))
      server:close()
      local ok, err = pcall(function()
        green.serve(server, function() end, { workers = 2,
                                              worker_timeout = -1 })
      end)
      assert.is_false(ok)
      assert.matches("^spec/prefork_attack_spec%.lua:%d+: bad argument "
                     .. "#3 to 'serve' %(worker_timeout:", err)
    end)
  end)
end)
