--- One-shot events, after eventlet's `eventlet.event.Event`: any number
-- of threads `wait`; one `send` (or `send_exception`) wakes them all, in
-- the order they started waiting, without switching threads.
--
-- The class is in C (bindings/event.c: waiting, hand-off and every
-- method); this module is its name. A parked waiter holds no Lua
-- allocation of its own, only its C frame. Methods: `wait([timeout])`,
-- `send(...)`, `send_exception(err)`, `ready()`, `has_exception()`,
-- `waiting()`, `reset()` (see docs/api.md).
-- @module green.event

local core = require "green.core"

local M = {}

--- A fresh event (not sent).
-- @treturn Event
M.Event = core.event.new

--- The metatable of Event objects (its `__index` holds the methods).
M.Event_mt = core.event.Event_mt

return M
