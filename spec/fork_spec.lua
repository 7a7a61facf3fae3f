-- green.fork (issue 11, bindings/fork.c): in the child only the thread that
-- forked goes on; the parent's threads, timers and waits are gone; the
-- sockets stay open but what the parent's loop had under way on them
-- stays the parent's; the resolver, the watchdog and the on_fork hooks
-- work in the child. Each case runs in its own greenlua (or lua5.4)
-- process, so a child that went wrong cannot run the spec runner's code;
-- the child reports to the parent over a socket, and every wait in the
-- scripts has a deadline.
local helper = require "helper"

-- Shared by the scripts: `report` connects the child back to the parent
-- (the parent's `collect` accepts and reads one line), and `expect` fails
-- loudly so the spec sees the reason on stderr.
local PRELUDE = [[
local green = require "green"
local function expect(cond, what)
  if not cond then
    io.stderr:write("FAILED: ", what, "\n")
    io.stderr:flush()
    os.exit(3)
  end
end
local back = assert(green.listen("127.0.0.1", 0))
back:settimeout(20)
local _, backport = back:getsockname()
local function report(line)
  local c = assert(green.connect("127.0.0.1", backport))
  assert(c:sendall(line .. "\n"))
  c:close()
end
local function collect()
  local c = assert(back:accept())
  c:settimeout(20)
  local line = assert(c:receive("*l"))
  c:close()
  return line
end
]]

local function run(src, lua54)
  if lua54 then return helper.lua54_run(PRELUDE .. src) end
  return helper.greenlua_run(PRELUDE .. src)
end

-- Run the script; it must exit 0 and print exactly `want`.
local function check(src, want, lua54, allow)
  local out, err, code = run(src, lua54)
  if allow then assert.matches(allow, err) else
    assert.are.equal("", err, "stderr: " .. err)
  end
  assert.are.equal(0, code, "exit code " .. code .. "; stderr: " .. err)
  assert.are.equal(want, out)
end


describe("green.fork", function()
  it("returns the child's pid in the parent and 0 in the child", function()
    check([[
local pid = green.fork()
if pid == 0 then report("child"); os.exit(0) end
expect(math.type(pid) == "integer" and pid > 0, "pid " .. tostring(pid))
print(collect())
]], "child\n")
  end)

  -- libuv's library destructor joins its thread pool's workers at exit();
  -- in a child those are the parent's, absent: the child crashed (SIGSEGV)
  -- at os.exit once the parent had used the pool (green.fs does).
  it("lets a child exit after the parent used libuv's thread pool",
     function()
    local path = os.tmpname()
    check(([[
local f = assert(green.fs.open(%q, "w"))
assert(f:write("x"))
assert(f:close())
local pid = green.fork()
if pid == 0 then io.write("child's buffered line\n"); os.exit(5) end
print(green.process.wait(pid, 30))
os.exit(0)
]]):format(path), "child's buffered line\nexit\t5\n")
    os.remove(path)
  end)

  -- Seed 003, problem 1: after fork the child ran the parent's listening
  -- loop. A thread that loops on a timer and one blocked on a socket read
  -- in the parent never run in the child; the parent's keep running.
  it("the child does not run the parent's loops or wake its waiters",
     function()
    check([[
local ticks, got = 0, {}
local ticker = green.spawn(function()
  while true do ticks = ticks + 1; green.sleep(0.001) end
end)
local srv = assert(green.listen("127.0.0.1", 0))
local _, port = srv:getsockname()
local feed = assert(green.connect("127.0.0.1", port))
local peer = assert(srv:accept())
local listener = green.spawn(function()  -- the "redis listening thread"
  while true do
    local line = peer:receive("*l")
    if not line then return end
    got[#got + 1] = line
  end
end)
local ev = green.Event()
local waiter = green.spawn(function() ev:wait(); got[#got + 1] = "woken" end)
green.sleep(0.01)
local pid = green.fork()
if pid == 0 then
  local t0, g0 = ticks, #got
  -- wait for the parent's go-ahead: meanwhile the hub of the child runs
  local go = assert(green.connect("127.0.0.1", backport))
  go:settimeout(20)
  assert(go:sendall("ready\n"))
  local msg = go:receive("*l")
  ev:send(1)
  green.sleep(0.02)
  report(table.concat({msg, tostring(ticks == t0), tostring(#got == g0),
                       tostring(ticker:dead()), tostring(listener:dead()),
                       tostring(waiter:dead())}, " "))
  os.exit(0)
end
local go = assert(back:accept())
go:settimeout(20)
expect(go:receive("*l") == "ready", "ready")
-- lines sent now reach the parent's listener only: the child has no
-- reader, and its loop must not read ahead on the parent's socket
for i = 1, 50 do assert(feed:sendall("line " .. i .. "\n")) end
local deadline = green.now() + 20
while #got < 50 and green.now() < deadline do green.sleep(0.001) end
expect(#got == 50, "parent got " .. #got .. " of 50 lines")
expect(got[50] == "line 50", "in order")
local t0 = ticks
assert(go:sendall("go\n"))
print(collect())
expect(not waiter:dead(), "the parent's waiter is still waiting")
expect(ticks > t0, "the parent's ticker ticks")
ev:send(1)
waiter:wait()
print(got[51])
os.exit(0)
]], "go true true true true true\nwoken\n")
  end)

  it("buries the parent's threads as killed, without running their cleanup",
     function()
    check([[
local ev = green.Event()
local cleaned = false
local t = green.spawn(function()
  local _ <close> = setmetatable({}, {
    __close = function() cleaned = true end })
  ev:wait()
end)
green.sleep(0)
if green.fork() == 0 then
  report(table.concat({tostring(t:dead()), tostring(cleaned),
    tostring(t:wait() == green.GreenletExit)}, " "))
  os.exit(0)
end
print(collect())
ev:send(1); t:wait()
print(cleaned)
os.exit(0)
]], "true false true\ntrue\n")
  end)

  it("leaves no timer of the parent's in the child", function()
    check([[
local fired = false
green.spawn_after(0.05, function() fired = true end)
local inner = green.spawn(function()
  pcall(green.with_timeout, 0.05, function() green.sleep(10) end)
end)
green.sleep(0)
if green.fork() == 0 then
  local s = green.core.stats()
  green.sleep(0.2) -- well past both deadlines: nothing fires
  report(tostring(fired) .. " " .. tostring(inner:dead()) .. " " .. s.timers)
  os.exit(0)
end
print(collect())
os.exit(0)
]], "false true 0\n")
  end)

  it("runs on_fork hooks in the child only, in order, a failing one reported",
     function()
    local out, err, code = run([[
local seen = {}
green.on_fork(function() seen[#seen + 1] = "a" end)
green.on_fork(function() error("hook b fails") end)
green.on_fork(function() seen[#seen + 1] = "c" end)
if green.fork() == 0 then report(table.concat(seen, ",")); os.exit(0) end
print(collect())
print(#seen)
os.exit(0)
]])
    assert.are.equal(0, code, err)
    assert.are.equal("a,c\n0\n", out)
    assert.matches("on_fork hook failed: [^\n]*hook b fails", err)
    assert.has_error(function() require("green").on_fork(42) end)
  end)

  it("gives the child working sockets, pools, resolver and listener",
     function()
    check([[
-- The parent listens but never accepts: only the child does. The
-- parent's hub runs all along (it waits for the child's report), and
-- must not take a connection from the listening socket itself.
local srv = assert(green.listen("127.0.0.1", 0))
local _, port = srv:getsockname()
green.getaddrinfo("localhost") -- the resolver has a channel now
local pid = green.fork()
if pid == 0 then
  local pool = green.GreenPool(4)
  local served = 0
  for _ = 1, 20 do
    local c = assert(srv:accept())
    pool:spawn(function()
      c:settimeout(20)
      local l = c:receive("*l")
      c:send(l:upper() .. "\n")
      c:close()
      served = served + 1
    end)
  end
  pool:waitall()
  local addrs = green.getaddrinfo("localhost")
  report(served .. " " .. tostring(#addrs > 0))
  os.exit(0)
end
local answers = {}
local pile = green.GreenPile(5)
for i = 1, 20 do
  pile:spawn(function()
    local c = assert(green.connect("127.0.0.1", port))
    c:settimeout(20)
    assert(c:send("hi " .. i .. "\n"))
    return c:receive("*l")
  end)
end
for a in pile:results() do answers[#answers + 1] = a end
table.sort(answers)
print(#answers, answers[1])
print(collect())
os.exit(0)
]], "20\tHI 1\n20 true\n")
  end)

  -- A task runs on a worker at the fork: the worker is not in the child;
  -- the caller there is buried with the others, and the child's pool
  -- starts workers of its own. The parent's task finishes in the parent.
  it("gives the child its own thread pool while the parent's task runs",
     function()
    check([[
local flag = os.tmpname()
os.remove(flag)
local function slow(path)
  local t0 = os.time()
  while os.time() - t0 < 20 do
    local f = io.open(path)
    if f then f:close(); return "parent task" end
  end
  return "gave up"
end
local caller = green.spawn(green.tpool.execute, slow, flag)
local t0 = green.now()
while green.tpool.stats().busy < 1 and green.now() - t0 < 20 do
  green.sleep(0.001)
end
expect(green.tpool.stats().busy == 1, "the task runs")
local pid = green.fork()
if pid == 0 then
  local ok, sum = pcall(green.tpool.execute,
                        function(a, b) return a + b end, 2, 3)
  local st = green.tpool.stats()
  report(tostring(ok) .. " " .. tostring(sum) .. " busy " .. st.busy
         .. " queued " .. st.queued .. " caller " .. caller:status())
  os.exit(0)
end
print(collect())
assert(io.open(flag, "w")):close()
print(caller:wait())
os.remove(flag)
os.exit(0)
]], "true 5 busy 0 queued 0 caller dead\nparent task\n")
  end)

  -- A sendall suspended with bytes queued in libuv at the fork: the
  -- child's loop must not send them a second time (the stream would
  -- carry them twice).
  it("does not send the parent's queued writes again", function()
    check([[
local N = 4 * 1024 * 1024
local parts = {}
for i = 1, N // 16 do parts[i] = string.format("%015d\n", i) end
local data = table.concat(parts)
local srv = assert(green.listen("127.0.0.1", 0))
local _, port = srv:getsockname()
local out = assert(green.connect("127.0.0.1", port))
local inp = assert(srv:accept())
local sender = green.spawn(function() assert(out:sendall(data)) end)
helper_until = function(c) local d = green.now() + 20
  while not c() and green.now() < d do green.sleep(0.001) end end
helper_until(function() return select(2, sender:status()) ~= nil end)
local pid = green.fork()
if pid == 0 then
  -- run the child's loop while the peer drains, until told to stop
  local ctl = assert(green.connect("127.0.0.1", backport))
  ctl:settimeout(30)
  assert(ctl:sendall("ready\n"))
  ctl:receive("*l")
  os.exit(0)
end
local ctl = assert(back:accept())
ctl:settimeout(20)
expect(ctl:receive("*l") == "ready", "ready")
inp:settimeout(20)
inp:setlimit(2 * N)
local got = assert(inp:receive(N))
sender:wait()
inp:settimeout(0.2)
local extra = inp:receive(1)
ctl:sendall("stop\n")
print(#got == N, got == data, extra == nil)
os.exit(0)
]], "true\ttrue\ttrue\n")
  end)

  it("restarts blocking detection in the child", function()
    check([[
green.debug.hub_blocking_detection(true, 0.05)
if green.fork() == 0 then
  local reports = 0
  green.debug.on_blocking(function() reports = reports + 1 end)
  local other = green.spawn(function() green.sleep(0) end)
  local t0 = os.clock()
  while reports == 0 and os.clock() - t0 < 10 do end
  other:wait()
  report("reports " .. tostring(reports > 0))
  os.exit(0)
end
print(collect())
os.exit(0)
]], "reports true\n")
  end)

  it("from a green thread: the child ends once its threads are done",
     function()
    -- The main chunk waits in the parent; in the child, the main thread
    -- is gone: the child exits 0 when the forking thread (and what it
    -- spawned) ends, 1 if the forking thread died of an error.
    check([[
local function child_of(body)
  local done = green.Event()
  green.spawn(function()
    local pid = green.fork()
    if pid == 0 then body(); return end
    done:send(pid)
  end)
  return done:wait()
end
local pid = child_of(function()
  green.spawn(function() green.sleep(0.01); report("spawned ran") end)
end)
print(collect())
-- the child holds a connection to the parent until it exits, so the
-- parent knows when its error report is written
KEEP = {}
pid = child_of(function()
  KEEP[1] = assert(green.connect("127.0.0.1", backport))
  assert(KEEP[1]:sendall("about to fail\n"))
  error("boom")
end)
local lifeline = assert(back:accept())
lifeline:settimeout(20)
print(lifeline:receive("*l"))
local _, err = lifeline:receive("*a")
expect(err == "closed", "the child's exit closes it: " .. tostring(err))
print("main goes on in the parent only")
os.exit(0)
]], "spawned ran\nabout to fail\nmain goes on in the parent only\n", false,
       "^green: GreenThread %d+ %(spawned at [^\n]*%) died of an error:\n"
       .. "[^\n]*: boom\n")
  end)

  it("from the main thread under stock lua5.4", function()
    check([[
local t = green.spawn(function() green.sleep(30) end)
green.sleep(0)
local pid = green.fork()
if pid == 0 then
  report("child " .. tostring(t:dead()))
  os.exit(0)
end
print(collect())
t:kill()
]], "child true\n", true)
  end)

  it("refuses to fork from a finalizer", function()
    check([[
local msg
setmetatable({}, { __gc = function()
  msg = select(2, pcall(green.fork))
end })
collectgarbage()
collectgarbage()
print(msg and msg:match("finalizer") ~= nil)
os.exit(0)
]], "true\n")
  end)
end)


describe("green.fork and the green.http client", function()
  -- A take waiting, the pool's watcher alive: in the child they are gone
  -- without their <close> (the pool counted the take as waiting for good,
  -- and made a watcher of the child's first streamed response, which
  -- ticked while it was out: the child never ended).
  it("the child has no take of the parent's waiting, and ends while it "
     .. "keeps a streamed response", function()
    check([[
local srv = assert(green.listen("127.0.0.1", 0))
local _, port = srv:getsockname()
local gt = green.spawn(green.http.serve, srv, function(req)
  return 200, {}, req.path .. (":"):rep(100000)
end)
local url = "http://127.0.0.1:" .. port
local client = green.http.Client { max_per_host = 1 }
local r = assert(client:request { url = url .. "/a", stream = true,
                                  timeout = 20 })
local p = client.pools[next(client.pools)]
local w = green.spawn(client.request, client, { url = url .. "/w",
                                                timeout = 20 })
for _ = 1, 1000 do
  if p.sem:waiting() == 1 and p.watcher then break end
  green.sleep(0.001)
end
expect(p.sem:waiting() == 1 and p.watcher, "a take waits, watched")
local pid = green.fork()
if pid == 0 then
  r:close() -- (the child's copy)
  expect(p.sem:waiting() == 0, "no take waits in the child")
  KEPT = assert(client:request { url = url .. "/c", stream = true,
                                 timeout = 20 })
  expect(not p.watcher or p.watcher:dead(), "no watcher in the child")
  return -- ends with the response kept
end
r:close()
local got = assert(w:wait())
expect(got.body:sub(1, 2) == "/w", "the parent's take")
print(green.process.wait(pid, 30))
srv:close()
gt:wait()
]], "exit\t0\n")
  end)

  -- libuv unlinks the path a pipe handle was bound to when the handle
  -- closes: the child's copy of the parent's handle, closed at the fork,
  -- removed the parent's socket file, and nobody could connect to it
  it("leaves the parent's Unix socket file to the parent", function()
    check([[
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -m 700 " .. dir))
local path = dir .. "/s.sock"
local srv = assert(green.listen_unix(path))
srv:settimeout(20)
local pid = green.fork()
if pid == 0 then srv:close(); report("child"); os.exit(0) end
print(collect())
print(green.process.wait(pid, 30))
local c, err = green.connect_unix(path, { timeout = 20 })
print(c and "reached" or err)
if c then
  assert(srv:accept()):close()
  c:close()
end
srv:close()
print(os.execute("test -e " .. path) and "left" or "removed")
os.execute("rm -rf " .. dir)
os.exit(0)
]], "child\nexit\t0\nreached\nremoved\n")
  end)

  it("a child forked while green.signal's spawner is between batches runs "
     .. "its own handlers (the parent's spawner was taken for its own)",
     function()
    check([[
local kill = function(pid, sig)
  assert(green.process.run { "kill", "-" .. sig, tostring(pid) })
end
local handles, forked, done = {}, false, green.Event()
for i = 1, 100 do -- more than one batch of handler threads
  handles[i] = green.signal("USR2", function()
    if forked then return end
    forked = true -- the first batch runs: the spawner waits for its turn
    local pid = green.fork()
    if pid ~= 0 then
      print(select(2, green.process.wait(pid, 20)))
      done:send(true)
      return
    end
    for j = 1, #handles do handles[j]:cancel() end
    local got = green.Event()
    local h = green.signal("USR1", function() got:send(true) end)
    kill(green.process.getpid(), "USR1")
    expect(got:wait(10), "the child's handler did not run")
    h:cancel()
    os.exit(0)
  end)
end
kill(green.process.getpid(), "USR2")
expect(done:wait(30), "the parent's handlers did not run")
for i = 1, #handles do handles[i]:cancel() end
]], "0\n")
  end)
end)
