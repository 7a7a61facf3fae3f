--- Counting semaphores for green threads, after eventlet's
-- `eventlet.semaphore`: `Semaphore`, `BoundedSemaphore` and
-- `CappedSemaphore`. Pure Lua on `green.core`.
--
-- A release hands its unit straight to the longest waiter (FIFO), so a
-- thread that calls `acquire` later cannot overtake it, and `release`
-- never switches threads. A waiter that is killed or timed out after it
-- was handed a unit passes the unit on.
-- @module green.semaphore

local waiters = require "green.waiters"

local setmetatable, error, mtype = setmetatable, error, math.type
local newq, count, block, wake_first, checktimeout =
  waiters.new, waiters.count, waiters.block, waiters.wake_first,
  waiters.checktimeout

local M = {}

--- @type Semaphore
local Semaphore = { __name = "green.Semaphore" }
Semaphore.__index = Semaphore

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
  value = checkcount(value, 1, "Semaphore", 1)
  return setmetatable({ counter = value, waiters = newq() }, Semaphore)
end

-- A canceled waiter that had been handed a unit gives it back.
local function giveback(self)
  self:release()
end

--- Take one unit. Blocks while none is free, unless `blocking` is false.
-- @tparam[opt=true] boolean blocking
-- @tparam[opt] number timeout seconds to wait at most (blocking only)
-- @treturn boolean true if a unit was taken, false if not (non-blocking
--   and none free, or the timeout expired)
-- @raise the kill error or a foreign Timeout, with no unit held
function Semaphore:acquire(blocking, timeout)
  if timeout ~= nil then
    checktimeout(timeout, 2, "acquire")
    if blocking == false then
      error("bad argument #2 to 'acquire' (timeout given for a "
            .. "non-blocking acquire)", 2)
    end
  end
  local c = self.counter
  if c > 0 then -- fast path, no switch; a free unit means no waiters
    self.counter = c - 1
    return true
  end
  if blocking == false then return false end
  local ok = block(self.waiters, timeout, "Semaphore:acquire", giveback,
                   self)
  return ok
end

--- Give one unit back; the longest waiter gets it. Never switches.
-- @treturn boolean true
function Semaphore:release()
  local q = self.waiters
  if q.head > q.tail or not wake_first(q) then
    self.counter = self.counter + 1
  end
  return true
end

--- True when an `acquire` would block.
function Semaphore:locked()
  return self.counter <= 0
end

--- The count minus the number of waiters (negative when threads wait).
function Semaphore:balance()
  return self.counter - count(self.waiters)
end

--- Number of threads blocked in `acquire`.
function Semaphore:waiting()
  return count(self.waiters)
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
  if not self:acquire(true, timeout) then return nil, "timeout" end
  return setmetatable({ sem = self }, Hold)
end

--- @type BoundedSemaphore
local BoundedSemaphore = setmetatable({ __name = "green.BoundedSemaphore" },
                                      { __index = Semaphore })
BoundedSemaphore.__index = BoundedSemaphore

--- A semaphore that refuses to be released above its initial value.
-- @tparam[opt=1] integer value initial and highest count
function M.BoundedSemaphore(value)
  value = checkcount(value, 1, "BoundedSemaphore", 1)
  return setmetatable({ counter = value, original = value,
                        waiters = newq() }, BoundedSemaphore)
end

--- Like `Semaphore:release`, but over-release is an error.
-- @raise "Semaphore released too many times"
function BoundedSemaphore:release()
  if self.counter >= self.original then
    error("Semaphore released too many times", 2)
  end
  return Semaphore.release(self)
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

--- Take one unit; blocks while the count is 0.
-- @see Semaphore:acquire
function CappedSemaphore:acquire(blocking, timeout)
  if not self.lower:acquire(blocking, timeout) then return false end
  self.upper:release()
  return true
end

--- Give a unit back; blocks while the count is at the limit, unless
-- `blocking` is false (then returns false).
-- @treturn boolean true if released, false if not
function CappedSemaphore:release(blocking, timeout)
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
  Semaphore, BoundedSemaphore, CappedSemaphore

return M
