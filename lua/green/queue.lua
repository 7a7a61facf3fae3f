--- Queues between green threads, after eventlet's `eventlet.queue`:
-- `LightQueue` (put/get), `Queue` (plus `task_done`/`join`),
-- `PriorityQueue` and `LifoQueue`.
--
-- `maxsize` nil means unbounded; `Queue(0)` is a channel: a `put` waits
-- until a getter takes the item.
--
-- Lua conventions instead of eventlet's `Empty`/`Full` exceptions: an
-- item can be any value but nil (so a nil first result is never an
-- item), and a get or put that cannot complete returns `nil, "empty"` /
-- `nil, "full"` (non-blocking) or `nil, "timeout"` (its timeout expired).
-- Misuse (a nil item, too many `task_done`) raises.
--
-- The classes are in C (bindings/queue.c: the storage, waiting and
-- hand-off, and every method); this module checks the constructors'
-- arguments. A put hands its item straight to the longest waiting getter,
-- and a get that frees room moves the longest waiting putter's item in,
-- so wake-ups are FIFO and no call that does not block switches threads.
-- A getter killed after it was handed an item puts it back at the front
-- (or hands it to the next getter).
-- @module green.queue

local core = require "green.core"

local error, mtype = error, math.type
local new = core.queue.new

local M = {}

-- Classes, as bindings/queue.c numbers them.
local LIGHT <const>, QUEUE <const>, LIFO <const>, PRIORITY <const> =
  1, 2, 3, 4

local function checksize(maxsize, fname)
  if maxsize ~= nil and (mtype(maxsize) ~= "integer" or maxsize < 0) then
    error(("bad argument #1 to '%s' (non-negative integer or nil "
           .. "expected)"):format(fname), 3)
  end
end

--- A queue without `task_done`/`join`.
-- @tparam[opt] integer maxsize nil: unbounded; 0: a channel
function M.LightQueue(maxsize)
  checksize(maxsize, "LightQueue")
  return new(LIGHT, maxsize)
end

--- A FIFO queue with `task_done`/`join`.
-- @tparam[opt] integer maxsize nil: unbounded; 0: a channel
function M.Queue(maxsize)
  checksize(maxsize, "Queue")
  return new(QUEUE, maxsize)
end

--- A queue that returns the most recently put item first.
function M.LifoQueue(maxsize)
  checksize(maxsize, "LifoQueue")
  return new(LIFO, maxsize)
end

--- A queue that returns the lowest item first. Items compare with `<`;
-- tables compare by their first element, like eventlet's
-- `(priority, data)` tuples. Equal priorities come out in put order.
-- @tparam[opt] integer maxsize
-- @tparam[opt] function lt `lt(a, b)`: a comes out before b
function M.PriorityQueue(maxsize, lt)
  checksize(maxsize, "PriorityQueue")
  require("green.opts").callable_arg(lt, 2, "PriorityQueue", 2, true)
  return new(PRIORITY, maxsize, lt)
end

return M
