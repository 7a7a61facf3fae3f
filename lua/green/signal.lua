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
local spawn, signum_of = core.spawn, core.signum
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

local function dispatch(h, signum, handler)
  while true do
    local n = next_delivery(h)
    if not n then return end -- cancelled
    for _ = 1, n do spawn(handler, signum) end
  end
end

local function register(sig, handler)
  local signum = checksig(sig, "signal")
  if type(handler) ~= "function" then
    error("bad argument #2 to 'signal' (function expected, got "
          .. type(handler) .. ")", 2)
  end
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
