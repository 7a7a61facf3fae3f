--- Periodic calls, after oslo.service's looping calls (Nova's periodic
-- tasks and polling loops).
--
--     local lc = green.LoopingCall(poll, vm):start(0.5)
--     local state = lc:wait()  -- poll raised green.LoopingCallDone(state)
--
-- `LoopingCall` keeps a fixed cadence measured start to start: each call
-- is due `interval` after the previous one was due. A call that runs
-- longer than the interval is an overrun: the next call starts at once,
-- the lost time is not made up with a burst of calls, and the overrun is
-- counted (`lc.overruns`) and reported through `lc.on_overrun` (by
-- default a warning on stderr; set it to false to silence it).
--
-- The function stops the loop by raising `green.LoopingCallDone(value)`;
-- `wait` then returns `value`. `stop()` ends the loop after the current
-- call (at once if it is between calls); `wait` then returns true. An
-- error in the function ends the loop and is raised by `wait` (or
-- reported like any green thread's error if nobody waits).
-- @module green.looping

local core = require "green.core"

local setmetatable, error, type, tostring, xpcall, getmetatable =
  setmetatable, error, type, tostring, xpcall, getmetatable
local pack, unpack = table.pack, table.unpack
local format = string.format
local traceback = debug.traceback
local spawn, suspend, wake, now, Timeout, getcurrent =
  core.spawn, core.suspend, core.wake, core.now, core.Timeout,
  core.getcurrent
local TIMEOUT = require("green.waiters").TIMEOUT
local callable_arg = require("green.opts").callable_arg

local M = {}

--- @type LoopingCallDone
local Done = { __name = "green.LoopingCallDone" }
Done.__index = Done
function Done.__tostring(d)
  return "LoopingCallDone(" .. tostring(d.retvalue) .. ")"
end

--- The error value that ends a looping call: `error(LoopingCallDone(v))`.
-- @param[opt=true] retvalue what `wait` returns
function M.LoopingCallDone(retvalue)
  if retvalue == nil then retvalue = true end
  return setmetatable({ retvalue = retvalue }, Done)
end

--- True if `x` is a LoopingCallDone.
function M.is_done(x)
  return getmetatable(x) == Done
end

local function default_overrun(lc, late)
  io.stderr:write(format("green: LoopingCall %s run outlasted interval "
                         .. "by %.2f sec\n", tostring(lc.name or lc.fn),
                         late))
end

--- @type LoopingCall
local LoopingCall = { __name = "green.LoopingCall" }
LoopingCall.__index = LoopingCall

local function new(cls, fn, ...)
  return setmetatable({ fn = fn, args = pack(...), overruns = 0,
                        on_overrun = default_overrun }, cls)
end

--- A call of `fn(...)` every interval (see `start`).
-- @treturn LoopingCall
function M.LoopingCall(fn, ...)
  callable_arg(fn, 1, "LoopingCall", 2)
  return new(LoopingCall, fn, ...)
end

-- Sleep until `deadline` (a now() value), unless stop() wakes us.
local function idle(self, deadline)
  local delay = deadline - now()
  if delay < 0 then delay = 0 end
  self.sleeping = true
  local _ <close> = Timeout(delay, TIMEOUT)
  local ok, err = suspend("LoopingCall")
  self.sleeping = false
  if not ok and err ~= TIMEOUT then error(err, 0) end
end

local function handler(e)
  if getmetatable(e) == Done then return e end
  if type(e) == "string" then return traceback(e, 2) end
  return e
end

-- Call fn once: "done", value for LoopingCallDone, else the results.
local function call(self)
  local args = self.args
  local res = pack(xpcall(self.fn, handler, unpack(args, 1, args.n)))
  if res[1] then return res end
  local e = res[2]
  if getmetatable(e) == Done then return nil, e.retvalue end
  error(e, 0)
end

-- Closed when the loop thread ends, however it ends (LoopingCallDone,
-- stop, an error of fn or of on_overrun, a kill): the loop is not running.
local Ended = { __close = function(e)
  local self = e[1]
  self.running, self.sleeping = false, false
end }

-- The loop thread. `next_idle(self, res, started)` returns the time the
-- next call is due.
local function run(self, initial_delay, next_idle)
  local _ <close> = setmetatable({ self }, Ended)
  if initial_delay and initial_delay > 0 then
    idle(self, now() + initial_delay)
  end
  while self.running do
    local started = now()
    local res, value = call(self)
    if not res then
      self.running = false
      return value
    end
    if not self.running then break end
    idle(self, next_idle(self, res, started))
  end
  return true
end

local function fixed_idle(self, _, started)
  local due = started + self.interval
  local t = now()
  if t > due and self.interval > 0 then
    -- an overrun: start the next call now, do not catch up
    self.overruns = self.overruns + 1
    local report = self.on_overrun
    if report then report(self, t - due) end
    return t
  end
  return due
end

local function launch(self, next_idle, initial_delay)
  if self.running then
    error("this looping call is already running", 3)
  end
  local gt = self.thread
  if gt and not gt:dead() then -- stopped, but in (or woken from) a call
    error("this looping call was stopped but has not ended yet: wait() "
          .. "for it before starting it again", 3)
  end
  self.running = true
  self.thread = spawn(run, self, initial_delay, next_idle)
  return self
end

--- Start calling `fn(...)` every `interval` seconds, the first call after
-- `initial_delay` (default: on the next hub turn).
-- @tparam number interval seconds between the starts of two calls
-- @tparam[opt] number initial_delay
-- @treturn LoopingCall self
function LoopingCall:start(interval, initial_delay)
  if type(interval) ~= "number" or interval ~= interval or interval < 0 then
    error("bad argument #1 to 'start' (non-negative number expected, got "
          .. (interval ~= interval and "NaN" or tostring(interval)) .. ")", 2)
  end
  if initial_delay ~= nil and (type(initial_delay) ~= "number"
                               or initial_delay ~= initial_delay) then
    error("bad argument #2 to 'start' (number or nil expected, got "
          .. (initial_delay ~= initial_delay and "NaN" or type(initial_delay))
          .. ")", 2)
  end
  self.interval = interval
  return launch(self, fixed_idle, initial_delay)
end

--- Stop after the current call; at once if between calls. Never switches.
function LoopingCall:stop()
  self.running = false
  local gt = self.thread
  if gt and self.sleeping and gt ~= getcurrent() then wake(gt) end
end

--- Wait for the loop to end.
-- @return the LoopingCallDone value, or true after `stop()`
-- @raise the function's error
function LoopingCall:wait()
  local gt = self.thread
  if not gt then error("this looping call was never started", 2) end
  return gt:wait()
end

--- @type DynamicLoopingCall
local Dynamic = setmetatable({ __name = "green.DynamicLoopingCall" },
                             { __index = LoopingCall })
Dynamic.__index = Dynamic

--- A looping call whose function returns how long to idle before the
-- next call (capped by `periodic_interval_max`).
-- @treturn DynamicLoopingCall
function M.DynamicLoopingCall(fn, ...)
  callable_arg(fn, 1, "DynamicLoopingCall", 2)
  return new(Dynamic, fn, ...)
end

local function dynamic_idle(self, res)
  local idle_for, max = res[2], self.periodic_interval_max
  if idle_for == nil then idle_for = max end
  if type(idle_for) ~= "number" or idle_for ~= idle_for then -- NaN
    error("DynamicLoopingCall: the function must return the next interval "
          .. "(a number) unless periodic_interval_max is set", 0)
  end
  if max and idle_for > max then idle_for = max end
  return now() + idle_for
end

--- Start the loop: `fn` returns the seconds to idle after each call.
-- @tparam[opt] number initial_delay
-- @tparam[opt] number periodic_interval_max longest idle; also used when
--   `fn` returns nil
-- @treturn DynamicLoopingCall self
function Dynamic:start(initial_delay, periodic_interval_max)
  if initial_delay ~= nil and (type(initial_delay) ~= "number"
                               or initial_delay ~= initial_delay) then
    error("bad argument #1 to 'start' (number or nil expected, got "
          .. (initial_delay ~= initial_delay and "NaN" or type(initial_delay))
          .. ")", 2)
  end
  if periodic_interval_max ~= nil
    and (type(periodic_interval_max) ~= "number"
         or periodic_interval_max ~= periodic_interval_max) then
    error("bad argument #2 to 'start' (number or nil expected, got "
          .. (periodic_interval_max ~= periodic_interval_max and "NaN"
              or type(periodic_interval_max)) .. ")", 2)
  end
  self.periodic_interval_max = periodic_interval_max
  return launch(self, dynamic_idle, initial_delay)
end

M.LoopingCall_mt, M.DynamicLoopingCall_mt = LoopingCall, Dynamic
return M
