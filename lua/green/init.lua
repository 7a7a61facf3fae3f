--- greenlua: eventlet's green threads for Lua 5.4.
-- `local green = require("green")`. The C core (`green.core`) provides the
-- hub, green threads, sleep, Timeout and the green-aware coroutine
-- functions; this module adds the parts written in Lua and is the API users
-- program against (see DESIGN.md, "The Lua API").
-- @module green

local core = require "green.core"
local gopts = require "green.opts"

local error, pcall, xpcall, type, tostring, setmetatable, getmetatable =
  error, pcall, xpcall, type, tostring, setmetatable, getmetatable
local pack, unpack, remove = table.pack, table.unpack, table.remove
local format = string.format
local traceback = debug.traceback

local spawn, getcurrent, extras = core.spawn, core.getcurrent, core.extras
local callable_arg = gopts.callable_arg

-- User coroutines inside green threads: replace the stock functions in
-- place, so code that looks them up through `coroutine` gets the green
-- versions (see bindings/coro.c).
for name, fn in pairs(core.coroutine) do
  coroutine[name] = fn -- luacheck: ignore 122
end

local green = {
  version = core.version,
  spawn = core.spawn,
  spawn_n = core.spawn_n,
  spawn_after = core.spawn_after,
  sleep = core.sleep,
  getcurrent = core.getcurrent,
  kill = core.kill,
  now = core.now,
  fork = core.fork,
  worker_id = require("green.prefork").worker_id,
  on_fork = core.on_fork,
  GreenletExit = core.GreenletExit,
  Timeout = core.Timeout,
  is_timeout = core.is_timeout,
  GreenThread = core.GreenThread,
  core = core,
}

local GreenThread = core.GreenThread

--- Where the thread was spawned, as "file:line", or nil.
local function site(gt)
  return core.site(gt)
end

--- A one-line description: id, name and spawn site.
local function describe(gt)
  local s = "GreenThread " .. tostring(gt.id)
  if gt.name then s = s .. format(" '%s'", gt.name) end
  local at = site(gt)
  if at then s = s .. " (spawned at " .. at .. ")" end
  return s
end

