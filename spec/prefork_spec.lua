-- Prefork serving (issue 11): green.serve(server, handler, { workers = N })
-- forks N workers that accept on one listening socket; the master
-- restarts the dead (with a backoff for those that die at start), kills a
-- worker whose hub stops turning, drains on SIGTERM and rolls on SIGHUP.
-- Each case runs a master in its own greenlua process (started with
-- green.process) and talks to its workers over TCP; every wait is bounded.
local green = require "green"
local h = require "helper"
local process = green.process
local S = require "prefork_support"

-- The master. OPTS is replaced by the case's options. A connection sends
-- commands, one per line:
--   who    -> "<worker id> <pid>"
--   hold   -> "held"; then "term" once this worker got SIGTERM; then,
--             after the client's "go", "done", and the handler returns
--   block  -> "blocking", and the worker's hub never turns again
local MASTER = [[
local green = require "green"
local server = assert(green.listen("127.0.0.1", 0))
local _, port = server:getsockname()
local mypid = green.process.getpid
local opts = OPTS
if os.getenv("CRASH_AT_START") then
  opts.on_worker_start = function(id) error("worker " .. id .. " crashes") end
elseif os.getenv("CRASH_FLAG") then -- workers crash while the file exists
  opts.on_worker_start = function(id)
    local f = io.open(os.getenv("CRASH_FLAG"))
    if f then f:close(); error("worker " .. id .. " crashes") end
  end
elseif os.getenv("SLOW_FLAG") then -- workers start once the file is gone
  opts.on_worker_start = function()
    local flag = os.getenv("SLOW_FLAG")
    local f = io.open(flag)
    if not f then return end
    f:close()
    f = assert(io.open(flag .. ".pid", "w")) -- "I am starting"
    f:write(mypid())
    f:close()
    for _ = 1, 6000 do
      f = io.open(flag)
      if not f then return end
      f:close()
      green.sleep(0.01)
    end
    error("the flag file stayed")
  end
end
io.stdout:write("port ", port, " ", mypid(), "\n")
io.stdout:flush()
green.serve(server, function(c)
  c:settimeout(30)
  while true do
    local l = c:receive("*l")
    if not l then return end
    if l == "who" then
      c:send(green.worker_id() .. " " .. mypid() .. "\n")
    elseif l == "hold" then
      local term = green.Event()
      local handle = green.signal("TERM", function() term:send() end)
      c:send("held\n")
      term:wait()
      handle:cancel()
      c:send("term\n")
      if c:receive("*l") == "go" then c:send("done\n") end
      return -- the request in flight is over: the connection closes now
    elseif l == "block" then
      c:send("blocking\n")
      while true do end
    end
  end
end, opts)
io.stdout:write("master returned\n")
io.stdout:flush()
]]

local function alive(pid) -- running or a zombie
  local f = io.open("/proc/" .. pid .. "/stat")
  if f then f:close() end
  return f ~= nil
end

local running = S.running -- alive and not a zombie

-- Start a master with `opts` (Lua source of a table); returns the
-- Process, the port, and a table of the master's stderr lines.
local function master(opts, env)
  return S.start_master((MASTER:gsub("OPTS", opts)), env)
end

local function grep(lines, pattern)
  for _, l in ipairs(lines) do
    if l:find(pattern) then return l end
  end
end

-- One command on a new connection: the reply line, or nil, err.
local function ask(port, cmd)
  local c, err = green.connect("127.0.0.1", port)
  if not c then return nil, err end
  c:settimeout(20)
  local ok, serr = c:send(cmd .. "\n")
  if not ok then c:close(); return nil, serr end
  local reply, rerr = c:receive("*l")
  c:close()
  return reply, rerr
end

local function who(port)
  local reply, err = ask(port, "who")
  assert(reply, "no answer: " .. tostring(err))
  local id, pid = reply:match("^(%d+) (%d+)$")
  return tonumber(id), tonumber(pid)
end

-- Ask `who` until `want(id, pid)` holds (at most `n` times); every
-- connection must be answered.
local function until_who(port, want, n, what)
  for _ = 1, n or 2000 do
    local id, pid = who(port)
    if want(id, pid) then return id, pid end
  end
  error("never answered as wanted: " .. (what or "?"))
end

-- A connection on which a worker holds a request ("hold"), and that
-- worker's pid: the worker lives, draining, until the client says "go".
local function hold(port)
  local c = assert(green.connect("127.0.0.1", port))
  c:settimeout(30)
  assert(c:send("who\n"))
  local pid = tonumber(assert(c:receive("*l")):match("^%d+ (%d+)$"))
  assert(c:send("hold\n"))
  assert.are.equal("held", c:receive("*l"))
  return c, pid
