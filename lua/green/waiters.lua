--- FIFO queues of suspended green threads: the one waiting mechanism the
-- toolkit's primitives (semaphores, events, queues, pools) share.
-- Internal module; its API may change.
--
-- A wait is a record `w = {thread = gt, ...}` in a queue. A waker pops the
-- first record whose thread accepts `core.wake` and sets `w.done = true`,
-- storing whatever it hands over in the record. A waiter canceled by a kill
-- or a Timeout removes its record and, if it had already been handed
-- something (`w.done`), gives it back. That covers the race in which a
-- thread is woken and then killed before it runs.
-- @module green.waiters

local core = require "green.core"

local getcurrent, suspend, wake, Timeout =
  core.getcurrent, core.suspend, core.wake, core.Timeout
local error = error

local M = {}

--- The error value of the primitives' own timeouts: a wait that sees it
-- returns its timeout result instead of raising.
local TIMEOUT = setmetatable({}, {
  __name = "green.waiters.timeout",
  __tostring = function() return "green: wait timed out" end,
})
M.TIMEOUT = TIMEOUT

--- A new, empty queue.
function M.new()
  return { head = 1, tail = 0 }
end

--- Number of records queued (waiters not yet woken).
function M.count(q)
  return q.tail - q.head + 1
end

--- Append record `w`.
function M.add(q, w)
  local t = q.tail + 1
  q.tail = t
  q[t] = w
  w.queued = true
end

--- Remove record `w` (a canceled wait); O(n), but only on cancellation.
function M.remove(q, w)
  if not w.queued then return end
  w.queued = false
  local head, tail = q.head, q.tail
  for i = head, tail do
    if q[i] == w then
      for j = i, tail - 1 do q[j] = q[j + 1] end
      q[tail] = nil
      q.tail = tail - 1
      break
    end
  end
  if q.tail < q.head then q.head, q.tail = 1, 0 end
end

--- Pop and return the first record, or nil; does not wake it.
function M.shift(q)
  local head = q.head
  if head > q.tail then return nil end
  local w = q[head]
  q[head] = nil
  if head == q.tail then
    q.head, q.tail = 1, 0
  else
    q.head = head + 1
  end
  w.queued = false
  return w
end

--- Wake the longest waiter that can still be woken, marking its record
-- done. Records of threads being canceled (wake refuses them) are dropped.
-- Never switches threads.
-- @return the record woken, or nil if no live waiter was left
function M.wake_first(q)
  local w = M.shift(q)
  while w do
    if wake(w.thread) then
      w.done = true
      return w
    end
    w = M.shift(q)
  end
  return nil
end

--- Wake every live waiter (FIFO order); `fill(w)` runs on each record
-- woken. Never switches threads.
function M.wake_all(q, fill)
  local w = M.shift(q)
  while w do
    if wake(w.thread) then
      w.done = true
      if fill then fill(w) end
    end
    w = M.shift(q)
  end
end

--- Suspend the calling thread with record `w` queued in `q` until a waker
-- marks it done, for at most `timeout` seconds (nil: no limit).
-- On a kill or a foreign Timeout the record is removed and, if it was
-- already done, `giveback(obj, w)` returns what it was handed; then the
-- error is raised. A timeout that fires after the record was done counts
-- as success: the operation has completed.
-- @treturn boolean true when done, false when `timeout` expired
function M.block(q, w, timeout, what, giveback, obj)
  w.thread = getcurrent()
  M.add(q, w)
  local _ <close> = timeout and Timeout(timeout, TIMEOUT)
  local ok, err = suspend(what)
  if ok then return true end
  M.remove(q, w)
  if err == TIMEOUT then
    return w.done == true
  end
  if w.done and giveback then giveback(obj, w) end
  error(err, 0)
end

--- Check an optional timeout argument.
function M.checktimeout(timeout, argn, fname)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
    error(("bad argument #%d to '%s' (number or nil expected, got %s)")
          :format(argn, fname, type(timeout)), 3)
  end
  return timeout
end

return M
