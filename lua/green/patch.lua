--- green.patch(): make unmodified LuaSocket-based code run green.
--
-- Also installs green `io.popen` and `os.execute` (lua/green/process.lua;
-- `green.patch{process = false}` leaves them alone), so a patched program's
-- subprocesses stop freezing the hub.
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
--   module), and those stay blocking: patch early, before requiring the
--   libraries to be made green. A late patch() says so on stderr (see
--   `late_warning`), naming what was loaded and where patch() was called.
--   To help, patch() forgets the protocol modules above that were loaded
--   against the real socket (they load again, green, on the next
--   require), but tables already held by their callers stay as they were.
-- * `socket.unix` and `socket.serial` are not provided by green.socket;
--   LuaSec's C module works on raw descriptors and cannot run green, so
--   patch() installs green.ssl (lua/green/ssl.lua, LuaSec's API on
--   green.tls) as `package.loaded.ssl`; Debian's `ssl.https` then loads
--   against it. `green.patch{ssl = false}` leaves `ssl` alone.
-- * The objects are tables, not userdata (see green.socket).
-- @module green.patch

local check = require("green.opts").check

local M = {}

-- Protocol modules that capture `socket` when loaded.
local DEPENDENT = { "socket.http", "socket.ftp", "socket.smtp", "socket.tp" }

-- "file:line" of the code that called patch(), skipping greenlua's own
-- wrappers (green.patch in init.lua, this module); nil if unknown.
local function caller()
  for level = 3, 12 do
    local info = debug.getinfo(level, "Sl")
    if info == nil then return nil end
    local src = info.short_src
    if info.what ~= "C" and not src:find("green/init%.lua$")
       and not src:find("green/patch%.lua$") then
      return src .. ":" .. info.currentline
    end
  end
  return nil
end

-- The warning for a patch() that came after LuaSocket was loaded:
-- `names` lists what was loaded ("socket", "socket.core").
local function late_warning(names)
  local at = caller()
  return "green.patch() warning: LuaSocket was already loaded ("
    .. table.concat(names, " and ") .. " in package.loaded) when "
    .. "green.patch() was called" .. (at and (" at " .. at) or "") .. ". "
    .. "Code that took the real module before now (for example "
    .. "`local socket = require \"socket\"` at the top of a module) keeps "
    .. "it, and its sockets block the whole hub instead of one green "
    .. "thread; only later `require \"socket\"` calls get green sockets. "
    .. "Fix: call green.patch() before anything requires \"socket\" "
    .. "(first thing in the main script, or "
    .. "`greenlua -e 'require(\"green\").patch()' script.lua`).\n"
end

-- {=== green.patch{fs = true}: io's files through green.fs (opt-in)
--
-- io.open and io.lines(filename) become green.fs.open and green.fs.lines
-- (C closures of their own, so errors name io.open and io.lines as the
-- standard ones do); io.close and io.type also accept green files. Where
-- a green thread cannot wait (a finalizer, a hub callback; inside a C-call
-- boundary it parks its C stack and waits), io.open and io.lines fall back to
-- the standard ones, which block the hub as they always did. io.read,
-- io.write, io.input, io.output, io.lines() (the default input) and the
-- standard files stay io's: they are the process's stdin and stdout,
-- whose reads libuv's thread pool could not take back from a killed
-- reader. Not undone by a later green.patch() (which leaves io alone).
local io_std -- io's own functions, once replaced

local function patch_io()
  if io_std then return end
  local core = require "green.core"
  io_std = { open = io.open, lines = io.lines, close = io.close,
             type = io.type }
  -- luacheck: push ignore 122
  io.open, io.lines, io.close, io.type =
    core.fs.io_functions(io_std.open, io_std.lines, io_std.close)
  -- luacheck: pop
end
-- }===

-- {=== processes (issue 10): green io.popen and os.execute. Where the
-- caller cannot block (a finalizer, a hub callback; inside a C-call
-- boundary a green thread parks its C stack and waits) they fall back to
-- the stock functions, which block the hub but work.
local stock_popen, stock_execute = io.popen, os.execute

local function green_popen(prog, mode)
  if require("green.core").cansuspend() then
    return require("green.process").popen(prog, mode)
  end
  return stock_popen(prog, mode)
end

local function green_execute(cmd)
  if require("green.core").cansuspend() then
    return require("green.process").execute(cmd)
  end
  return stock_execute(cmd)
end

local function patch_process()
  io.popen = green_popen -- luacheck: ignore 122
  os.execute = green_execute -- luacheck: ignore 122
end
-- }===

--- Install green.socket as `socket` and `socket.core`; returns it.
-- Warns on stderr if LuaSocket was loaded already (see the caveats).
-- `opts.fs = true` also routes io's files through green.fs (above).
-- Also installs green `io.popen` and `os.execute` (green.process) unless
-- `opts.process` is false.
local OPTIONS = { fs = true, process = true, ssl = true }

function M.patch(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'patch' (table expected, got " .. type(opts)
          .. ")", 2)
  end
  if opts then check(opts, OPTIONS, 1, "patch", 2) end
  if not (opts and opts.process == false) then patch_process() end
  local gsocket = require "green.socket"
  local loaded = package.loaded
  local old = loaded.socket
  local late = {}
  if old ~= nil and old ~= gsocket then late[#late + 1] = "socket" end
  local oldcore = loaded["socket.core"]
  if oldcore ~= nil and oldcore ~= gsocket then
    late[#late + 1] = "socket.core"
  end
  if #late > 0 then
    io.stderr:write(late_warning(late))
    io.stderr:flush()
  end
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
  if not (opts and opts.ssl == false) then
    local gssl = require "green.ssl"
    if loaded.ssl ~= nil and loaded.ssl ~= gssl then
      loaded["ssl.https"] = nil -- loaded against the real one: load again
    end
    loaded.ssl = gssl
  end
  if opts and opts.fs then patch_io() end
  return gsocket
end

return M
