--- A bounded set of green threads, after eventlet's
-- `eventlet.greenpool.GreenPool`.
--
-- `spawn` blocks while the pool is full. A thread of the pool that spawns
-- into its own full pool would wait for itself; as in eventlet, the
-- function then runs inline in the calling thread instead.
--
-- `local pool <close> = green.GreenPool(8)` waits for the pool's threads
-- when the block exits.
-- @module green.pool

local core = require "green.core"
local waiters = require "green.waiters"
local callable_arg = require("green.opts").callable_arg

local setmetatable, error, type, select, pcall, tostring =
  setmetatable, error, type, select, pcall, tostring
local unpack, pack = table.unpack, table.pack
local mtype = math.type
local spawn, getcurrent, observe, outcome =
  core.spawn, core.getcurrent, core.observe, core.outcome
local rawequal = rawequal
local newq, count, block, wake_first, wake_all, read =
  waiters.new, waiters.count, waiters.block, waiters.wake_first,
  waiters.wake_all, waiters.read

local M = {}

--- @type GreenPool
local GreenPool = { __name = "green.GreenPool" }
GreenPool.__index = GreenPool

local function checksize(size, fname)
  if mtype(size) ~= "integer" or size < 0 then
    error(("bad argument #1 to '%s' (non-negative integer expected)")
          :format(fname), 3)
  end
  return size
end

--- Create a pool.
-- @tparam[opt=1000] integer size most threads running at once
-- @treturn GreenPool
function M.GreenPool(size)
  size = checksize(size == nil and 1000 or size, "GreenPool")
  return setmetatable({ size = size, nrunning = 0, threads = {},
                        slotq = newq(), idleq = newq() }, GreenPool)
end

-- A slot is free: hand it to the longest waiter, or keep it.
local function release_slot(self)
  local slotq = self.slotq
  if slotq.head <= slotq.tail and self.nrunning <= self.size
     and wake_first(slotq) then
    return -- the waiter now owns the slot: nrunning unchanged
  end
  local n = self.nrunning - 1
  self.nrunning = n
  if n == 0 then wake_all(self.idleq) end
end

-- Link run when a pool thread ends (also if killed before it started).
local function on_done(gt, self)
  self.threads[gt] = nil
  release_slot(self)
end

-- A waiter canceled after it was handed a slot passes the slot on.
local function unslot(self)
  release_slot(self)
end

local function acquire_slot(self)
  local n = self.nrunning
  if n < self.size then
    self.nrunning = n + 1
    return
  end
  block(self.slotq, nil, "GreenPool:spawn", unslot, self)
end

local function start(self, fn, ...)
  local gt = spawn(fn, ...)
  self.threads[gt] = true
  core.on_end(gt, on_done, self) -- not a link: errors are still reported
  return gt
end

-- The inline case: a pool thread spawning into its own full pool. The
-- results (or error) are delivered through a thread of their own, so the
-- caller still gets a GreenThread to wait on. An interrupt of the caller
-- itself (its kill, its Timeout: the last error it was sent) raised in
-- `fn` is not `fn`'s outcome: it goes on in the caller, as it would have
-- out of a spawn that blocked.
local function inline(ok, ...)
  if not ok then
    local e = ...
    if e ~= nil and rawequal(e, outcome(getcurrent())) then error(e, 0) end
  end
  return ok, ...
end

local function done_thread(ok, ...)
  if ok then
    return spawn(function(...) return ... end, ...)
  end
  local err = ...
  return spawn(function() error(err, 0) end)
end

--- Run `fn(...)` in a new green thread of the pool. Blocks while the pool
-- is full; a thread of this pool calling it on a full pool runs `fn`
-- inline instead (no deadlock).
-- @treturn GreenThread
function GreenPool:spawn(fn, ...)
  callable_arg(fn, 1, "spawn", 2)
  if self.nrunning >= self.size and self.threads[getcurrent()] then
    return done_thread(inline(pcall(fn, ...)))
  end
  acquire_slot(self)
  return start(self, fn, ...)
end

--- Like `spawn`, but returns nothing.
function GreenPool:spawn_n(fn, ...)
  callable_arg(fn, 1, "spawn_n", 2)
  if self.nrunning >= self.size and self.threads[getcurrent()] then
    local ok, err = inline(pcall(fn, ...))
    if not ok then spawn(function() error(err, 0) end) end
    return
  end
  acquire_slot(self)
  start(self, fn, ...)
end

--- Block until no thread of the pool is running. Does not re-raise their
-- errors (wait on the threads for that).
-- @raise if called from one of the pool's own threads (it would never
--   return)
function GreenPool:waitall()
  if self.threads[getcurrent()] then
    error("Calling waitall() from within one of the GreenPool's green "
          .. "threads will never terminate.", 2)
  end
  while self.nrunning > 0 do
    block(self.idleq, nil, "GreenPool:waitall")
  end
end

GreenPool.__close = GreenPool.waitall

