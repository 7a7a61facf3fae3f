--- Prefork serving: the master behind `green.serve(server, handler,
-- { workers = N, ... })` (and `green.http.serve` with the same options).
--
-- The master forks N workers that accept on the one listening socket the
-- caller made (the kernel hands each connection to one of them; the
-- master never accepts, so it never holds one back: see green.fork in
-- docs/api.md). It runs no user code: it reaps and restarts workers, with
-- a backoff for those that die young; it kills a worker whose hub stops
-- turning (each worker stamps a clock in memory shared with the master,
-- from a green thread, so a hub that does not turn stops stamping); it
-- drains on SIGTERM/SIGINT and rolls the workers on SIGHUP.
--
-- A worker is a child of green.fork: only the thread that called serve
-- goes on in it, the caller's other threads are gone. It runs
-- `on_worker_start(id)`, serves until it is told to stop (SIGTERM or
-- SIGINT: stop accepting, let the handlers running finish for up to
-- `graceful_timeout`, kill the rest), runs `on_worker_exit(id)` and
-- exits; it never returns into the caller's code.
-- @module green.prefork

local core = require "green.core"
local callable_arg = require("green.opts").callable_arg

local spawn, sleep, now, getcurrent = core.spawn, core.sleep, core.now,
  core.getcurrent
local fork, kill_pid = core.fork, core.kill_pid
local format, max, min = string.format, math.max, math.min
local type, pcall, error, tostring, pairs = type, pcall, error, tostring,
  pairs

local M = {}

local worker_id -- this process's worker index, nil outside a worker

--- The index (1 to N) of this worker of a prefork `serve`; nil in the
-- master and in a process that is no worker.
function M.worker_id()
  return worker_id
end

-- How long a worker must have lived for its death not to count as a
-- crash at start, and the restart backoff's bounds (seconds).
local YOUNG, BACKOFF_MIN, BACKOFF_MAX = 1, 0.1, 10

local SIGKILL, SIGTERM = 9, 15

local function log(fmt, ...)
  io.stderr:write("green.serve: ", format(fmt, ...), "\n")
  io.stderr:flush()
end

--- Check and complete the prefork options (the caller's table is not
-- changed). Raises at `level` on a bad option.
function M.options(opts, level)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  local function positive(name, def, integer)
    local v = o[name]
    if v == nil then v = def end
    if type(v) ~= "number" or v ~= v or v <= 0
       or (integer and math.type(v) ~= "integer") then
      error(format("bad argument #3 to 'serve' (%s: positive %s expected, "
                   .. "got %s)", name, integer and "integer" or "number",
                   o[name] ~= o[name] and "NaN" or type(o[name]) == "number"
                   and tostring(o[name]) or type(o[name])),
            level + 2) -- above options
    end
    o[name] = v
  end
  positive("workers", 1, true)
  positive("graceful_timeout", 30)
  positive("worker_timeout", 30)
  for _, name in pairs({ "on_worker_start", "on_worker_exit", "on_stop" }) do
    callable_arg(o[name], 3, "serve", level + 1, true, name)
  end
  return o
end

