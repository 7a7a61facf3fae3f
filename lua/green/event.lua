--- One-shot events, after eventlet's `eventlet.event.Event`: any number
-- of threads `wait`; one `send` (or `send_exception`) wakes them all, in
-- the order they started waiting, without switching threads.
-- @module green.event

local waiters = require "green.waiters"

local setmetatable, error = setmetatable, error
local pack, unpack = table.pack, table.unpack
local newq, count, block, wake_all, checktimeout =
  waiters.new, waiters.count, waiters.block, waiters.wake_all,
  waiters.checktimeout

local M = {}

--- @type Event
local Event = { __name = "green.Event" }
Event.__index = Event

--- A fresh event (not sent).
-- @treturn Event
function M.Event()
  return setmetatable({ waiters = newq() }, Event)
end

--- Wait until the event is sent; at once if it has been.
-- @tparam[opt] number timeout seconds to wait at most
-- @return the values given to `send`, or nil, "timeout" if `timeout`
--   expired first
-- @raise the error given to `send_exception`; a kill or foreign Timeout
function Event:wait(timeout)
  if timeout ~= nil then checktimeout(timeout, 1, "wait") end
  local res = self.result
  if res == nil then
    local ok
    ok, res = block(self.waiters, timeout, "Event:wait")
    if not ok then return nil, "timeout" end
  end
  if res.err then error(res.exc, 0) end
  local n = res.n
  if n == 1 then return res[1] end
  return unpack(res, 1, n)
end

local function deliver(self, res)
  if self.result then
    error("Trying to re-send() an already-triggered event", 3)
  end
  self.result = res
  wake_all(self.waiters, res)
end

--- Wake every waiter with `...` (once: a second send raises). Never
-- switches threads.
function Event:send(...)
  deliver(self, pack(...))
end

--- Wake every waiter raising `err` (its `wait` re-raises it), once.
function Event:send_exception(err)
  if err == nil then
    error("bad argument #1 to 'send_exception' (error value expected)", 2)
  end
  deliver(self, { n = 0, err = true, exc = err })
end

--- True once sent.
function Event:ready()
  return self.result ~= nil
end

--- True if sent with `send_exception`.
function Event:has_exception()
  local res = self.result
  return res ~= nil and res.err == true
end

--- Number of threads waiting.
function Event:waiting()
  return count(self.waiters)
end

--- Make a sent event fresh again, so it can be sent once more.
-- @raise if the event has not been sent
function Event:reset()
  if not self.result then
    error("Trying to re-reset() a fresh event", 2)
  end
  self.result = nil
end

M.Event_mt = Event
return M