--- Number of threads running (or holding a slot).
function GreenPool:running()
  return self.nrunning
end

--- Number of spawns that would not block now (0 after a shrink below the
-- running count).
function GreenPool:free()
  local f = self.size - self.nrunning
  return f > 0 and f or 0
end

--- Number of threads blocked in `spawn`.
function GreenPool:waiting()
  return count(self.slotq)
end

--- Change the size. Growing lets blocked spawns go at once; shrinking
-- waits for running threads to end.
function GreenPool:resize(size)
  size = checksize(size, "resize")
  self.size = size
  while self.nrunning < size and wake_first(self.slotq) do
    self.nrunning = self.nrunning + 1
  end
end

-- {====================================================================
-- imap / starmap

-- Turn a table (sequence) or an iterator function into a function that
-- returns the next value, or nil at the end.
local function iterator(x, argn, fname)
  if type(x) == "table" then
    local i = 0
    return function()
      i = i + 1
      return x[i]
    end
  elseif type(x) == "function" then
    return x
  end
  error(("bad argument #%d to '%s' (table or iterator function expected, "
         .. "got %s)"):format(argn, fname, tostring(type(x))), 3)
end

local function identity(...)
  return ...
end

-- The ordered window: up to `size` threads spawned ahead of the consumer,
-- so memory is bounded by the pool size however long the input is.
-- `nextargs()` returns true and the next call's arguments, or false at
-- the end of the input.
local function mapper(self, fn, nextargs)
  local ring, head, tail = {}, 1, 0
  local exhausted = false
  local held -- the arguments of a spawn that a kill or Timeout interrupted
  local function push(more, ...)
    if not more then
      exhausted = true
      return
    end
    local ok, gt = pcall(self.spawn, self, fn, ...) -- blocks if full
    if not ok then
      held = pack(...) -- taken from the input: spawned next time
      error(gt, 0)
    end
    observe(gt) -- its error is raised by the consumer, not reported
    tail = tail + 1
    ring[tail] = gt
  end
  local function fill()
    local size = self.size > 0 and self.size or 1
    while not exhausted and tail - head + 1 < size do
      if held then
        local args = held
        held = nil
        push(true, unpack(args, 1, args.n))
      else
        push(nextargs())
      end
    end
  end
  local function finish(ok, ...)
    if ok == nil then
      error((...), 0) -- we were interrupted: the item stays at the head
    end
    ring[head] = nil
    head = head + 1
    if not ok then error((...), 0) end
    return ...
  end
  local function step()
    fill()
    if head > tail then return nil end
    return finish(read(ring[head]))
  end
  core.internal(push)
  core.internal(fill)
  core.internal(step)
  return step
end

--- Results of `fn(a, b, ...)` over the given tables or iterator functions
-- taken in step (stops at the shortest), in input order, computed
-- concurrently in the pool. At most the pool's size of calls run or wait
-- ahead of the consumer. An error in one call is raised when its result
-- is reached; the iterator can be called again for the rest. A nil
-- result ends a generic `for` (as with any Lua iterator).
-- @tparam function|nil fn nil returns the arguments themselves
-- @param ... tables (sequences) or iterator functions
-- @treturn function iterator
function GreenPool:imap(fn, ...)
  if fn == nil then fn = identity end
  callable_arg(fn, 1, "imap", 2)
  local n = select("#", ...)
  if n == 0 then
    error("bad argument #2 to 'imap' (table or iterator expected)", 2)
  end
  local its = {}
  for i = 1, n do its[i] = iterator((select(i, ...)), i + 1, "imap") end
  local nextargs
  if n == 1 then
    local it = its[1]
    nextargs = function()
      local v = it()
      if v == nil then return false end
      return true, v
    end
  else
    nextargs = function()
      local args = {}
      for i = 1, n do
        local v = its[i]()
        if v == nil then return false end
        args[i] = v
      end
      return true, unpack(args, 1, n)
    end
  end
  return mapper(self, fn, nextargs)
end

--- Like `imap`, but each input item is a table of arguments, unpacked
-- (`t.n` honoured).
-- @tparam function fn
-- @param iterable a table of argument tables, or an iterator of them
-- @treturn function iterator
function GreenPool:starmap(fn, iterable)
  callable_arg(fn, 1, "starmap", 2)
  local it = iterator(iterable, 2, "starmap")
  local nextargs = function()
    local args = it()
    if args == nil then return false end
    if type(args) ~= "table" then
      error("starmap: each item must be a table of arguments", 0)
    end
    return true, unpack(args, 1, args.n or #args)
  end
  return mapper(self, fn, nextargs)
end

-- }====================================================================

M.GreenPool_mt = GreenPool
-- Spawn sites name the user's call, not these wrappers.
for _, f in ipairs { start, done_thread, GreenPool.spawn, GreenPool.spawn_n,
                     GreenPool.imap, GreenPool.starmap } do
  core.internal(f)
end

return M
