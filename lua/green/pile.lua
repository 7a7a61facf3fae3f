--- An ordered collection of green threads' results, after eventlet's
-- `GreenPile`: spawn work, then iterate over the results in spawn order.
--
--     local pile = green.GreenPile(8)
--     for _, url in ipairs(urls) do pile:spawn(fetch, url) end
--     for body in pile do ... end      -- or pile:results()
--
-- A pile runs its threads in its own GreenPool or in a shared one. An
-- error in a thread is raised by `next` when its turn comes; the pile can
-- be read on afterwards. As with any Lua iterator, a nil result ends a
-- generic `for`; call `next` directly if results can be nil.
-- @module green.pile

local core = require "green.core"
local pool = require "green.pool"
local queue = require "green.queue"

local setmetatable, error, getmetatable, mtype, pcall =
  setmetatable, error, getmetatable, math.type, pcall
local observe = core.observe
local read = require("green.waiters").read
local callable_arg = require("green.opts").callable_arg

local M = {}

--- @type GreenPile
local GreenPile = { __name = "green.GreenPile" }
GreenPile.__index = GreenPile

--- Create a pile.
-- @tparam[opt=1000] integer|GreenPool size_or_pool size of a pool of its
--   own, or a pool to share
-- @treturn GreenPile
function M.GreenPile(size_or_pool)
  local p
  if getmetatable(size_or_pool) == pool.GreenPool_mt then
    p = size_or_pool
  elseif size_or_pool == nil
         or mtype(size_or_pool) == "integer" and size_or_pool >= 0 then
    p = pool.GreenPool(size_or_pool or 1000)
  else
    error("bad argument #1 to 'GreenPile' (non-negative integer or "
          .. "GreenPool expected)", 2)
  end
  return setmetatable({ pool = p, waiters = queue.LightQueue(), counter = 0,
                        used = false }, GreenPile)
end

-- Handed to a reader blocked in `next` for a thread that will never
-- come: it returns nothing, as `next` does once every thread was read.
local NONE = setmetatable({}, { __name = "green.GreenPile.none" })

-- The count went down (a spawn failed, a thread was read): readers
-- blocked beyond the threads still to be read would wait for ever. Hand
-- them NONE. (Readers block only while nothing is queued: every thread
-- the counter counts is still on its way.)
local function release_readers(self)
  local w = self.waiters
  for _ = 1, w:getting() - self.counter do w:put(NONE) end
end

--- Run `fn(...)` in the pile's pool (blocks while the pool is full).
-- @treturn GreenThread
function GreenPile:spawn(fn, ...)
  callable_arg(fn, 1, "spawn", 2)
  self.used = true
  self.counter = self.counter + 1
  local ok, gt = pcall(self.pool.spawn, self.pool, fn, ...)
  if not ok then -- a kill or Timeout while the pool was full
    self.counter = self.counter - 1
    release_readers(self)
    error(gt, 0)
  end
  observe(gt) -- its error is raised by next(), not reported
  self.waiters:put(gt)
  return gt
end

-- Only a thread read to its end (result or error) leaves the pile: a
-- kill or Timeout interrupting the wait keeps it for the next call, also
-- when it came just as the thread ended.
local function finish(self, gt, ok, ...)
  if ok == nil then
    self.waiters:_unpop(gt)
    error((...), 0)
  end
  self.counter = self.counter - 1
  release_readers(self)
  if not ok then error((...), 0) end
  return ...
end

--- The results of the next thread in spawn order (waits for it), or
-- nothing once every spawned thread has been read.
-- @raise the thread's error
function GreenPile:next()
  local w = self.waiters
  while self.counter > 0 do
    local gt = w:get() -- a spawn may still be in progress
    if gt ~= NONE then return finish(self, gt, read(gt)) end
    -- Nothing for us, unless more threads are still to be read than
    -- other readers wait (a NONE a killed reader gave back, taken by a
    -- reader that was not one too many): then read on.
    if self.counter <= w:getting() then return end
  end
end

--- `for result in pile do`: the generic-for call.
function GreenPile.__call(self)
  return self:next()
end

--- An iterator over the results: `for r in pile:results() do`.
function GreenPile:results()
  return function() return self:next() end
end

--- Number of threads spawned and not yet read.
function GreenPile:count()
  return self.counter
end

M.GreenPile_mt = GreenPile
core.internal(GreenPile.spawn) -- spawn sites name the user's call

return M