-- {====================================================================
-- The worker

-- Runs in the child; never returns. `serve_one(control)` serves until
-- control.stop is called (then it returns once drained).
local function worker_main(id, stamp, o, serve_one, master_pid)
  worker_id = id
  local signal = require "green.signal"
  local control = { stopping = false, grace = o.graceful_timeout,
                    on_stop = o.on_stop }
  local function stop()
    if control.stopping then return end
    control.stopping = true
    -- The drain's bound, kept by the worker itself: an on_stop or an
    -- on_worker_exit that never returns held a worker a roll had told to
    -- drain (the master kills only at its own stop), and one whose
    -- master was gone, forever.
    local deadline = spawn(function()
      sleep(o.graceful_timeout + 1)
      log("worker %d (pid %d) still there %g s after it was told to "
          .. "stop: exiting", id, core.getpid(), o.graceful_timeout + 1)
      os.exit(1)
    end)
    deadline.name = "green.serve drain deadline"
    if control.stop then control.stop(o.graceful_timeout) end
  end
  local term = signal("TERM", stop)
  -- A master that dies (even by SIGKILL) leaves no orphan serving on:
  -- the kernel sends its workers SIGTERM, and they drain.
  core.on_parent_death(SIGTERM, master_pid)
  local int = signal("INT", stop)
  local hup = signal("HUP", function() end) -- the master's business
  if o.on_worker_start then
    local ok, err = pcall(o.on_worker_start, id)
    if not ok then
      log("worker %d: on_worker_start failed: %s", id, tostring(err))
      os.exit(1)
    end
  end
  -- The heartbeat: only a hub that turns runs it.
  local interval = min(1, o.worker_timeout / 4)
  local beat = spawn(function()
    while true do
      stamp:set(1)
      sleep(interval)
    end
  end)
  beat.name = "green.serve heartbeat"
  local ok, err = pcall(serve_one, control)
  beat:kill()
  term:cancel()
  int:cancel()
  hup:cancel()
  if not ok then
    log("worker %d: %s", id, tostring(err))
  end
  if o.on_worker_exit then
    local ok2, err2 = pcall(o.on_worker_exit, id)
    if not ok2 then
      log("worker %d: on_worker_exit failed: %s", id, tostring(err2))
    end
  end
  os.exit(ok and 0 or 1)
end

-- }====================================================================

