-- Loaded by busted before the specs (see .busted).
local green = require "green"

local helper = {}

--- Run `fn(...)` as a green thread and return its results once it and
-- every thread it left behind are done. A failed assertion or an error
-- inside `fn`, or in any green thread that nobody waited for, is raised
-- here, so busted reports it on the right `it`. The hub must be empty
-- afterwards: a leftover thread or timer fails the test.
function _G.green_run(fn, ...)
  local errors = {}
  local old = green.on_error(function(gt, err, tb)
    errors[#errors + 1] = { gt = tostring(gt), err = err, tb = tb }
  end)
  local results = table.pack(pcall(green.run, fn, ...))
  local drained, derr = pcall(green.run)
  green.on_error(old)
  if not results[1] then error(results[2], 0) end
  if not drained then error(derr, 0) end
  if #errors > 0 then
    local e = errors[1]
    error(string.format("unobserved error in %s: %s\n%s", e.gt,
                        tostring(e.err), e.tb or ""), 0)
  end
  local s = green.core.stats()
  if s.threads ~= 0 or s.timers ~= 0 or s.ready ~= 0 then
    error(string.format("hub not empty after green_run: %d threads, "
                        .. "%d timers, %d ready", s.threads, s.timers,
                        s.ready), 0)
  end
  return table.unpack(results, 2, results.n)
end

--- Path of the built greenlua executable.
local build = os.getenv("GREENLUA_BUILD") or "./build"
helper.greenlua = build .. "/greenlua"

--- Run a shell command; return its stdout, stderr and exit code.
function helper.sh(cmd)
  local out, errf = os.tmpname(), os.tmpname()
  local ok, _, code = os.execute(cmd .. " >" .. out .. " 2>" .. errf)
  local function slurp(p)
    local f = assert(io.open(p, "rb"))
    local s = f:read("a")
    f:close()
    os.remove(p)
    return s
  end
  return slurp(out), slurp(errf), ok and 0 or code
end

--- Run a Lua snippet under `greenlua` (in a subprocess).
function helper.greenlua_run(src, args)
  local p = os.tmpname()
  local f = assert(io.open(p, "w"))
  f:write(src)
  f:close()
  local out, err, code = helper.sh(helper.greenlua .. " " .. p .. " "
                                   .. (args or ""))
  os.remove(p)
  return out, err, code
end

--- Run a Lua snippet under stock lua5.4 with the build tree on the path.
function helper.lua54_run(src)
  local p = os.tmpname()
  local f = assert(io.open(p, "w"))
  f:write(src)
  f:close()
  local out, err, code = helper.sh(
    "LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' "
    .. "LUA_CPATH='" .. build .. "/?.so;;' "
    .. "lua5.4 " .. p)
  os.remove(p)
  return out, err, code
end

package.loaded["helper"] = helper
return helper
