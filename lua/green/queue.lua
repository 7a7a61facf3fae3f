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
-- A put hands its item straight to the longest waiting getter, and a get
-- that frees room moves the longest waiting putter's item in, so wake-ups
-- are FIFO and no call that does not block switches threads. A getter
-- killed after it was handed an item puts it back at the front.
-- @module green.queue

local waiters = require "green.waiters"

local setmetatable, error, type = setmetatable, error, type
local newq, count, block, wake_first, wake_all, checktimeout =
  waiters.new, waiters.count, waiters.block, waiters.wake_first,
  waiters.wake_all, waiters.checktimeout

local M = {}

-- {====================================================================
-- Storage: a deque (FIFO), a stack (LIFO) or a binary heap (priority).
-- Each class provides _init, _len, _push (new item), _pop (next item)
-- and _unpop (give back the item just popped, so it comes out next).

local Fifo = {}

function Fifo._init(self)
  self.head, self.tail = 1, 0
end

function Fifo._len(self)
  return self.tail - self.head + 1
end

function Fifo._push(self, item)
  local t = self.tail + 1
  self.tail = t
  self[t] = item
end

function Fifo._pop(self)
  local h = self.head
  local item = self[h]
  self[h] = nil
  if h == self.tail then
    self.head, self.tail = 1, 0
  else
    self.head = h + 1
  end
  return item
end

function Fifo._unpop(self, item)
  local h = self.head - 1
  self.head = h
  self[h] = item
end

local Lifo = {}

function Lifo._init(self)
  self.items = {}
end

function Lifo._len(self)
  return #self.items
end

function Lifo._push(self, item)
  local items = self.items
  items[#items + 1] = item
end

function Lifo._pop(self)
  local items = self.items
  local n = #items
  local item = items[n]
  items[n] = nil
  return item
end

Lifo._unpop = Lifo._push

-- Heap entries are {item, seq}: equal priorities come out in put order.
local function default_lt(a, b)
  if type(a) == "table" and type(b) == "table" then
    return a[1] < b[1]
  end
  return a < b
end

local Heap = {}

function Heap._init(self, lt)
  self.heap, self.seq, self.lt = {}, 0, lt or default_lt
end

function Heap._len(self)
  return #self.heap
end

local function before(lt, x, y)
  if lt(x[1], y[1]) then return true end
  if lt(y[1], x[1]) then return false end
  return x[2] < y[2]
end

-- Comparisons come first, moves after: a comparison that raises (items
-- that do not compare, a failing `lt`) leaves the heap as it was, so a
-- failed put or get loses nothing.
local function heappush(self, e)
  local heap, lt = self.heap, self.lt
  local n = #heap + 1
  local i = n -- where e settles: climb while it comes before the parent
  while i > 1 and before(lt, e, heap[i // 2]) do
    i = i // 2
  end
  while n > i do -- the parents on the way move down one level
    heap[n] = heap[n // 2]
    n = n // 2
  end
  heap[i] = e
end

function Heap._push(self, item)
  local s = self.seq + 1
  heappush(self, { item, s })
  self.seq = s
end

function Heap._pop(self)
  local heap, lt = self.heap, self.lt
  local n = #heap
  local top, last = heap[1], heap[n]
  local m = n - 1 -- entries left: 'last' fills the root's hole
  local i = 1     -- where it settles
  while true do
    local c, l = i, 2 * i
    if l <= m then
      c = l
      if l + 1 <= m and before(lt, heap[l + 1], heap[l]) then c = l + 1 end
      if not before(lt, heap[c], last) then c = i end
    end
    if c == i then break end
    i = c
  end
  -- The entries on the path from the root to i move up one level.
  local depth, k = 0, i
  while k > 1 do
    k = k // 2
    depth = depth + 1
  end
  local j = 1
  for d = depth - 1, 0, -1 do
    local c = i >> d
    heap[j] = heap[c]
    j = c
  end
  if m > 0 then heap[i] = last end
  heap[n] = nil
  self.last = top
  return top[1]
end

function Heap._unpop(self, item)
  local last = self.last
  if last and last[1] == item then
    heappush(self, last) -- keeps its place among equal priorities
  else
    Heap._push(self, item)
  end
end

-- }====================================================================

--- @type LightQueue
local LightQueue = {}
LightQueue.__index = LightQueue

local function checksize(maxsize, fname)
  if maxsize ~= nil and (math.type(maxsize) ~= "integer" or maxsize < 0) then
    error(("bad argument #1 to '%s' (non-negative integer or nil "
           .. "expected)"):format(fname), 3)
  end
end

local function class(name, base, storage)
  local c = setmetatable({ __name = name }, { __index = base })
  c.__index = c
  for k, v in pairs(storage) do c[k] = v end
  return c
end

local function new(cls, maxsize, arg)
  local self = setmetatable({ maxsize = maxsize, getters = newq(),
                              putters = newq(), unfinished = 0,
                              joiners = newq() }, cls)
  self:_init(arg)
  return self
end

-- A canceled getter that had been handed an item gives it back.
local function unget(self, item)
  local g = wake_first(self.getters)
  if g then
    g.item = item
  else
    self:_unpop(item)
  end
end

--- Put `item` in the queue. Blocks while the queue is full, unless
-- `block` is false. Never switches when it does not block.
-- @param item any value but nil
-- @tparam[opt=true] boolean block
-- @tparam[opt] number timeout seconds to wait at most
-- @treturn[1] boolean true
-- @return[2] nil, "full" (not blocking) or nil, "timeout"
function LightQueue:put(item, block_, timeout)
  if item == nil then
    error("bad argument #1 to 'put' (a queue item cannot be nil)", 2)
  end
  if timeout ~= nil then checktimeout(timeout, 3, "put") end
  local getters = self.getters
  if getters.head <= getters.tail then -- only when the queue is empty
    local g = wake_first(getters)
    if g then
      g.item = item
      self.unfinished = self.unfinished + 1
      return true
    end
  end
  local maxsize = self.maxsize
  if maxsize == nil or self:_len() < maxsize then
    self:_push(item)
    self.unfinished = self.unfinished + 1
    return true
  end
  if block_ == false then return nil, "full" end
  -- A getter takes the item from our record and marks it done; once
  -- done, the put has happened even if we are canceled afterwards.
  if block(self.putters, timeout, "Queue:put", nil, nil, item) then
    return true
  end
  return nil, "timeout"
end

--- `put(item, false)`.
function LightQueue:put_nowait(item)
  if item == nil then
    error("bad argument #1 to 'put_nowait' (a queue item cannot be nil)", 2)
  end
  return self:put(item, false)
end

-- The longest live putter's item, taken from its record (it is woken).
local function take_putter(self)
  local p = wake_first(self.putters)
  if p then
    self.unfinished = self.unfinished + 1
    local item = p.item
    p.item = nil
    return item
  end
  return nil
end

--- Remove and return the next item. Blocks while the queue is empty,
-- unless `block` is false.
-- @tparam[opt=true] boolean block
-- @tparam[opt] number timeout seconds to wait at most
-- @return the item, or nil, "empty" (not blocking) or nil, "timeout"
-- @raise a kill or foreign Timeout (any item handed over is put back)
function LightQueue:get(block_, timeout)
  if timeout ~= nil then checktimeout(timeout, 2, "get") end
  local putters = self.putters
  if self:_len() > 0 then
    local item = self:_pop()
    if putters.head <= putters.tail then -- room for the longest putter
      local pitem = take_putter(self)
      if pitem ~= nil then self:_push(pitem) end
    end
    return item
  end
  if putters.head <= putters.tail then -- a channel: straight from a putter
    local pitem = take_putter(self)
    if pitem ~= nil then return pitem end
  end
  if block_ == false then return nil, "empty" end
  local ok, item = block(self.getters, timeout, "Queue:get", unget, self)
  if ok then return item end
  return nil, "timeout"
end

--- `get(false)`.
function LightQueue:get_nowait()
  return self:get(false)
end

--- Number of items in the queue (putters blocked on a full queue are
-- not counted).
function LightQueue:qsize()
  return self:_len()
end

--- True if the queue holds no item.
function LightQueue:empty()
  return self:_len() == 0
end

--- True if a `put` would block. A channel (`maxsize` 0) is always full.
function LightQueue:full()
  local maxsize = self.maxsize
  return maxsize ~= nil and self:_len() >= maxsize
end

--- Number of threads blocked in `get`.
function LightQueue:getting()
  return count(self.getters)
end

--- Number of threads blocked in `put`.
function LightQueue:putting()
  return count(self.putters)
end

--- Change `maxsize`; growing lets blocked putters in at once.
function LightQueue:resize(maxsize)
  checksize(maxsize, "resize")
  self.maxsize = maxsize
  while count(self.putters) > 0
    and (maxsize == nil or self:_len() < maxsize) do
    local pitem = take_putter(self)
    if pitem == nil then break end
    self:_push(pitem)
  end
end

--- @type Queue
local Queue = setmetatable({}, { __index = LightQueue })
Queue.__index = Queue

--- Mark one item taken by `get` as processed; `join` returns when every
-- item put has been marked.
-- @raise "task_done() called too many times"
function Queue:task_done()
  local n = self.unfinished
  if n <= 0 then
    error("task_done() called too many times", 2)
  end
  n = n - 1
  self.unfinished = n
  if n == 0 then wake_all(self.joiners) end
end

--- Block until every item put has been marked with `task_done`.
-- @tparam[opt] number timeout seconds to wait at most
-- @treturn boolean true, or false if the timeout expired
function Queue:join(timeout)
  checktimeout(timeout, 1, "join")
  if self.unfinished == 0 then return true end
  local ok = block(self.joiners, timeout, "Queue:join")
  return ok
end

--- Number of items put and not yet marked done.
function Queue:unfinished_tasks()
  return self.unfinished
end

-- {====================================================================
-- put/get specialised for the FIFO classes (LightQueue, Queue): the same
-- steps as LightQueue:put/get with the deque operations inlined. Keep
-- them in step with the generic versions above.

function Fifo.put(self, item, block_, timeout)
  if item == nil then
    error("bad argument #1 to 'put' (a queue item cannot be nil)", 2)
  end
  if timeout ~= nil then checktimeout(timeout, 3, "put") end
  local getters = self.getters
  if getters.head <= getters.tail then -- only when the queue is empty
    local g = wake_first(getters)
    if g then
      g.item = item
      self.unfinished = self.unfinished + 1
      return true
    end
  end
  local maxsize, t = self.maxsize, self.tail
  if maxsize == nil or t - self.head + 1 < maxsize then
    t = t + 1
    self.tail = t
    self[t] = item
    self.unfinished = self.unfinished + 1
    return true
  end
  if block_ == false then return nil, "full" end
  if block(self.putters, timeout, "Queue:put", nil, nil, item) then
    return true
  end
  return nil, "timeout"
end

function Fifo.get(self, block_, timeout)
  if timeout ~= nil then checktimeout(timeout, 2, "get") end
  local h, t = self.head, self.tail
  local putters = self.putters
  if h <= t then
    local item = self[h]
    self[h] = nil
    if h == t then
      self.head, self.tail = 1, 0
    else
      self.head = h + 1
    end
    if putters.head <= putters.tail then -- room for the longest putter
      local p = wake_first(putters)
      if p then
        local pitem = p.item
        p.item = nil
        self.unfinished = self.unfinished + 1
        t = self.tail + 1
        self.tail = t
        self[t] = pitem
      end
    end
    return item
  end
  if putters.head <= putters.tail then -- a channel: straight from a putter
    local p = wake_first(putters)
    if p then
      local pitem = p.item
      p.item = nil
      self.unfinished = self.unfinished + 1
      return pitem
    end
  end
  if block_ == false then return nil, "empty" end
  local ok, item = block(self.getters, timeout, "Queue:get", unget, self)
  if ok then return item end
  return nil, "timeout"
end

-- }====================================================================

local LightQueue_c = class("green.LightQueue", LightQueue, Fifo)
local Queue_c = class("green.Queue", Queue, Fifo)
local LifoQueue_c = class("green.LifoQueue", Queue, Lifo)
local PriorityQueue_c = class("green.PriorityQueue", Queue, Heap)

--- A queue without `task_done`/`join`.
-- @tparam[opt] integer maxsize nil: unbounded; 0: a channel
function M.LightQueue(maxsize)
  checksize(maxsize, "LightQueue")
  return new(LightQueue_c, maxsize)
end

--- A FIFO queue with `task_done`/`join`.
-- @tparam[opt] integer maxsize nil: unbounded; 0: a channel
function M.Queue(maxsize)
  checksize(maxsize, "Queue")
  return new(Queue_c, maxsize)
end

--- A queue that returns the most recently put item first.
function M.LifoQueue(maxsize)
  checksize(maxsize, "LifoQueue")
  return new(LifoQueue_c, maxsize)
end

--- A queue that returns the lowest item first. Items compare with `<`;
-- tables compare by their first element, like eventlet's
-- `(priority, data)` tuples. Equal priorities come out in put order.
-- @tparam[opt] integer maxsize
-- @tparam[opt] function lt `lt(a, b)`: a comes out before b
function M.PriorityQueue(maxsize, lt)
  checksize(maxsize, "PriorityQueue")
  if lt ~= nil and type(lt) ~= "function" then
    error("bad argument #2 to 'PriorityQueue' (function expected)", 2)
  end
  return new(PriorityQueue_c, maxsize, lt)
end

return M
