--- A generic pool of reusable items (connections, clients), after
-- eventlet's `eventlet.pools.Pool`.
--
--     local pool = green.pools.Pool{create = connect, max_size = 4}
--     local conn <close> = pool:item()   -- put back when the block exits
--     conn:query("...")                   -- methods reach the item
--
-- At most `max_size` items exist; `get` creates one while fewer exist and
-- blocks once all are out. `put` hands the item straight to the longest
-- waiter and never switches threads. A `create` that fails (or is killed)
-- frees its slot and lets the next waiter create instead, so no waiter is
-- stranded. An item put back after the pool shrank is discarded. Each
-- item out of the pool is handed to one thread only: a waiter killed
-- after it was handed an item passes it on, and putting back an item
-- that is not out raises.
--
-- The free items and the waiters are one C queue (bindings/queue.c, a
-- LightQueue, or a LifoQueue for `order_as_stack`): `get` takes from it
-- and blocks in it, `put` puts into it, which hands the item straight to
-- the longest waiter. A slot to create an item in travels through the
-- queue as a token, so a waiter killed after it was handed an item or a
-- slot passes it on as the queue does for any item.
-- @module green.pools

local core = require "green.core"
local check = require("green.opts").check
local callable_arg = require("green.opts").callable_arg

local setmetatable, error, type, pcall, rawget, rawset, mtype =
  setmetatable, error, type, pcall, rawget, rawset, math.type
local newqueue, poolget = core.queue.new, core.queue.poolget
local LIGHTQUEUE <const>, LIFOQUEUE <const> = 1, 3 -- bindings/queue.c

local M = {}

--- @type Pool
local Pool = { __name = "green.pools.Pool" }
Pool.__index = Pool

local function checksize(n, what, fname)
  if mtype(n) ~= "integer" or n < 0 then
    error(("bad argument to '%s' (%s: non-negative integer expected)")
          :format(fname, what), 3)
  end
  return n
end

-- What a waiter is handed instead of an item: a slot to create one in.
-- Found among the free items, it is one too (a get creates in it).
local SLOT = setmetatable({}, { __name = "green.pools.slot" })

local function no_create()
  error("green.pools.Pool: no create function was given", 2)
end

local function mark_out(self, item)
  local out = self.out
  out[item] = (out[item] or 0) + 1
  return item
end

-- Why a value `create` returned cannot be an item, or nil: the pool
-- keeps its items as table keys (which items are out), and a queue item
-- cannot be nil.
local function not_an_item(item)
  if item == nil then return "nil" end
  if item ~= item then return "NaN (an item must be usable as a table key)" end
end

local OPTIONS = { create = true, min_size = true, max_size = true,
                  order_as_stack = true }

