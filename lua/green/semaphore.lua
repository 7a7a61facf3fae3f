--- Counting semaphores for green threads, after eventlet's
-- `eventlet.semaphore`: `Semaphore`, `BoundedSemaphore` and
-- `CappedSemaphore`.
--
-- `Semaphore` and `BoundedSemaphore` are in C (bindings/semaphore.c:
-- `acquire`, `release`, `locked`, `balance`, `waiting`); this module
-- checks the constructors' arguments and adds `hold`. `CappedSemaphore`
-- is two of them.
--
-- A release hands its unit straight to the longest waiter (FIFO), so a
-- thread that calls `acquire` later cannot overtake it, and `release`
-- never switches threads. A waiter that is killed or timed out after it
-- was handed a unit passes the unit on.
-- @module green.semaphore

local core = require "green.core"

local setmetatable, error, mtype, type = setmetatable, error, math.type, type
local new = core.semaphore.new

local M = {}

local Semaphore_mt = core.semaphore.Semaphore_mt
local BoundedSemaphore_mt = core.semaphore.BoundedSemaphore_mt
--- @type Semaphore
local Semaphore = {} -- the methods added here, to both classes

local function checkcount(n, argn, fname, default)
  if n == nil then return default end
  if mtype(n) ~= "integer" or n < 0 then
    error(("bad argument #%d to '%s' (non-negative integer expected)")
          :format(argn, fname), 3)
  end
  return n
end

--- Create a semaphore.
-- @tparam[opt=1] integer value initial count, at least 0
-- @treturn Semaphore
function M.Semaphore(value)
  return new(checkcount(value, 1, "Semaphore", 1))
end

local Hold = { __name = "green.Semaphore.hold" }
function Hold.__close(h)
  local sem = h.sem
  if sem then
    h.sem = nil
    sem:release()
  end
end
Hold.__index = { release = Hold.__close }

--- Acquire (blocking) and return a to-be-closed value that releases:
-- `local _ <close> = sem:hold()`. The release also runs on error or kill.
-- @tparam[opt] number timeout raise-free limit: nil, "timeout" if it expires
-- @return the holder, or nil, "timeout"
function Semaphore:hold(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout)
  then -- acquire's error would name acquire's argument, inside this file
    error(("bad argument #1 to 'hold' (number or nil expected, got %s)")
          :format(timeout ~= timeout and "NaN" or type(timeout)), 2)
  end
  if not self:acquire(true, timeout) then return nil, "timeout" end
  return setmetatable({ sem = self }, Hold)
end

for name, f in pairs(Semaphore) do
  Semaphore_mt.__index[name] = f
  BoundedSemaphore_mt.__index[name] = f
end

--- A semaphore that refuses to be released above its initial value
-- (`release` raises "Semaphore released too many times").
-- @tparam[opt=1] integer value initial and highest count
function M.BoundedSemaphore(value)
  value = checkcount(value, 1, "BoundedSemaphore", 1)
  return new(value, value)
end

--- @type CappedSemaphore
local CappedSemaphore = { __name = "green.CappedSemaphore" }
CappedSemaphore.__index = CappedSemaphore

--- A semaphore whose `release` blocks while the count is at `limit`
-- (eventlet's CappedSemaphore). This is the one release that can block:
-- it is a bounded buffer of units in both directions.
-- @tparam integer count initial count, 0..limit
-- @tparam integer limit highest count
function M.CappedSemaphore(count_, limit)
  count_ = checkcount(count_, 1, "CappedSemaphore", 1)
  limit = checkcount(limit, 2, "CappedSemaphore")
  if limit == nil or limit < count_ then
    error("bad argument #2 to 'CappedSemaphore' (limit >= count expected)",
          2)
  end
  return setmetatable({ lower = M.Semaphore(count_),
                        upper = M.Semaphore(limit - count_) },
                      CappedSemaphore)
end

-- The checks Semaphore:acquire makes, named after the CappedSemaphore
-- method called (its release acquires from the other semaphore) and
-- raised at its caller.
local function checkwait(blocking, timeout, fname)
  if timeout == nil then return end
  if type(timeout) ~= "number" or timeout ~= timeout then
    error(("bad argument #2 to '%s' (number or nil expected, got %s)")
          :format(fname, timeout ~= timeout and "NaN" or type(timeout)), 3)
  end
  if blocking == false then
    error(("bad argument #2 to '%s' (timeout given for a non-blocking "
           .. "%s)"):format(fname, fname), 3)
  end
end

--- Take one unit; blocks while the count is 0.
-- @see Semaphore:acquire
function CappedSemaphore:acquire(blocking, timeout)
  checkwait(blocking, timeout, "acquire")
  if not self.lower:acquire(blocking, timeout) then return false end
  self.upper:release()
  return true
end

--- Give a unit back; blocks while the count is at the limit, unless
-- `blocking` is false (then returns false).
-- @treturn boolean true if released, false if not
function CappedSemaphore:release(blocking, timeout)
  checkwait(blocking, timeout, "release")
  if not self.upper:acquire(blocking, timeout) then return false end
  self.lower:release()
  return true
end

--- True when an `acquire` would block.
function CappedSemaphore:locked()
  return self.lower:locked()
end

--- The count once every blocked call has gone through: the count, minus
-- the threads blocked in `acquire`, plus those blocked in `release`.
function CappedSemaphore:balance()
  return self.lower:balance() + self.upper:waiting()
end

--- Number of threads blocked in `acquire`.
function CappedSemaphore:waiting()
  return self.lower:waiting()
end

CappedSemaphore.hold = Semaphore.hold

M.Semaphore_mt, M.BoundedSemaphore_mt, M.CappedSemaphore_mt =
  Semaphore_mt, BoundedSemaphore_mt, CappedSemaphore

return M
