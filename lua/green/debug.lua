--- Introspection of the live green threads: `green.debug.threads()` and
-- `green.debug.dump([file])` (the list itself comes from
-- bindings/debug.c).
-- @module green.debug

local core = require "green.core"
local callable_arg = require("green.opts").callable_arg

local format, concat, gsub = string.format, table.concat, string.gsub
local tostring, type, error, setmetatable =
  tostring, type, error, setmetatable

local M = {}

--- Every live green thread, the host's main thread (id 0) first, then in
-- spawn order. Each entry is a table: `thread` (the GreenThread), `id`,
-- `name`, `state` ("new", "delayed", "ready", "running", "suspended"),
-- `waiting_in` (what a suspended thread is blocked in, e.g.
-- "socket:receive") and `waiting_for` (seconds it has been waiting there,
-- by the hub's loop clock), `site` ("file:line" where it was spawned) and
-- `traceback` (its Lua traceback; nil until it has started).
-- @treturn table the list
M.threads = core.threads

-- One entry as text: a heading line, then its traceback indented.
local function describe(e)
  local s = format("#%d", e.id)
  if e.name then s = s .. format(" '%s'", tostring(e.name)) end
  if e.id == 0 then s = s .. " (main)" end
  if e.waiting_in then
    s = s .. format(" suspended in %s for %.3f s", e.waiting_in,
                    e.waiting_for)
  else
    s = s .. " " .. e.state
  end
  if e.site then s = s .. ", spawned at " .. e.site end
  local tb = e.traceback or "(not started)"
  return s .. "\n    " .. gsub(tb, "\n", "\n    ")
end

--- The dump of a list from `threads()` as text.
-- @tparam table list
-- @treturn string
function M.format(list)
  local parts = { format("green threads: %d live", #list) }
  for i = 1, #list do parts[#parts + 1] = describe(list[i]) end
  return concat(parts, "\n  ") .. "\n"
end

-- Raise, for dump's caller, the error of a write or flush that failed.
local function written(ok, err)
  if ok == nil and err ~= nil then
    error(format("green.debug.dump: cannot write the dump (%s)",
                 tostring(err)), 3)
  end
end

--- Write a readable dump of every live green thread (what `threads()`
-- returns) to `file`: io.stderr by default, or any object with a
-- `:write(string)` method. Returns `file`.
-- @param[opt=io.stderr] file
function M.dump(file)
  file = file or io.stderr
  local w = (type(file) == "table" or type(file) == "userdata")
            and file.write
  if not w then
    error("bad argument #1 to 'dump' (file or object with :write expected)",
          2)
  end
  -- A write that fails says so (nil, err: a full disk, a file opened for
  -- reading): the dump is not lost in silence.
  written(file:write(M.format(core.threads())))
  if file.flush then written(file:flush()) end
  return file
end

-- {======================================================================
-- Blocking detection and the time slice (bindings/watchdog.c)

local function describe_thread(gt)
  local s = format("GreenThread %d", gt.id)
  if gt.name then s = s .. format(" '%s'", tostring(gt.name)) end
  local site = core.site(gt)
  if site then s = s .. " (spawned at " .. site .. ")" end
  return s
end

--- The default report of a blocking episode: one block on stderr.
local function default_on_blocking(gt, seconds, where)
  io.stderr:write(format("green: blocking detected: %s kept the hub for "
                         .. "%.2f s while other work waited to run; %s\n",
                         describe_thread(gt), seconds, where))
  io.stderr:flush()
end

local reporter = default_on_blocking

local function install(fn)
  reporter = fn
  debug.getregistry()["green.on_blocking"] = fn
end
install(default_on_blocking)

--- Replace the reporter of blocking episodes. `fn(gt, seconds, where)`
-- runs inside the offending thread, at its next Lua instruction (or when
-- the C function it was stuck in returns); `where` is a traceback. It
-- must not block. nil restores the default, which writes to stderr.
-- Returns the previous reporter.
function M.on_blocking(fn)
  callable_arg(fn, 1, "on_blocking", 2, true)
  local old = reporter
  install(fn or default_on_blocking)
  core.watchdog{ custom = fn ~= nil and fn ~= default_on_blocking }
  return old
end

--- eventlet's `hub_blocking_detection(state, resolution)`: with `on`,
-- report (or, with `mode = "raise"`, raise `green.BlockingError` in) a
-- green thread that keeps the hub longer than `seconds` (default 1) while
-- something else waits to run. On by default, in report mode.
-- @tparam boolean on
-- @tparam[opt=1] number seconds
-- @tparam[opt="report"] string mode "report" or "raise"
function M.hub_blocking_detection(on, seconds, mode)
  if seconds ~= nil and (type(seconds) ~= "number" or seconds ~= seconds
                         or seconds <= 0) then
    error("bad argument #2 to 'hub_blocking_detection' (positive number "
          .. "expected)", 2)
  end
  if mode ~= nil and mode ~= "report" and mode ~= "raise" then
    error("bad argument #3 to 'hub_blocking_detection' (\"report\" or "
          .. "\"raise\" expected)", 2)
  end
  core.watchdog{ threshold = on and (seconds or 1) or 0,
                 raise = mode == "raise" }
end

--- The preemptive time slice: Lua code that runs longer than `seconds`
-- while other work waits yields at its next instruction, as if it had
-- called sleep(0) -- never inside C functions, greenlua's own modules or
-- `green.atomic`. nil or 0 turns it off (the default). Returns the
-- previous slice (0 when off).
-- @tparam[opt] number seconds
function M.time_slice(seconds)
  if seconds ~= nil and (type(seconds) ~= "number" or seconds ~= seconds
                         or seconds < 0) then
    error("bad argument #1 to 'time_slice' (non-negative number or nil "
          .. "expected)", 2)
  end
  local old = core.watchdog().slice
  core.watchdog{ slice = seconds or 0 }
  return old
end

--- Run `fn(...)` with no preemption by the time slice (it may still
-- block, letting other threads run). Returns fn's results.
function M.atomic(fn, ...)
  callable_arg(fn, 1, "atomic", 2)
  local ex = core.extras(core.getcurrent())
  local prev = ex.atomic
  ex.atomic = true
  local _ <close> = setmetatable({}, { __close = function()
    ex.atomic = prev
  end })
  return fn(...)
end

-- }======================================================================

return M
