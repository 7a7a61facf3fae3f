--- green.signal: POSIX signals, handled in green threads.
--
-- `green.signal(sig, handler)` registers `handler`: each delivery of
-- `sig` runs `handler(signum)` in a new green thread, so a handler may
-- block, and a delivery that comes while an earlier handler still runs
-- gets a thread of its own (the kernel merges deliveries of one signal
-- that come before the hub has read the first: those run once). It
-- returns a SignalHandle; `handle:cancel()` (or `<close>`) unregisters it,
-- and the signal's disposition from before comes back once no handle
-- watches it. `green.signal.wait(sig, [timeout])` blocks the caller until
-- `sig` is delivered.
--
-- A registered handler never keeps a finished program alive: the hub goes
-- idle once every other green thread is done. It keeps the hub alive while
-- some other thread is blocked, since a signal may be what wakes it (see
-- bindings/signal.c). The watches are bindings/signal.c's; a handler's
-- deliveries are taken by one dispatcher thread per handle, which spawns
-- the handler threads.
-- @module green.signal

local core = require "green.core"

local type, error, tostring = type, error, tostring
local spawn, signum_of, sleep = core.spawn, core.signum, core.sleep
local getpid = core.getpid
local watch, next_delivery = core.signal_watch, core.signal_next

-- The signal's number, or an error at the caller's caller.
local function checksig(sig, fname)
  local signum, err = signum_of(sig)
  if not signum then
    error("bad argument #1 to '" .. fname .. "' (" .. err .. ")", 3)
  end
  return signum
end

-- A watch of `signum` (bindings/signal.c); its refusal (SIGKILL, a fault,
-- a signal the C library keeps) raised at the line that called `level`
-- levels above (its message has no position of its own).
local function watch_at(signum, daemon, level)
  local ok, h = pcall(watch, signum, daemon)
  if not ok then error(h, level + 1) end
  return h
end

-- The handler threads are started by one spawner thread, at most BATCH
-- per hub turn: under a flood of signals with many handlers registered,
-- the dispatchers only queue their deliveries (`jobs`, FIFO: handler,
-- signum, count left), and the spawner yields (sleep(0): every other
-- ready thread runs, I/O is polled) after each BATCH threads it started.
-- A delivery is never dropped: a spawner killed midway leaves its jobs
-- queued for the next one, started by the next delivery.
local BATCH = 64
local jobs, head, tail = {}, 1, 0
local spawner -- the spawner thread, while one runs

local function spawn_jobs()
  local budget = BATCH
  while head <= tail do
    local job = jobs[head]
    while job[3] > 0 do
      if budget == 0 then
        sleep(0)
        budget = BATCH
      end
      job[3] = job[3] - 1
      spawn(job[1], job[2])
      budget = budget - 1
    end
    jobs[head] = nil
    head = head + 1
  end
  spawner = nil -- (no yield since the check: no job can be left behind)
end

local spawner_pid -- the process the spawner and the jobs belong to

local function queue_job(handler, signum, n)
  local pid = getpid()
  if spawner_pid ~= pid then
    -- a child of green.fork: the parent's deliveries are not its own,
    -- nor is its spawner thread (it does not run the parent's threads)
    jobs, head, tail, spawner, spawner_pid = {}, 1, 0, nil, pid
  end
  tail = tail + 1
  jobs[tail] = { handler, signum, n }
  if spawner == nil then
    local gt = spawn(spawn_jobs)
    gt.name = "green.signal spawner"
    spawner = gt
    core.on_end(gt, function()
      if spawner == gt then spawner = nil end
    end)
  end
end

local function dispatch(h, signum, handler)
  while true do
    local n = next_delivery(h)
    if not n then return end -- cancelled
    queue_job(handler, signum, n)
  end
end

local function register(sig, handler)
  local signum = checksig(sig, "signal")
  require("green.opts").callable_arg(handler, 2, "signal", 2)
  local h = watch_at(signum, true, 2)
  local d = spawn(dispatch, h, signum, handler)
  d.name = "green.signal(" .. tostring(sig) .. ")"
  -- However the dispatcher ends (cancelled, or killed, even before it
  -- started), the handle goes with it.
  core.on_end(d, function() h:cancel() end)
  return h
end

local signal = {}

--- Block until signal `sig` is delivered: returns its number, or nil,
-- "timeout" after `timeout` seconds. The signal is caught from the call
-- on; before and after, it has its usual disposition (a loop of waits can
-- miss a signal between two calls: use a handler for that).
-- @param sig name ("TERM", "SIGTERM") or number
-- @tparam[opt] number timeout seconds
function signal.wait(sig, timeout)
  local signum = checksig(sig, "wait")
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout)
  then
    error("bad argument #2 to 'wait' (number of seconds expected)", 2)
  end
  local h <close> = watch_at(signum, false, 2)
  local n, err = next_delivery(h, timeout)
  if n then return signum end
  return nil, err
end

return setmetatable(signal, {
  __call = function(_, sig, handler) return register(sig, handler) end,
})
