-- When Lua skips a finalizer (docs/internals.md, "When Lua skips a
-- finalizer"): Lua 5.4 skips the __gc that a collection step calls in a
-- thread whose stack is at its limit, and frees the userdata at the next
-- cycle without it. Each script here makes objects of one binding, drops
-- them, makes Lua skip their finalizers (stderr shows "error in __gc",
-- which each spec asserts: the case did happen) and frees them, then
-- exercises the C side that used to write through a pointer into the
-- freed userdata or lose its resources: the end of the hub (lua_close),
-- green.fork's child, a child process ending, a signal, lingering writes,
-- and the sweep that gives back orphaned records during the run
-- (bindings/box.c). Under AddressSanitizer (GREENLUA_BUILD=./build-asan,
-- .ci/run) the scripts failed before: heap-use-after-free or
-- LeakSanitizer reports.
local h = require "helper"
local S = require "tls_support"

-- Shared by every script. MODE is set before it.
local PRELUDE = [[
warn("@on")
local green = require "green"
local core = green.core
green.debug.hub_blocking_detection(false) -- (the deep recursion takes 1 s)
-- The hub's timer sweeps (bindings/box.c) only in the "idle" scripts:
-- the others check what becomes of orphans no sweep finds, or sweep.
core.box_timer(MODE == "idle")

-- Make the objects that make() makes and drops lose their finalizers:
-- run make() with the collector stopped; recurse in a green thread until
-- its stack overflows, the collector restarted (generational: its next
-- step is a whole young collection, which calls every pending
-- finalizer) just below the limit, where the stack no longer grows. The
-- first step is then the one the "stack overflow" error's message makes,
-- at the limit: every finalizer it calls fails ("error in __gc"). Then
-- two full collections free the userdata.
-- Orphans given back before the last skip_gc (the hub's timer may sweep
-- as soon as it ends).
local orphans0
local function skip_gc(make)
  orphans0 = core.boxes().orphans
  green.spawn(function()
    local depth = 0
    local function probe(n) depth = n; return 1 + probe(n + 1) end
    pcall(probe, 1)
    local at = depth - 1000
    local function f(n)
      if n == at then collectgarbage("restart") end
      return 1 + f(n + 1)
    end
    collectgarbage() -- (shrinks this thread's stack again)
    collectgarbage("generational")
    collectgarbage("stop")
    make()
    pcall(f, 1)
    collectgarbage("incremental")
    collectgarbage("restart")
    collectgarbage()
    collectgarbage()
  end):wait()
end

-- Make boxes (closed UDP sockets) until the sweep has run: the records
-- orphaned before are given back.
local function sweep()
  local n = 2 * (core.boxes().owned + 64)
  for _ = 1, n do assert(green.udp()):close() end
end

-- The signals this process catches (SigCgt in /proc/self/status).
local function caught(signum)
  for l in io.lines("/proc/self/status") do
    local hex = l:match("^SigCgt:%s*(%x+)")
    if hex then
      return (tonumber(hex, 16) >> (signum - 1)) & 1 == 1
    end
  end
end

-- Poll 'cond' (bounded: 30 s).
local function eventually(cond, what)
  local limit = green.now() + 30
  while not cond() do
    assert(green.now() < limit, what)
    green.sleep(0.01)
  end
end
]]

local function script(body, mode, args)
  return "local MODE = " .. ("%q"):format(mode) .. "\n"
    .. "local ARGS = " .. ("%q"):format(args or "") .. "\n"
    .. PRELUDE .. body
end

-- Run 'body' in mode 'mode' under the greenlua command (or stock lua5.4):
-- it must end with 0 and print "ok", after at least 'n' skipped
-- finalizers, with no sanitizer report.
local function check(body, mode, n, stock, args)
  local src = script(body, mode, args)
  local out, err, code
  if stock then
    out, err, code = h.lua54_run(src, 240)
  else
    out, err, code = h.greenlua_run(src, nil, 240)
  end
  assert.are.equal(0, code, err)
  assert.matches("ok\n$", out)
  local _, k = err:gsub("error in __gc", "")
  assert.is_true(k >= n, ("%d skipped finalizers, %d expected\n%s"):format(
    k, n, err))
  assert.not_matches("Sanitizer", err)
  return out, err
end


-- {==================================================================
-- Sockets: TCP (client and accepted), listening, UDP, Unix, lingering.

local SOCKETS = [[
local srv = assert(green.listen("127.0.0.1", 0))
local _, port = srv:getsockname()
local path = os.tmpname()
os.remove(path)
local usrv = assert(green.listen_unix(path))
local peers = {}    -- each reads "x" then the end once its other end closes
-- Nine sockets, their finalizers skipped:
local lpeer, sent   -- the peer of a socket closed with writes queued
skip_gc(function()
  for _ = 1, 3 do   -- clients
    local c = assert(green.connect("127.0.0.1", port))
    peers[#peers + 1] = assert(srv:accept())
    assert(c:send("x"))
  end
  for _ = 1, 2 do   -- accepted sockets
    local c = assert(green.connect("127.0.0.1", port))
    assert(assert(srv:accept()):send("x"))
    peers[#peers + 1] = c
  end
  local u = assert(green.connect_unix(path))
  peers[#peers + 1] = assert(usrv:accept())
  assert(u:send("x"))
  assert(green.listen("127.0.0.1", 0))                      -- listening
  assert(assert(green.udp()):setsockname("127.0.0.1", 0))   -- UDP
  local l = assert(green.connect("127.0.0.1", port))
  lpeer = assert(srv:accept())
  l:settimeout(0)   -- more than the kernel takes: the rest is queued
  local big = ("z"):rep(8 << 20)
  local i, err, last = l:send(big)
  sent = i or last
  assert(sent > 0 and sent < #big, err)
end)
if MODE == "sweep" or MODE == "idle" then
  -- The sweep closes them as their __gc would have: each peer reads
  -- the end, and the lingering one everything that send accepted. Idle:
  -- no box is made any more (receive, sleep and core.boxes make none):
  -- the hub's timer sweeps.
  local before = orphans0
  if MODE == "sweep" then sweep() end
  for _, p in ipairs(peers) do
    p:settimeout(30)
    assert(p:receive(1) == "x")
    local r, err = p:receive(1)
    assert(r == nil and err == "closed", err)
  end
  lpeer:settimeout(30)
  local got = 0
  repeat
    local d, err, part = lpeer:receive(65536)
    got = got + #(d or part)
  until not d
  assert(got == sent, got .. " of " .. sent)
  assert(core.boxes().orphans - before == 9, "orphans given back")
elseif MODE == "fork" then
  -- The child gives every socket a new record: the parent's orphans
  -- too; then a sweep there gives those back.
  local pid = assert(green.fork())
  if pid == 0 then
    for _, p in ipairs(peers) do
      p:settimeout(30)
      assert(p:receive(1) == "x")
      assert(p:send("y"))
    end
    sweep()
    os.exit(core.boxes().orphans == 9 and 0 or 3)
  end
  local how, st = green.process.wait(pid)
  assert(how == "exit" and st == 0, tostring(how) .. " " .. tostring(st))
  for _, p in ipairs(peers) do -- (read ahead here already: both have it)
    p:settimeout(30)
    assert(p:receive(1) == "x")
  end
end
for _, p in ipairs(peers) do p:close() end
lpeer:close()
srv:close()
usrv:close()
os.remove(path)
print("ok")
]]

describe("sockets whose __gc Lua skipped", function()
  it("are closed at the end (greenlua: LeakSanitizer before)", function()
    check(SOCKETS, "end", 9)
  end)

  it("are closed at lua_close under stock lua5.4", function()
    check(SOCKETS, "end", 9, true)
  end)

  it("are closed by the sweep during the run, lingering writes sent",
     function()
    check(SOCKETS, "sweep", 9)
  end)

  it("are closed by the hub's timer when no box is made any more (they "
     .. "stayed open before)", function()
    check(SOCKETS, "idle", 9)
  end)

  it("get their new records in green.fork's child (heap-use-after-free "
     .. "before)", function()
    check(SOCKETS, "fork", 9)
  end)
end)

-- }==================================================================


-- {==================================================================
-- Processes: running (with pipes), exited and reaped, ending later.

local PROCESSES = [[
local pids = {}
skip_gc(function()
  local p = assert(green.process.spawn{ "cat", stdin = "pipe",
                                        stdout = "pipe" })
  pids[#pids + 1] = p.pid     -- ends when its stdin (an orphan) closes
  local q = assert(green.process.spawn{ "true" })
  assert(q:wait())            -- reaped: its record waits for its __gc
  local r = assert(green.process.spawn{ "sleep", "0.2" })
  pids[#pids + 1] = r.pid     -- ends after the skip: SIGCHLD
end)
local function reaped(pid) -- not even a zombie
  local f = io.open("/proc/" .. pid .. "/stat")
  if f then f:close() end
  return f == nil
end
if MODE == "sweep" then
  local before = orphans0
  sweep()
  assert(core.boxes().orphans - before >= 3, "orphans given back")
  for _, pid in ipairs(pids) do
    eventually(function() return reaped(pid) end, "reaped " .. pid)
  end
elseif MODE == "exit" then
  -- The children end (SIGCHLD, the reaper) with their Process gone.
  eventually(function() return reaped(pids[2]) end, "reaped")
  assert(core.kill_pid(pids[1], 15))
  eventually(function() return reaped(pids[1]) end, "reaped")
elseif MODE == "fork" then
  local pid = assert(green.fork())
  if pid == 0 then
    sweep()
    os.exit(0)
  end
  local how, st = green.process.wait(pid)
  assert(how == "exit" and st == 0, tostring(how) .. " " .. tostring(st))
  assert(core.kill_pid(pids[1], 15))
  eventually(function() return reaped(pids[1]) end, "reaped")
end
print("ok")
]]

describe("processes whose __gc Lua skipped", function()
  it("leave no write into freed memory at the end (heap-use-after-free "
     .. "before)", function()
    check(PROCESSES, "end", 3)
  end)

  it("leave none at lua_close under stock lua5.4", function()
    check(PROCESSES, "end", 3, true)
  end)

  it("are reaped when their children end", function()
    check(PROCESSES, "exit", 3)
  end)

  it("are given back by the sweep, their pipes closed, their children "
     .. "reaped", function()
    check(PROCESSES, "sweep", 3)
  end)

  it("are forgotten in green.fork's child", function()
    check(PROCESSES, "fork", 3)
  end)
end)

-- }==================================================================


-- {==================================================================
-- Signal handles (green.core's watches: green.signal's dispatcher keeps
-- its own reachable while it runs).

local SIGNALS = [[
skip_gc(function()
  core.signal_watch("USR1", false)
  core.signal_watch("USR2", true)
end)
assert(caught(10) and caught(12))
if MODE == "signal" then
  -- A delivery to a watch whose handle is gone: counted, nobody takes it;
  -- a wait beside it gets it.
  local t = green.spawn(green.signal.wait, "USR1", 30)
  repeat green.sleep(0) until select(2, t:status()) == "green.signal.wait"
  assert(core.kill_pid(core.getpid(), 10))
  assert(core.kill_pid(core.getpid(), 12))
  assert(t:wait() == 10)
elseif MODE == "sweep" then
  local before = orphans0
  sweep()
  assert(core.boxes().orphans - before >= 2, "orphans given back")
  assert(not caught(10) and not caught(12), "dispositions back")
elseif MODE == "fork" then
  local pid = assert(green.fork())
  if pid == 0 then
    os.exit((not caught(10) and not caught(12)) and 0 or 3)
  end
  local how, st = green.process.wait(pid)
  assert(how == "exit" and st == 0, tostring(how) .. " " .. tostring(st))
end
print("ok")
]]

describe("signal watches whose __gc Lua skipped", function()
  it("are cancelled at the end (heap-use-after-free before)", function()
    check(SIGNALS, "end", 2)
  end)

  it("are cancelled at lua_close under stock lua5.4", function()
    check(SIGNALS, "end", 2, true)
  end)

  it("take deliveries harmlessly", function()
    check(SIGNALS, "signal", 2)
  end)

  it("are cancelled by the sweep (the dispositions come back)", function()
    check(SIGNALS, "sweep", 2)
  end)

  it("are cancelled in green.fork's child (heap-use-after-free before)",
     function()
    check(SIGNALS, "fork", 2)
  end)
end)

-- }==================================================================


-- {==================================================================
-- Files: buffered writes are flushed, the descriptor closed.

local FILES = [[
local path = ARGS
skip_gc(function()
  local f = assert(green.fs.open(path, "w"))
  assert(f:write("hello, "))          -- buffered: not written yet
  local g = assert(green.fs.open(path .. ".2", "w"))
  assert(g:write("world"))
end)
local function content(p)
  local f = assert(io.open(p))
  local s = f:read("a")
  f:close()
  return s
end
assert(content(path) == "")
if MODE == "sweep" then
  local before = orphans0
  sweep()
  assert(core.boxes().orphans - before >= 2, "orphans given back")
  eventually(function()
    return content(path) == "hello, " and content(path .. ".2") == "world"
  end, "flushed")
end
print("ok")
]]

describe("files whose __gc Lua skipped", function()
  local function contents(path)
    local f = assert(io.open(path))
    local s = f:read("a")
    f:close()
    return s
  end

  for _, case in ipairs {
    { "are flushed and closed at the end (their writes were lost)", "end" },
    { "are flushed and closed at lua_close under stock lua5.4", "end",
      true },
    { "are flushed and closed by the sweep", "sweep" },
  } do
    it(case[1], function()
      local path = os.tmpname()
      finally(function()
        os.remove(path)
        os.remove(path .. ".2")
      end)
      check(FILES, case[2], 2, case[3], path)
      assert.are.equal("hello, ", contents(path))
      assert.are.equal("world", contents(path .. ".2"))
    end)
  end
end)

-- }==================================================================


-- {==================================================================
-- TLS connections and contexts, WebSocket contexts.

local TLS = [[
local dir = ARGS
skip_gc(function()
  local srv = assert(green.listen("127.0.0.1", 0, { tls = {
    certificate = dir .. "/leaf.pem", key = dir .. "/leaf.key" } }))
  local _, port = srv:getsockname()
  local t = green.spawn(function()
    local s = assert(srv:accept())
    assert(s:handshake())
    assert(s:send("hi"))
  end)
  local c = assert(green.connect("127.0.0.1", port, { tls = {
    cafile = dir .. "/ca.pem", server_name = "localhost" } }))
  assert(c:receive(2) == "hi")
  t:wait()
  assert(green.tls.context { cafile = dir .. "/ca.pem" })
  for _ = 1, 3 do
    local w = core.ws_new(false, 1 << 20)
    assert(core.ws_send(w, "text", "hello"))
  end
end)
if MODE == "sweep" then
  local before = orphans0
  sweep()
  assert(core.boxes().orphans - before >= 8, "orphans given back")
end
print("ok")
]]

describe("TLS and WebSocket records whose __gc Lua skipped", function()
  local dir
  setup(function() dir = S.certs() end)
  teardown(function() S.cleanup(dir) end)

  it("are freed at the end (LeakSanitizer before)", function()
    check(TLS, "end", 8, false, dir)
  end)

  it("are freed at lua_close under stock lua5.4", function()
    check(TLS, "end", 8, true, dir)
  end)

  it("are freed by the sweep", function()
    check(TLS, "sweep", 8, false, dir)
  end)
end)

-- }==================================================================


-- {==================================================================
-- HTTP parsers: a client whose kept connections are dropped with it,
-- a WebSocket handshake, a server's connection (the server frees its
-- parsers' buffers at the connection's end; the record is the box's).

local HTTP = [[
skip_gc(function()
  local srv = assert(green.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local gt = green.spawn(green.http.serve, srv, function(req)
    return 200, { ["x-long"] = ("v"):rep(600) }, req.path
  end)
  local client = green.http.Client()
  for i = 1, 3 do -- each keeps its connection (and its parser) idle
    local r = assert(client:request { url = "http://127.0.0.1:" .. port
                                        .. "/" .. i })
    assert(r.status == 200 and r.body == "/" .. i)
  end
  srv:close()
  gt:wait()
  -- the client and its idle connections are dropped unclosed
end)
if MODE == "sweep" then
  local before = orphans0
  sweep()
  assert(core.boxes().orphans - before >= 3, "orphans given back")
end
print("ok")
]]

describe("HTTP parsers whose __gc Lua skipped", function()
  it("are freed at the end (LeakSanitizer before)", function()
    check(HTTP, "end", 3)
  end)

  it("are freed at lua_close under stock lua5.4", function()
    check(HTTP, "end", 3, true)
  end)

  it("are freed by the sweep", function()
    check(HTTP, "sweep", 3)
  end)
end)

-- }==================================================================


-- {==================================================================
-- green.http's streamed responses: the lease on a connection in use gives
-- its pool's slot (max_per_host) back in its __gc; skipped, the slot was
-- lost for good, and a pool of one waited for it forever (or timed out).

local HTTP_STREAM = [[
local srv = assert(green.listen("127.0.0.1", 0))
local _, port = srv:getsockname()
local gt = green.spawn(green.http.serve, srv, function(req)
  return 200, {}, req.path .. (":"):rep(9000)
end)
local url = "http://127.0.0.1:" .. port
local client = green.http.Client { max_per_host = 1 }
skip_gc(function()
  -- read a piece, then dropped: its lease holds the only slot
  local r = assert(client:request { url = url .. "/a", stream = true })
  assert(r.status == 200 and r:body_reader()(r))
end)
-- The lost slot is back (this timed out before).
local r, err = client:request { url = url .. "/b", timeout = 30 }
assert(r and r.body == "/b" .. (":"):rep(9000), err)
-- Once: the pool still holds one connection at most.
r = assert(client:request { url = url .. "/c", stream = true })
local r2
r2, err = client:request { url = url .. "/d", timeout = 0.05 }
assert(r2 == nil and err == "timeout", err)
r:close()
r = assert(client:request { url = url .. "/e", timeout = 30 })
assert(r.body == "/e" .. (":"):rep(9000))
-- A lease collected with its __gc gives its unit back once.
r = assert(client:request { url = url .. "/f", stream = true })
r = nil
collectgarbage()
collectgarbage()
r = assert(client:request { url = url .. "/g", stream = true,
                            timeout = 30 })
r2, err = client:request { url = url .. "/h", timeout = 0.05 }
assert(r2 == nil and err == "timeout", err)
r:close()
if MODE == "sweep" then -- its socket and parser: orphans
  local before = orphans0
  sweep()
  assert(core.boxes().orphans - before >= 2, "orphans given back")
end
client:close()
srv:close()
gt:wait()
print("ok")
]]

-- The client's other guards (the unit while a connection is made, the
-- lease while a request runs) are to-be-closed variables: Lua calls a
-- __close once the error's frames are gone, off the stack's limit, so
-- none is skipped where a __gc is.
local CLOSES = [[
local function deep(n) if n == 0 then return 0 end return 1 + deep(n - 1) end
local made, closed = 0, 0
local mt = { __close = function() deep(100); closed = closed + 1 end }
local function lua_limit(n)
  local _ <close> = setmetatable({}, mt)
  made = made + 1
  local r = lua_limit(n + 1)
  return r
end
local function c_limit(n)
  local _ <close> = setmetatable({}, mt)
  made = made + 1
  local _, e = pcall(c_limit, n + 1)
  error(e, 0)
end
green.spawn(function()
  for _, f in ipairs { lua_limit, c_limit } do
    made, closed = 0, 0
    local ok, err = pcall(f, 1)
    assert(not ok and err:find("stack overflow"), err)
    assert(made > 100 and closed == made, closed .. " of " .. made)
  end
end):wait()
print("ok")
]]

-- A request that waits for the slot as its lease loses its __gc.
local HTTP_WAITING = [[
local srv = assert(green.listen("127.0.0.1", 0))
local _, port = srv:getsockname()
local gt = green.spawn(green.http.serve, srv, function(req)
  return 200, {}, req.path .. (":"):rep(9000)
end)
local url = "http://127.0.0.1:" .. port
local client = green.http.Client { max_per_host = 1 }
local waiter
skip_gc(function()
  local r = assert(client:request { url = url .. "/a", stream = true })
  assert(r.status == 200 and r:body_reader()(r))
  waiter = green.spawn(client.request, client, { url = url .. "/b",
                                                 timeout = 30 })
  repeat green.sleep(0) until select(2, waiter:status())
                              == "Semaphore:acquire"
end)
-- It gets the slot (it timed out before).
local r, err = waiter:wait()
assert(r and r.body == "/b" .. (":"):rep(9000), err)
client:close()
srv:close()
gt:wait()
print("ok")
]]

-- A request that began to wait for the slot before the streamed response
-- holding it had come (no lease was out then), whose lease then loses its
-- __gc. A second waiter behind it keeps its place.
local HTTP_WAITING_FIRST = [[
local srv = assert(green.listen("127.0.0.1", 0))
local _, port = srv:getsockname()
local slow, go = false, green.Event()
local gt = green.spawn(green.http.serve, srv, function(req)
  if req.path == "/slow" then
    slow = true
    go:wait()
  end
  return 200, {}, req.path .. (":"):rep(9000)
end)
local url = "http://127.0.0.1:" .. port
local client = green.http.Client { max_per_host = 1 }
local function waiting(t)
  return select(2, t:status()) == "Semaphore:acquire"
end
local order, first, second = {}
local function take(path)
  local r, err = client:request { url = url .. path, timeout = 30 }
  order[#order + 1] = path
  return r, err
end
skip_gc(function()
  first = green.spawn(function()
    repeat green.sleep(0) until slow -- the slot taken, no response yet
    return take("/b")
  end)
  green.spawn(function()
    repeat green.sleep(0) until waiting(first)
    second = green.spawn(take, "/c")
    repeat green.sleep(0) until waiting(second)
    go:send()
  end)
  local r = assert(client:request { url = url .. "/slow", stream = true })
  assert(r.status == 200 and r:body_reader()(r))
end)
-- Both get the slot in turn (the first timed out before).
local r, err = first:wait()
assert(r and r.body == "/b" .. (":"):rep(9000), err)
r, err = second:wait()
assert(r and r.body == "/c" .. (":"):rep(9000), err)
assert(order[1] == "/b" and order[2] == "/c", table.concat(order, " "))
client:close()
srv:close()
gt:wait()
print("ok")
]]

describe("to-be-closed variables at the stack's limit", function()
  it("are all closed (the client's unit and lease rely on it)", function()
    check(CLOSES, "end", 0)
  end)
end)

describe("green.http streamed responses whose lease's __gc Lua skipped",
         function()
  it("give their slot back to the pool (a request timed out before)",
     function()
    check(HTTP_STREAM, "end", 1)
  end)

  it("give it back under stock lua5.4", function()
    check(HTTP_STREAM, "end", 1, true)
  end)

  it("leave their socket and parser to the sweep", function()
    check(HTTP_STREAM, "sweep", 1)
  end)

  it("give it to a request already waiting for it", function()
    check(HTTP_WAITING, "end", 1)
  end)

  it("give it to requests that began to wait before the lease was made, "
     .. "in their order (the first timed out before)", function()
    check(HTTP_WAITING_FIRST, "end", 1)
  end)
end)

-- }==================================================================


-- {==================================================================
-- Prefork's heartbeat stamps (a shared mapping).

local STAMPS = [[
local function mappings() -- shared anonymous mappings
  local n = 0
  for l in io.lines("/proc/self/maps") do
    if l:find("/dev/zero (deleted)", 1, true) then n = n + 1 end
  end
  return n
end
local n0 = mappings()
skip_gc(function() assert(core.stamps(64)) end)
assert(mappings() == n0 + 1)
if MODE == "sweep" then
  sweep()
  assert(mappings() == n0, "unmapped")
end
print("ok")
]]

describe("prefork's stamps whose __gc Lua skipped", function()
  it("are unmapped at the end", function()
    check(STAMPS, "end", 1)
  end)

  it("are unmapped by the sweep (they stayed mapped before)", function()
    check(STAMPS, "sweep", 1)
  end)
end)

-- }==================================================================


-- {==================================================================
-- What has no record of its own behind a finalizer (thread pool jobs,
-- the resolver's queries, Timeouts, the watchdog): dropped around
-- skipped finalizers, they go on working.

local OTHERS = [[
local done = green.Event()
skip_gc(function()
  assert(green.tpool.execute(function(x) return x + 1 end, 1) == 2)
  assert(green.getaddrinfo("localhost"))
  green.Timeout(0.05)                 -- armed, dropped: it fires unseen
  green.spawn_after(0.05, function() done:send(true) end)
  setmetatable({}, { __gc = function() end }) -- (a finalizer to skip)
  green.debug.hub_blocking_detection(true, 5)
  green.debug.hub_blocking_detection(false)
end)
assert(done:wait(30))
assert(green.tpool.execute(function(x) return x * 2 end, 21) == 42)
assert(green.getaddrinfo("localhost"))
print("ok")
]]

describe("thread pool jobs, lookups, timers and the watchdog", function()
  it("go on working around skipped finalizers", function()
    check(OTHERS, "end", 1)
  end)
end)

-- }==================================================================
