--- FIFO queues of suspended green threads, for primitives written in Lua
-- (GreenPool, the socket module's connect and select waits). Events,
-- semaphores, queues and pools wait in C instead (bindings/waitq.c),
-- with no record per wait. Internal module; its API may change.
--
-- A wait is a record `w = {thread = gt, state = ..., item = ...}` in a
-- queue (`w.state` is QUEUED while it is). A waker pops the first record
-- whose thread accepts `core.wake`, sets `w.state = DONE` and stores
-- whatever it hands over in `w.item`. A waiter canceled by a kill or a
-- Timeout removes its record and, if it had already been handed something
-- (DONE), gives it back. That covers the race in which a thread is woken
-- and then killed before it runs.
--
-- Each thread has one record, reused by all its waits, so a wait
-- allocates nothing. That is safe because a thread waits in one place at
-- a time; a record is queued only while its thread is suspended in
-- `block` (a caller that cannot suspend is refused before its record is
-- queued, so no stale record is left behind to be woken later); and a
-- waker touches a record only between popping it and returning, without
-- switching threads. So once `block` returns (or raises) no queue and no
-- waker refers to the record, and `block` reads out what it was handed
-- (clearing it) before any other code runs, in particular before a
-- `giveback` that could block again. A record found still queued belongs
-- to a wait of this thread that has not suspended yet (a finalizer run
-- in between): that wait gets a fresh record.
-- @module green.waiters

local core = require "green.core"

local getcurrent, cansuspend, suspend, wake, Timeout =
  core.getcurrent, core.cansuspend, core.suspend, core.wake, core.Timeout
local error, type, setmetatable, pcall, rawequal =
  error, type, setmetatable, pcall, rawequal

local M = {}

--- The error value of the primitives' own timeouts: a wait that sees it
-- returns its timeout result instead of raising.
local TIMEOUT = setmetatable({}, {
  __name = "green.waiters.timeout",
  __tostring = function() return "green: wait timed out" end,
})
M.TIMEOUT = TIMEOUT

-- Record states: in a queue; woken by a waker; neither (new, dropped by a
-- waker because its thread was being canceled, or removed).
local QUEUED <const>, DONE <const>, IDLE <const> = 1, 2, 0

-- Each thread's wait record (weak: a dead thread's record goes with it).
local records = setmetatable({}, { __mode = "k" })

--- A new, empty queue.
function M.new()
  return { head = 1, tail = 0 }
end

--- Number of records queued (waiters not yet woken).
function M.count(q)
  return q.tail - q.head + 1
end

--- Append record `w`. Each assignment may raise (out of memory: a table
-- grows): the slot is filled before the tail counts it, or a later
-- wake_first would find the slot empty.
local function add(q, w)
  local t = q.tail + 1
  w.state = QUEUED
  q[t] = w
  q.tail = t
end
M.add = add

--- Remove record `w` (a canceled wait); O(n), but only on cancellation.
local function remove(q, w)
  if w.state ~= QUEUED then return end
  w.state = IDLE
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
M.remove = remove

-- Take the first record (there is one) off the queue; returns it.
local function drop_first(q)
  local head = q.head
  local w = q[head]
  q[head] = nil
  if head == q.tail then
    q.head, q.tail = 1, 0
  else
    q.head = head + 1
  end
  return w
end

--- Pop and return the first record, or nil; does not wake it.
function M.shift(q)
  if q.head > q.tail then return nil end
  local w = drop_first(q)
  w.state = IDLE
  return w
end

--- Wake the longest waiter that can still be woken, marking its record
-- done. Records of threads being canceled (wake refuses them) are dropped.
-- Never switches threads. Callers on a hot path test `q.head <= q.tail`
-- first: an empty queue is the common case. `wake` may raise (out of
-- memory): the queue is whole at each call, the record not taken yet.
-- @return the record woken, or nil if no live waiter was left
function M.wake_first(q)
  while q.head <= q.tail do
    local woken = wake(q[q.head].thread)
    local w = drop_first(q)
    if woken then
      w.state = DONE
      return w
    end
    w.state = IDLE
  end
  return nil