-- tostring that cannot fail: an error value's __tostring may raise, and
-- the report must still name the thread's own error (lua.c's wording).
local function safe_tostring(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return format("(error object is a %s value; its __tostring failed: %s)",
                type(v), ok and "it returned a " .. type(s) or tostring(s))
end

local function default_reporter(gt, err, tb, what)
  if what == "link" then
    io.stderr:write(format("green: a link callback of %s failed:\n%s\n",
                           describe(gt), safe_tostring(err)))
  elseif what == "http" then -- the thread goes on (lua/green/http/)
    io.stderr:write(format("green: an HTTP handler in %s failed:\n%s\n%s\n",
                           describe(gt), safe_tostring(err), tb or ""))
  else
    io.stderr:write(format("green: %s died of an error:\n%s\n%s\n",
                           describe(gt), safe_tostring(err), tb or ""))
  end
  io.stderr:flush()
end

local reporter = default_reporter

--- Replace the handler of errors that no wait() or link observes.
-- `handler(gt, err, traceback, what)` runs in the dying thread; `what` is
-- nil for the thread's own error and "link" for an error raised by one of
-- its link callbacks (the thread itself may have returned normally; `err`
-- then carries the link's traceback). nil restores the default, which
-- prints to stderr. Returns the previous handler.
-- @tparam[opt] function handler
-- @treturn function the previous handler
function green.on_error(handler)
  callable_arg(handler, 1, "on_error", 2, true)
  local old = reporter
  reporter = handler or default_reporter
  return old
end

-- Never raises: it runs where the thread's outcome is already stored and
-- its links are still to run. If even the default report fails (stderr
-- closed or replaced), the error goes unprinted.
local function report(gt, err, tb, what)
  local ok, herr = pcall(reporter, gt, err, tb, what)
  if not ok then
    pcall(function()
      default_reporter(gt, err, tb, what)
      io.stderr:write("green: and the error handler failed: ",
                      safe_tostring(herr), "\n")
    end)
  end
end

--- Internal: report an error through the reporter, as a thread's own
-- (green.http reports a handler's error so and goes on).
core.report = report

local END_LISTS = { "hooks", "links" } -- toolkit hooks run first

-- Run the link at ex.next, which moves past it first. Under the xpcall
-- that catches the link's error: a memory error in the call (its
-- arguments unpacked, its frame made) is the link's, reported, and the
-- next run of the end hook does not skip the link unrun.
local function next_link(ex, gt)
  local l = ex.running[ex.next]
  ex.next = ex.next + 1
  return l[1](gt, unpack(l, 2, l.n))
end

-- Runs inside a thread that has finished: report an error nobody
-- observes, then run the links (they may block).
-- Called again when it failed (for want of memory: bindings/thread.c), it
-- goes on from where it stopped: ex.running is the list it is in, kept
-- till the end (a key of its own for that grew the table: a rehash at
-- every pool thread's end).
core.set_thread_end(function(gt, unobserved)
  local ex = extras(gt)
  if unobserved and not ex.reported then
    report(gt, core.outcome(gt), ex.traceback)
    ex.reported = true
  end
  local running = ex.running
  for k = running ~= nil and running == ex[END_LISTS[2]] and 2 or 1, 2 do
    local links = ex[END_LISTS[k]]
    if links then
      -- A callback may add links (they run too) or unlink: ex.next is
      -- the position of the next one to run, which GreenThread.unlink
      -- moves back when it removes one before it.
      if ex.running ~= links or not ex.next then
        ex.running, ex.next = links, 1
      end
      while links[ex.next] do
        local ok, err = xpcall(next_link, traceback, ex, gt)
        if not ok then report(gt, err, nil, "link") end
      end
    end
  end
  ex.running, ex.next = nil, nil
end)

-- Append `fn(gt, ...)` to the list `field` ("links" or "hooks") of `gt`,
-- or call it at once if `gt` has ended.
local function add_end(gt, field, fn, ...)
  if gt:dead() then
    fn(gt, ...)
    return
  end
  local ex = extras(gt)
  local list = ex[field]
  if not list then
    list = {}
    ex[field] = list
  end
  list[#list + 1] = pack(fn, ...)
end

--- Internal: call `fn(gt, ...)` when `gt` ends, like a link, but without
-- counting as observing its error (a GreenPool tracks its threads so).
function core.on_end(gt, fn, ...)
  add_end(gt, "hooks", fn, ...)
end

-- Every GreenThread has the main thread's metatable.
local THREAD_MT = getmetatable(getcurrent())

local function checkthread(gt, fname)
  if getmetatable(gt) ~= THREAD_MT then
    error(format("calling '%s' on bad self (green.GreenThread expected, "
                 .. "got %s)", fname, type(gt)), 3)
  end
end

--- Call `fn(gt, ...)` when `gt` ends (at once if it has ended).
function GreenThread.link(gt, fn, ...)
  checkthread(gt, "link")
  callable_arg(fn, 1, "link", 2)
  add_end(gt, "links", fn, ...)
end

--- Remove the links to `fn`; true if there was one.
function GreenThread.unlink(gt, fn)
  checkthread(gt, "unlink")
  local ex = extras(gt)
  local links = ex.links
  local found = false
  if links then
    for i = #links, 1, -1 do
      if links[i][1] == fn then
        remove(links, i)
        found = true
        if ex.running == links and i < ex.next then -- see set_thread_end
          ex.next = ex.next - 1
        end
      end
    end
  end
  return found
end

-- Call the C function `f` for the public function `name`: called from
-- here its errors named this file's local and pointed at this file's
-- line. Called by pcall (a C function, so they carry no position), a
-- string error is raised again at `level`, counted as error counts from
-- here (the public function's caller: 2 if it tail-called call_as, else
-- 3), an argument error under `name`; a kill or a Timeout as it came.
local function call_as(name, level, f, ...)
  local ok, a, b = pcall(f, ...)
  if ok then return a, b end
  if type(a) == "string" then
    error((a:gsub("^bad argument (#%d+) to '[^']*'",
                  "bad argument %1 to '" .. name .. "'", 1)), level)
  end
  error(a, 0)
end

--- Run the hub. Without `fn`, until no thread, timer or server is left (from
-- a green thread: until every other thread is done or blocked for good).
-- With `fn`, spawn it and wait: its results, or its error raised.
function green.run(fn, ...)
  if fn == nil then
    return core.run()
  end
  callable_arg(fn, 1, "run", 2)
  local gt = spawn(fn, ...)
  core.observe(gt)
  return gt:wait()
end
core.internal(green.run)

--- Raise `err` in `seconds` at the current blocking call of `fn(...)`.
-- A bad `seconds` (or no green thread) raised where this file calls
-- Timeout, not at the caller: see call_as.
function green.with_timeout(seconds, fn, ...)
  callable_arg(fn, 2, "with_timeout", 2)
  local _ <close> = call_as("with_timeout", 3, core.Timeout, seconds)
  return fn(...)
end

--- Per-green-thread fields (eventlet's corolocal): each thread sees its
-- own values, which vanish when the thread dies.
local Local = { __name = "green.Local" }

local function storage(self, create)
  local cur = getcurrent()
  if cur == nil then
    error("green.Local: no green thread is running", 3)
  end
  local ex = extras(cur)
  local locals = ex.locals
  if not locals then
    if not create then return nil end
    locals = setmetatable({}, { __mode = "k" })
    ex.locals = locals
  end
  local d = locals[self]
  if not d and create then
    d = {}
    locals[self] = d
  end
  return d
end

function Local.__index(self, k)
  local d = storage(self, false)
  if d then return d[k] end
  return nil
end

function Local.__newindex(self, k, v)
  storage(self, true)[k] = v
end

function green.Local()
  return setmetatable({}, Local)
end

-- Lua-level blocking: the toolkit's primitives are built on these.
green.suspend, green.wake = core.suspend, core.wake

-- {=== toolkit exports (pools, queues, events, ...): lua/green/*.lua
do
  local semaphore = require "green.semaphore"
  local queue = require "green.queue"
  local looping = require "green.looping"
  green.Event = require("green.event").Event
  green.Semaphore = semaphore.Semaphore
  green.BoundedSemaphore = semaphore.BoundedSemaphore
  green.CappedSemaphore = semaphore.CappedSemaphore
  green.Queue = queue.Queue
  green.LightQueue = queue.LightQueue
  green.PriorityQueue = queue.PriorityQueue
  green.LifoQueue = queue.LifoQueue
  green.GreenPool = require("green.pool").GreenPool
  green.GreenPile = require("green.pile").GreenPile
  green.pools = require "green.pools"
  green.LoopingCall = looping.LoopingCall
  green.DynamicLoopingCall = looping.DynamicLoopingCall
  green.LoopingCallDone = looping.LoopingCallDone
end
-- }===

-- {=== socket exports: lua/green/serve.lua, lua/green/socket.lua (the
-- LuaSocket-compatible module, loaded on first use), lua/green/patch.lua,
-- bindings/socket*.c
do
  local serve = require "green.serve"
  local tls = require "green.tls"
  local check, connect_opts, listen_opts = gopts.check, gopts.connect,
    gopts.listen
  local cconnect, clisten = core.connect, core.listen
  -- opts.tls makes a TLS socket (lua/green/tls.lua, which checks the
  -- names); without it these are the C functions' calls.
  function green.connect(host, port, opts)
    if type(opts) == "table" then
      if opts.tls then return tls.connect(host, port, opts) end
      check(opts, connect_opts, 3, "connect", 2)
    end
    return call_as("connect", 2, cconnect, host, port, opts)
  end
  function green.listen(host, port, opts)
    if type(opts) == "table" then
      if opts.tls then return tls.listen(host, port, opts) end
      check(opts, listen_opts, 3, "listen", 2)
    end
    return call_as("listen", 2, clisten, host, port, opts)
  end
  green.tls = tls
  green.connect_unix = core.connect_unix
  green.listen_unix = core.listen_unix
  green.udp = core.udp
  green.select = core.select
  green.serve = serve.serve
  green.StopServe = serve.StopServe
  --- Install green.socket as `socket` and `socket.core` (see patch.lua).
  function green.patch(...)
    return require("green.patch").patch(...)
  end
  green.getaddrinfo = core.getaddrinfo
  green.getnameinfo = core.getnameinfo
  green.gethostname = core.gethostname
  --- green.resolver.setup{servers =, timeout =, tries =} configures the
  -- resolver; green.resolver.stats() counts its queries (bindings/dns.c).
  green.resolver = { setup = core.resolver_setup,
                     stats = core.resolver_stats }
  --- green.backdoor{host =, port =} or {path =}: a Lua prompt into this
  -- process over a socket (lua/green/backdoor.lua).
  function green.backdoor(...)
    return require("green.backdoor").backdoor(...)
  end
  green.debug = green.debug or {}
  green.debug.hub_prevent_multiple_readers = core.hub_prevent_multiple_readers
  --- green.http: HTTP/1.1 server and client, WebSocket (lua/green/http.lua
  -- loads its parts on first use).
  green.http = require "green.http"
end
-- }===

-- {=== introspection: lua/green/debug.lua, bindings/debug.c
do
  local gdebug = require "green.debug"
  --- green.backdoor{host =, port =} or {path =}: a Lua prompt into this
  -- process over a socket (lua/green/backdoor.lua).
  function green.backdoor(...)
    return require("green.backdoor").backdoor(...)
  end
  green.debug = green.debug or {}
  green.debug.threads = gdebug.threads
  green.debug.dump = gdebug.dump
  green.debug.stats = core.debug_stats
  green.debug.hub_blocking_detection = gdebug.hub_blocking_detection
  green.debug.on_blocking = gdebug.on_blocking
  green.debug.time_slice = gdebug.time_slice
  green.BlockingError = core.BlockingError
  green.atomic = gdebug.atomic
  -- Blocking detection is on by default (report mode, 1 s); the time
  -- slice is off. The watchdog leaves greenlua's own modules alone.
  core.watchdog{
    libdir = debug.getinfo(1, "S").source:match("^@(.*/)init%.lua$"),
    threshold = 1,
  }
end
-- }===

-- {=== off the hub: the thread pool, bindings/tpool.c
--- green.tpool.execute(fn, ...) runs fn(...) on a worker OS thread in its
-- own Lua state; green.tpool.setup{threads = n}; green.tpool.stats().
green.tpool = { execute = core.tpool_execute, setup = core.tpool_setup,
                stats = core.tpool_stats }

-- {=== files off the hub: lua/green/fs.lua, bindings/fs.c, fspath.c
green.fs = require "green.fs"

-- {=== processes and signals: lua/green/process.lua, lua/green/signal.lua,
-- bindings/process.c, bindings/signal.c
green.process = require "green.process"
green.signal = require "green.signal"
-- }===

return green