end

local function stop(p)
  assert(p:kill("TERM"))
  local how, code = p:wait(60)
  return how, code
end

describe("green.serve with workers", function()
  it("forks N workers that all serve the one listening socket", function()
    green_run({ deadline = 120 }, function()
      local p <close>, port, errs = master("{ workers = 2 }")
      local pids = {}
      until_who(port, function(id, pid)
        pids[id] = pid
        return pids[1] and pids[2]
      end, 2000, "both workers")
      assert.are_not.equal(pids[1], pids[2])
      assert.are_not.equal(p.pid, pids[1])
      assert.are_not.equal(p.pid, pids[2])
      assert.are.same({ "exit", 0 }, { stop(p) })
      assert.are.equal("master returned", p.stdout:receive("*l"))
      assert.is_nil(grep(errs, "worker"), table.concat(errs, "\n"))
      -- the workers are gone with the master
      assert.is_false(alive(pids[1]))
      assert.is_false(alive(pids[2]))
    end)
  end)

  it("replaces a killed worker, and no connection goes unanswered",
     function()
    green_run({ deadline = 120 }, function()
      local p <close>, port, errs = master("{ workers = 2 }")
      local _, old = until_who(port, function(id) return id == 1 end)
      assert(process.run { "kill", "-KILL", tostring(old) })
      local _, new = until_who(port, function(id, pid)
        return id == 1 and pid ~= old
      end, 5000, "a new worker 1")
      assert.are_not.equal(old, new)
      h.eventually(function() return grep(errs, "killed by signal 9") end,
                   30, "the master's report")
      assert.matches("worker 1 %(pid " .. old .. "%) was killed by signal 9",
                     grep(errs, "killed by signal"))
      assert.are.same({ "exit", 0 }, { stop(p) })
    end)
  end)

  it("on SIGTERM lets a request in flight finish, then exits 0",
     function()
    green_run({ deadline = 120 }, function()
      local p <close>, port, errs =
        master("{ workers = 1, graceful_timeout = 30 }")
      local c = assert(green.connect("127.0.0.1", port))
      c:settimeout(30)
      assert(c:send("hold\n"))
      assert.are.equal("held", c:receive("*l"))
      assert(p:kill("TERM"))
      assert.are.equal("term", c:receive("*l")) -- the worker has it
      assert(c:send("go\n"))
      assert.are.equal("done", c:receive("*l"))
      local line, err = c:receive("*l")
      assert.are.same({ nil, "closed" }, { line, err })
      c:close()
      assert.are.same({ "exit", 0 }, { p:wait(60) })
      assert.is_nil(grep(errs, "killed"), table.concat(errs, "\n"))
    end)
  end)

  it("on SIGTERM kills what is still running after graceful_timeout",
     function()
    green_run({ deadline = 120 }, function()
      local p <close>, port = master("{ workers = 1, graceful_timeout = 0.2 }")
      local c = assert(green.connect("127.0.0.1", port))
      c:settimeout(30)
      assert(c:send("hold\n"))
      assert.are.equal("held", c:receive("*l"))
      assert(p:kill("TERM"))
      assert.are.equal("term", c:receive("*l"))
      -- never "go": the handler is killed, its connection closed
      local line, err = c:receive("*l")
      assert.are.same({ nil, "closed" }, { line, err })
      c:close()
      assert.are.same({ "exit", 0 }, { p:wait(60) })
    end)
  end)

  it("on SIGHUP replaces every worker without missing a connection",
     function()
    green_run({ deadline = 120 }, function()
      local p <close>, port = master("{ workers = 2, graceful_timeout = 5 }")
      local old = {}
      until_who(port, function(id, pid)
        old[id] = pid
        return old[1] and old[2]
      end)
      assert(p:kill("HUP"))
      local new = {}
      until_who(port, function(id, pid)
        if pid ~= old[1] and pid ~= old[2] then new[id] = pid end
        return new[1] and new[2]
      end, 20000, "two new workers")
      h.eventually(function()
        return not alive(old[1]) and not alive(old[2])
      end, 30, "the old workers to exit")
      assert.are.same({ "exit", 0 }, { stop(p) })
    end)
  end)

  -- Each roll starts new workers while the old ones may still drain: the
  -- master once kept 2N heartbeat slots, and a third generation alive at
  -- once (a second SIGHUP before the first's workers had finished their
  -- requests) found none left: the roll raised, no new worker started,
  -- and every later SIGHUP was ignored.
  it("a SIGHUP while the workers of the last one still drain rolls again",
     function()
    green_run({ deadline = 120 }, function()
      -- <close>: a failure here leaves no master serving on (its workers
      -- are told to drain when it dies)
      local p <close>, port, errs =
        master("{ workers = 1, graceful_timeout = 60 }")
      local held, pids = {}, {}
      local function hold_next()
        -- the current worker holds a request: it drains while it lives
        held[#held + 1], pids[#pids + 1] = hold(port)
      end
      local function is_new(_, pid)
        for _, old in ipairs(pids) do
          if pid == old then return false end
        end
        return true
      end
      hold_next()
      for round = 1, 3 do
        assert(p:kill("HUP"))
        assert.are.equal("term", held[round]:receive("*l"),
                         "round " .. round .. ": " .. table.concat(errs, "\n"))
        until_who(port, is_new, 5000,
                  "a new worker after SIGHUP " .. round .. ": "
                  .. table.concat(errs, "\n"))
        hold_next()
      end
      assert.are.equal(4, #pids)
      for _, c in ipairs(held) do
        if c ~= held[#held] then
          assert(c:send("go\n"))
          assert.are.equal("done", c:receive("*l"))
        end
        c:close()
      end
      assert.are.same({ "exit", 0 }, { stop(p) })
      assert.is_nil(grep(errs, "error"), table.concat(errs, "\n"))
    end)
  end)

  -- A roll's new worker that cannot start (a bad deploy): the old one was
  -- told to drain all the same, and the SIGHUP left nobody serving (the
  -- replacement kept crashing, with its backoff).
  it("a SIGHUP whose new worker dies at start leaves the old one serving",
     function()
    green_run({ deadline = 120 }, function()
      local flag = os.tmpname()
      os.remove(flag)
      local p <close>, port, errs =
        master("{ workers = 1, graceful_timeout = 60 }", { CRASH_FLAG = flag })
      local c, old = hold(port)
      local f = assert(io.open(flag, "w"))
      f:close()
      assert(p:kill("HUP"))
      h.eventually(function() return grep(errs, "was not replaced") end, 60,
                   "the master's report: " .. table.concat(errs, "\n"))
      assert.matches("worker 1 was not replaced: pid " .. old .. " serves on",
                     grep(errs, "was not replaced"))
      assert(grep(errs, "on_worker_start failed: .*worker 1 crashes"))
      -- the old worker got no SIGTERM: it serves new connections
      assert.are.same({ 1, old }, { who(port) })
      os.remove(flag)
      -- it is still the current one: a SIGHUP replaces it
      assert(p:kill("HUP"))
      assert.are.equal("term", c:receive("*l"))
      local _, new = until_who(port, function(_, pid) return pid ~= old end)
      assert.are_not.equal(old, new)
      assert(c:send("go\n"))
      assert.are.equal("done", c:receive("*l"))
      c:close()
      assert.are.same({ "exit", 0 }, { stop(p) })
    end)
  end)

  -- SIGHUP while a roll waited for its new worker was dropped: what it
  -- was sent for never reached the workers.
  it("a SIGHUP during a roll rolls the workers again after it", function()
    green_run({ deadline = 120 }, function()
      local flag = os.tmpname()
      os.remove(flag) -- the first worker starts at once
      local p <close>, port, errs =
        master("{ workers = 1, graceful_timeout = 60 }", { SLOW_FLAG = flag })
      local _, a = who(port)
      local f = assert(io.open(flag, "w"))
      f:close()
      assert(p:kill("HUP")) -- its worker b waits for the flag to go
      local b
      h.eventually(function()
        local pf = io.open(flag .. ".pid")
        b = pf and tonumber(pf:read("a"))
        if pf then pf:close() end
        return b
      end, 60, "the new worker to start")
      assert(p:kill("HUP")) -- during the roll
      h.eventually(function() return grep(errs, "SIGHUP during a roll") end,
                   60, "the master's report: " .. table.concat(errs, "\n"))
      os.remove(flag)
      os.remove(flag .. ".pid")
      -- b replaced a, then a third worker replaces b
      local _, c = until_who(port, function(_, pid)
        return pid ~= a and pid ~= b
      end, 5000, "a third worker: " .. table.concat(errs, "\n"))
      assert.are_not.equal(b, c)
      h.eventually(function() return not alive(a) and not alive(b) end, 60,
                   "the first two workers to exit")
      assert.are.same({ "exit", 0 }, { stop(p) })
    end)
  end)

  it("leaves no worker serving on when the master is killed", function()
    green_run({ deadline = 120 }, function()
      local p <close>, port = master("{ workers = 2, graceful_timeout = 5 }")
      local pids = {}
      until_who(port, function(id, pid)
        pids[id] = pid
        return pids[1] and pids[2]
      end)
      assert(p:kill("KILL"))
      assert.are.same({ "signal", 9 }, { p:wait(60) })
      h.eventually(function()
        return not running(pids[1]) and not running(pids[2])
      end, 60, "the orphaned workers to exit")
    end)
  end)

  it("kills and replaces a worker whose hub stops turning", function()
    green_run({ deadline = 120 }, function()
      local p <close>, port, errs =
        master("{ workers = 1, worker_timeout = 2 }")
      local _, old = who(port)
      local c = assert(green.connect("127.0.0.1", port))
      c:settimeout(60)
      assert(c:send("block\n"))
      assert.are.equal("blocking", c:receive("*l"))
      local _, err = c:receive("*l") -- the worker dies under it
      assert.is_true(err == "closed" or err == "connection reset by peer",
                     tostring(err))
      c:close()
      local _, new = until_who(port, function(_, pid) return pid ~= old end)
      assert.are_not.equal(old, new)
      assert.matches("worker 1 %(pid " .. old .. "%) did not turn its hub",
                     grep(errs, "did not turn its hub"))
      assert.are.same({ "exit", 0 }, { stop(p) })
    end)
  end)

  it("backs off restarting a worker that dies at start", function()
    green_run({ deadline = 120 }, function()
      local p <close>, _, errs = master("{ workers = 1 }",
                                { CRASH_AT_START = "1" })
      local function delays()
        local list = {}
        for _, l in ipairs(errs) do
          local d = l:match("restarting in ([%d.]+) s")
          if d then list[#list + 1] = d end
        end
        return list
      end
      h.eventually(function() return #delays() >= 3 end, 60,
                   "three restarts")
      assert.are.same({ "0.1", "0.2", "0.4" },
                      { table.unpack(delays(), 1, 3) })
      assert.truthy(grep(errs, "on_worker_start failed: .*worker 1 crashes"))
      assert.are.same({ "exit", 0 }, { stop(p) })
    end)
  end)

  -- green.http.serve takes the same options; a worker told to stop
  -- closes its idle keep-alive connections at once (serve's on_stop), so
  -- it exits long before graceful_timeout.
  it("green.http.serve: SIGTERM closes idle keep-alive connections at once",
     function()
    green_run({ deadline = 120 }, function()
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write([=[
local green = require "green"
local server = assert(green.listen("127.0.0.1", 0))
local _, port = server:getsockname()
io.stdout:write("port ", port, "\n")
io.stdout:flush()
green.http.serve(server, function()
  return 200, { ["content-type"] = "text/plain" }, "hi " .. green.worker_id()
end, { workers = 1, graceful_timeout = 600 })
]=])
      f:close()
      local p <close> = assert(process.spawn { h.greenlua, path,
                                               stdout = "pipe",
                                               stderr = "pipe" })
      p.stdout:settimeout(30)
      local port = tonumber(assert(p.stdout:receive("*l")):match("%d+"))
      os.remove(path)
      local c = assert(green.connect("127.0.0.1", port))
      c:settimeout(30)
      assert(c:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
      assert.are.equal("HTTP/1.1 200 OK", c:receive("*l"))
      local len
      while true do
        local l = assert(c:receive("*l"))
        if l == "" then break end
        len = len or tonumber(l:lower():match("^content%-length: (%d+)"))
      end
      assert.are.equal("hi 1", c:receive(len))
      -- idle on a keep-alive connection now
      assert(p:kill("TERM"))
      local line, err = c:receive("*l")
      assert.are.same({ nil, "closed" }, { line, err })
      c:close()
      -- far less than graceful_timeout (600 s)
      assert.are.same({ "exit", 0 }, { p:wait(60) })
    end)
  end)

  it("refuses bad options before forking anything", function()
    green_run(function()
      local server = assert(green.listen("127.0.0.1", 0))
      local function f() end
      for _, case in ipairs {
        { { workers = 0 }, "bad argument #3 to 'serve' (workers: positive "
          .. "integer expected, got 0)" },
        { { workers = 1.5 }, "(workers: positive integer expected, got 1.5)" },
        { { workers = 2, graceful_timeout = "x" },
          "(graceful_timeout: positive number expected, got string)" },
        { { workers = 2, worker_timeout = -1 },
          "(worker_timeout: positive number expected, got -1)" },
        { { workers = 2, on_worker_start = 3 },
          "bad argument #3 to 'serve' (on_worker_start: function "
          .. "expected, got number)" },
        { { workers = 2, concurrency = 0 }, "bad argument #3" },
      } do
        local ok, err = pcall(green.serve, server, f, case[1])
        assert.is_false(ok)
        assert.matches(case[2], err, 1, true)
      end
      server:close()
      assert.is_nil(green.worker_id()) -- not a worker
    end)
  end)
end)