-- {====================================================================
-- The master

--- Run the master until it is told to stop (SIGTERM, SIGINT); returns
-- once every worker has exited. `serve_one(control)` is what a worker
-- runs (see worker_main).
function M.master(o, serve_one)
  local signal = require "green.signal"
  local process = require "green.process"
  local n = o.workers
  local me = core.getpid()
  local current = {}  -- id -> worker { pid, stamp, born, id }
  local live = {}     -- pid -> worker (current and retiring)
  local nlive = 0
  local backoff = {}  -- id -> seconds before its next restart
  local stopping = false
  local master = getcurrent()
  local done = false
  local wake_master = core.wake
  local aux = {} -- the master's timers (restarts, the last resort kill)

  local function later(seconds, fn)
    local t
    t = spawn(function()
      sleep(seconds)
      aux[t] = nil
      fn()
    end)
    aux[t] = true
  end

  local start -- forward

  -- A worker ended (reaped): restart it unless it was
  -- replaced or the master is stopping.
  local function ended(w, how, code)
    live[w.pid] = nil
    nlive = nlive - 1
    local replaced = current[w.id] ~= w
    if not replaced then current[w.id] = nil end
    if stopping then
      if nlive == 0 and not done then
        done = true
        wake_master(master, true)
      end
      return
    end
    if replaced then return end
    if how ~= "exit" or code ~= 0 then
      log("worker %d (pid %d) %s %s", w.id, w.pid,
          how == "signal" and "was killed by signal" or "exited with status",
          tostring(code))
    end
    local b = 0
    if now() - w.born < YOUNG then
      b = min(max((backoff[w.id] or 0) * 2, BACKOFF_MIN), BACKOFF_MAX)
      log("worker %d died %.2f s after it started: restarting in %.1f s",
          w.id, now() - w.born, b)
    end
    backoff[w.id] = b
    later(b, function()
      if not stopping and current[w.id] == nil then start(w.id) end
    end)
  end

  -- Fork worker `id`; its record, or nil if fork failed (retried later).
  -- Each worker has a clock of its own (a page shared with the master,
  -- unmapped once its record is collected): workers that drain after a
  -- roll are alive with their replacements, as many generations of them
  -- as SIGHUPs came while they drained, so no fixed number of clocks
  -- would do.
  function start(id)
    local stamp, err = core.stamps(1)
    local pid
    if stamp then
      pid, err = fork()
      if pid == 0 then
        worker_main(id, stamp, o, serve_one, me) -- never returns
      end
    end
    if not pid then
      log("cannot fork worker %d: %s", id, tostring(err))
      local b = min(max((backoff[id] or 0) * 2, BACKOFF_MIN), BACKOFF_MAX)
      backoff[id] = b
      later(b, function()
        if not stopping and current[id] == nil then start(id) end
      end)
      return nil
    end
    local w = { id = id, pid = pid, stamp = stamp, born = now() }
    current[id] = w
    live[pid] = w
    nlive = nlive + 1
    local reaper = spawn(function()
      local how, code = process.wait(pid)
      ended(w, how, code)
    end)
    reaper.name = "green.serve reaper of " .. pid
    return w
  end

  -- Is worker w serving (it has stamped since it started)?
  local function ready(w)
    return w.stamp:age(1) ~= nil
  end

  -- The watchdog: a worker whose stamp is older than worker_timeout (or
  -- that never stamped within it) is killed; its reaper restarts it.
  local watchdog = spawn(function()
    local every = min(1, o.worker_timeout / 4)
    while true do
      sleep(every)
      for pid, w in pairs(live) do
        local age = w.stamp:age(1) or now() - w.born
        if age > o.worker_timeout and not w.killed then
          log("worker %d (pid %d) did not turn its hub for %.1f s: killing it",
              w.id, pid, age)
          w.killed = true
          kill_pid(pid, SIGKILL)
        end
      end
    end
  end)
  watchdog.name = "green.serve watchdog"

  -- Stop: every worker drains (SIGTERM), those still there after
  -- graceful_timeout (and a second of grace) are killed.
  local function stop()
    if stopping then return end
    stopping = true
    for pid in pairs(live) do kill_pid(pid, SIGTERM) end
    if nlive == 0 then
      done = true
      wake_master(master, true)
      return
    end
    later(o.graceful_timeout + 1, function()
      for pid in pairs(live) do kill_pid(pid, SIGKILL) end
    end)
  end

  -- Roll: replace the workers one at a time, the new one serving before
  -- the old one is told to drain, so no connection waits on nobody.
  -- A SIGHUP that comes during a roll is not dropped: the workers roll
  -- once more after it (the workers that roll started were forked before
  -- it, and what it was sent for -- a deploy -- would not reach them).
  local rolling, again = false, false
  local function roll_once()
    for id = 1, n do
      local old = current[id]
      local w = start(id)
      if w then
        local limit = now() + o.worker_timeout
        while live[w.pid] and not ready(w) and now() < limit
              and not stopping do
          sleep(0.01)
        end
      end
      if w and live[w.pid] then
        if old and live[old.pid] then kill_pid(old.pid, SIGTERM) end
      elseif old and live[old.pid] and not stopping then
        -- No replacement (fork failed, or it died before serving: a bad
        -- deploy): the old worker was told to drain all the same, and a
        -- SIGHUP left nobody serving. It goes on, as the current one (the
        -- restart that its replacement's death scheduled is then void).
        if current[id] == nil then current[id] = old end
        log("worker %d was not replaced: pid %d serves on", id, old.pid)
      end
      if stopping then break end
    end
  end
  local function roll()
    if stopping then return end
    if rolling then
      if not again then log("SIGHUP during a roll: rolling again after it") end
      again = true
      return
    end
    rolling = true
    repeat
      again = false
      local ok, err = pcall(roll_once)
      if not ok then
        rolling = false
        error(err, 0)
      end
    until not again or stopping
    rolling = false
  end

  local handles = {
    signal("TERM", stop), signal("INT", stop),
    signal("HUP", function() roll() end),
  }
  for id = 1, n do start(id) end

  local ok, err = pcall(core.suspend, "green.serve (prefork master)")
  watchdog:kill()
  for _, h in pairs(handles) do h:cancel() end
  for t in pairs(aux) do t:kill() end
  if not (ok and done) then -- the master's thread was killed: no orphans
    -- Killed at once, with no timer left behind (stop's last resort kept
    -- the caller's process alive for graceful_timeout + 1 s). The reapers
    -- reap them; `done` keeps the last from waking this thread, which is
    -- the caller's again.
    stopping, done = true, true
    for pid in pairs(live) do kill_pid(pid, SIGKILL) end
    if not ok then error(err, 0) end
  end
end

-- }====================================================================

return M
