--- green.patch(): make unmodified LuaSocket-based code run green.
--
-- Installs green.socket (lua/green/socket.lua) as `package.loaded.socket`
-- and `package.loaded["socket.core"]` (one table, as in LuaSocket), so
-- that every later `require "socket"` gets it. LuaSocket's pure-Lua
-- protocol modules (`socket.http`, `socket.ftp`, `socket.smtp`,
-- `socket.tp`, `socket.url`, `socket.headers`, `ltn12`, `mime`) are not
-- replaced: they load from the system's LuaSocket as usual and, because
-- they `require "socket"`, pick up the green module. Idempotent; returns
-- the module.
--
-- Caveats:
-- * Code that loaded the real LuaSocket before patch() keeps the
--   references it took (`local socket = require "socket"` at the top of a
--   module): patch early, before requiring the libraries to be made green.
--   To help, patch() forgets the protocol modules above that were loaded
--   against the real socket (they load again, green, on the next
--   require), but tables already held by their callers stay as they were.
-- * `socket.unix` and `socket.serial` are not provided by green.socket;
--   `ssl` (LuaSec) works on raw descriptors and cannot run green.
-- * The objects are tables, not userdata (see green.socket).
-- @module green.patch

local M = {}

-- Protocol modules that capture `socket` when loaded.
local DEPENDENT = { "socket.http", "socket.ftp", "socket.smtp", "socket.tp" }

--- Install green.socket as `socket` and `socket.core`; returns it.
function M.patch()
  local gsocket = require "green.socket"
  local loaded = package.loaded
  local old = loaded.socket
  if old ~= nil and old ~= gsocket then
    for _, name in ipairs(DEPENDENT) do
      local mod = loaded[name]
      if mod ~= nil and old[name:match("%.(%w+)$")] == mod then
        loaded[name] = nil
      end
    end
  end
  loaded.socket = gsocket
  loaded["socket.core"] = gsocket
  return gsocket
end

return M
