--- Introspection of the live green threads: `green.debug.threads()` and
-- `green.debug.dump([file])` (the list itself comes from
-- bindings/debug.c).
-- @module green.debug

local core = require "green.core"

local format, concat, gsub = string.format, table.concat, string.gsub
local tostring, type, error = tostring, type, error

local M = {}

--- Every live green thread, the host's main thread (id 0) first, then in
-- spawn order. Each entry is a table: `thread` (the GreenThread), `id`,
-- `name`, `state` ("new", "delayed", "ready", "running", "suspended"),
-- `waiting_in` (what a suspended thread is blocked in, e.g.
-- "socket:receive") and `waiting_for` (seconds it has been waiting there,
-- by the hub's loop clock), `site` ("file:line" where it was spawned) and
-- `traceback` (its Lua traceback; nil until it has started).
-- @treturn table the list
M.threads = core.threads

-- One entry as text: a heading line, then its traceback indented.
local function describe(e)
  local s = format("#%d", e.id)
  if e.name then s = s .. format(" '%s'", tostring(e.name)) end
  if e.id == 0 then s = s .. " (main)" end
  if e.waiting_in then
    s = s .. format(" suspended in %s for %.3f s", e.waiting_in,
                    e.waiting_for)
  else
    s = s .. " " .. e.state
  end
  if e.site then s = s .. ", spawned at " .. e.site end
  local tb = e.traceback or "(not started)"
  return s .. "\n    " .. gsub(tb, "\n", "\n    ")
end

--- The dump of a list from `threads()` as text.
-- @tparam table list
-- @treturn string
function M.format(list)
  local parts = { format("green threads: %d live", #list) }
  for i = 1, #list do parts[#parts + 1] = describe(list[i]) end
  return concat(parts, "\n  ") .. "\n"
end

--- Write a readable dump of every live green thread (what `threads()`
-- returns) to `file`: io.stderr by default, or any object with a
-- `:write(string)` method. Returns `file`.
-- @param[opt=io.stderr] file
function M.dump(file)
  file = file or io.stderr
  local w = (type(file) == "table" or type(file) == "userdata")
            and file.write
  if not w then
    error("bad argument #1 to 'dump' (file or object with :write expected)",
          2)
  end
  file:write(M.format(core.threads()))
  if file.flush then file:flush() end
  return file
end

return M