--- Create a pool.
-- @tparam table opts `create` (function returning a new item),
--   `min_size` (0: items created now), `max_size` (4),
--   `order_as_stack` (false: reuse items round robin)
-- @treturn Pool
function M.Pool(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'Pool' (table of options expected)", 2)
  end
  check(opts, OPTIONS, 1, "Pool", 2)
  local create = opts.create or no_create
  callable_arg(create, 1, "Pool", 2, false, "create")
  local min_size = checksize(opts.min_size or 0, "min_size", "Pool")
  local max_size = checksize(opts.max_size or 4, "max_size", "Pool")
  if min_size > max_size then -- it would create min_size items anyway
    error(("bad argument #1 to 'Pool' (min_size %d is larger than max_size "
           .. "%d)"):format(min_size, max_size), 2)
  end
  local stack = opts.order_as_stack == true
  local self = setmetatable({ create = create, max_size = max_size,
                              order_as_stack = stack, current_size = 0,
                              freeq = newqueue(stack and LIFOQUEUE
                                              or LIGHTQUEUE),
                              out = {} }, Pool)
  for _ = 1, min_size do
    local item = create()
    local bad = not_an_item(item)
    if bad then error("green.pools.Pool: create returned " .. bad, 2) end
    self.current_size = self.current_size + 1
    self.freeq:put(item)
  end
  return self
end

-- A slot is free (an item was destroyed or never created): let the
-- longest waiter create one.
local function pass_slot(self)
  if self.current_size < self.max_size and self.freeq:getting() > 0 then
    self.current_size = self.current_size + 1
    self.freeq:put(SLOT) -- handed to the waiter
  end
end

-- Create an item in a slot the caller holds (current_size counts it).
local function create_item(self)
  local ok, item = pcall(self.create)
  local bad = ok and not_an_item(item)
  if bad then
    ok, item = false, "green.pools.Pool: create returned " .. bad
  end
  if not ok then
    self.current_size = self.current_size - 1
    pass_slot(self)
    error(item, 0)
  end
  return mark_out(self, item)
end

--- Take an item: a free one, else a new one while fewer than `max_size`
-- exist, else wait for one to be put back.
-- @return the item
-- @raise create's error; a kill or Timeout (nothing is taken then)
function Pool:get()
  local free = self.freeq
  local item = free:get_nowait()
  if item == nil then
    if self.current_size < self.max_size then
      self.current_size = self.current_size + 1
      return create_item(self)
    end
    item = poolget(free) -- blocks; a kill hands what it got to the next
  end
  if item == SLOT then return create_item(self) end
  return mark_out(self, item)
end

--- Give back an item taken with `get`. Never switches threads.
-- @raise if `item` is not out of this pool
function Pool:put(item)
  local out = self.out
  local n = item ~= nil and out[item]
  if not n then
    error("bad argument #1 to 'put' (item is not out of this pool)", 2)
  end
  out[item] = n > 1 and n - 1 or nil
  if self.current_size > self.max_size then -- shrunk: discard it
    self.current_size = self.current_size - 1
    return
  end
  self.freeq:put(item) -- to the longest waiter, else with the free items
end

--- Number of items a `get` could take without blocking: free items plus
-- items not created yet.
function Pool:free()
  local f = self.freeq:qsize() + self.max_size - self.current_size
  return f > 0 and f or 0
end

--- Number of threads blocked in `get`.
function Pool:waiting()
  return self.freeq:getting()
end

--- Change `max_size`. Growing lets waiters create items at once;
-- shrinking discards free items now and others as they are put back.
function Pool:resize(n)
  self.max_size = checksize(n, "size", "resize")
  local free = self.freeq
  while self.current_size > n and free:qsize() > 0 do
    free:get_nowait()
    self.current_size = self.current_size - 1
  end
  while self.current_size < n and free:getting() > 0 do
    pass_slot(self)
  end
end

-- {====================================================================
-- item(): to-be-closed and callback forms

local ITEM, POOL, BOUND = {}, {}, {}

local Handle = { __name = "green.pools.item" }

-- The item behind a handle; after the handle was closed the item belongs
-- to the pool again (maybe to another thread): using it is an error.
local function item_of(h)
  local item = rawget(h, ITEM)
  if item == nil then
    error("green.pools: item used after it was put back into its pool", 3)
  end
  return item
end

function Handle.__close(h)
  local pool = rawget(h, POOL)
  if pool then
    local item = rawget(h, ITEM)
    rawset(h, POOL, nil)
    rawset(h, ITEM, nil)
    rawset(h, BOUND, nil)
    pool:put(item)
  end
end

-- Methods of the item, called through the handle, get the item as self.
-- Bound methods are cached off the handle's own fields, so every access
-- still comes through here and is checked.
function Handle.__index(h, k)
  local v = item_of(h)[k]
  if type(v) ~= "function" then return v end
  local bound = rawget(h, BOUND)
  if not bound then
    bound = {}
    rawset(h, BOUND, bound)
  end
  local f = bound[k]
  if not f then
    f = function(self, ...)
      if self == h then self = item_of(h) end
      return v(self, ...)
    end
    bound[k] = f
  end
  return f
end

function Handle.__newindex(h, k, v)
  item_of(h)[k] = v
end

local function put_back(pool, item, ok, ...)
  pool:put(item)
  if not ok then error((...), 0) end
  return ...
end

--- Borrow an item for a scope.
-- `local conn <close>, raw = pool:item()`: `conn` forwards field and
-- method access to the item (`raw`) and puts it back when closed.
-- `pool:item(fn)`: returns `fn(item)`'s results; the item is put back
-- even if `fn` raises.
-- @tparam[opt] function fn
-- @return the handle and the item, or fn's results
function Pool:item(fn)
  callable_arg(fn, 1, "item", 2, true)
  local item = self:get()
  if fn == nil then
    return setmetatable({ [ITEM] = item, [POOL] = self }, Handle), item
  end
  return put_back(self, item, pcall(fn, item))
end

-- }====================================================================

M.Pool_mt = Pool
return M