end

--- Wake every live waiter (FIFO order), handing each `item` (may be
-- nil). Never switches threads. As wake_first, the queue is whole at each
-- `wake`: one that raises leaves the waiters after it queued.
function M.wake_all(q, item)
  while q.head <= q.tail do
    local w = q[q.head]
    w.item = item
    local woken = wake(w.thread)
    drop_first(q)
    if woken then
      w.state = DONE
    else
      w.state, w.item = IDLE, nil
    end
  end
end

-- The end of a canceled wait (kill, Timeout): leave the queue; a wait
-- already done either counts (our own timeout came too late) or gives
-- back what it was handed.
local function canceled(q, w, err, giveback, obj)
  remove(q, w)
  local item = w.item
  w.item = nil
  local done = w.state == DONE
  if err == TIMEOUT then
    if done then return true, item end
    return false
  end
  if done and giveback then giveback(obj, item) end
  error(err, 0)
end

local function timed(q, w, timeout, what, giveback, obj)
  local _ <close> = Timeout(timeout, TIMEOUT)
  add(q, w)
  local ok, err = suspend(what)
  if ok then
    local item = w.item
    w.item = nil
    return true, item
  end
  return canceled(q, w, err, giveback, obj)
end

--- Suspend the calling thread, queued in `q`, until a waker marks its
-- record done, for at most `timeout` seconds (nil: no limit). `item`, if
-- given, is what the waiter offers (a putter's item): a waker takes it
-- from `w.item` and sets that to nil.
-- On a kill or a foreign Timeout the record is removed and, if it was
-- already done, `giveback(obj, item)` returns what it was handed; then
-- the error is raised. A timeout that fires after the record was done
-- counts as success: the operation has completed.
-- @treturn[1] boolean true when done, and the item handed over (or nil)
-- @treturn[2] boolean false when `timeout` expired
function M.block(q, timeout, what, giveback, obj, item)
  local gt = getcurrent()
  if not cansuspend() then
    -- Raises why this caller cannot block, before anything is queued; a
    -- killed thread gets its kill error back instead.
    local _, err = suspend(what)
    error(err, 0)
  end
  local w = records[gt]
  if w ~= nil and w.state ~= QUEUED then
    w.item = item
  else -- first wait; or a wait nested in this one's own (a finalizer)
    w = { thread = gt, state = IDLE, item = item }
    if records[gt] == nil then records[gt] = w end
  end
  if timeout ~= nil then
    return timed(q, w, timeout, what, giveback, obj)
  end
  local t = q.tail + 1 -- (add, inline)
  w.state = QUEUED
  q[t] = w
  q.tail = t
  local ok, err = suspend(what)
  if ok then
    item = w.item
    w.item = nil
    return true, item
  end
  return canceled(q, w, err, giveback, obj)
end

-- What a failed `gt:wait()` was: gt's own error, or an interrupt of the
-- waiting thread (a kill or Timeout, which can come just as gt ended and
-- woke it: gt's outcome is then untouched). A dead gt's `wait` returns
-- at once, so reading its outcome again cannot block or be interrupted.
local function settle(gt, ok, ...)
  if ok then return true, ... end
  local err = ...
  if not gt:dead() then return nil, err end
  local own, e = pcall(gt.wait, gt)
  if own or not rawequal(e, err) then return nil, err end
  return false, err
end

--- Wait for `gt`, for a reader that keeps it until it has read its end
-- (GreenPile, GreenPool:imap): true and its results, or false and its
-- error; nil and the error if the wait itself was interrupted (`gt` is
-- not read then, even if it had just ended). An interrupt equal to
-- `gt`'s own error (both the default GreenletExit) counts as its error.
function M.read(gt)
  return settle(gt, pcall(gt.wait, gt))
end

--- Check an optional timeout argument.
function M.checktimeout(timeout, argn, fname)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
    error(("bad argument #%d to '%s' (number or nil expected, got %s)")
          :format(argn, fname, timeout ~= timeout and "NaN"
                                 or type(timeout)), 3)
  end
  return timeout
end

return M
