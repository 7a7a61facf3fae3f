--- What prefork_spec and prefork_attack_spec share: a master script run
-- as a greenlua subprocess, and the state of a pid.
local green = require "green"
local h = require "helper"

local S = {}

--- Run the greenlua script `src` (a master: its first stdout line is
-- "port <port> ..."). Returns the Process, the port, and a table of its
-- stderr lines, filled in by a green thread as they come. A start that
-- fails kills the process (its workers go with it) and raises.
function S.start_master(src, env)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  local p = assert(green.process.spawn { h.greenlua, path, stdout = "pipe",
                                         stderr = "pipe", env = env })
  -- until it is handed to the caller (a <close> variable there), a
  -- failure here kills the master
  local handed
  local _ <close> = setmetatable({}, { __close = function()
    if not handed then getmetatable(p).__close(p) end
  end })
  p.stdout:settimeout(30)
  local line = p.stdout:receive("*l")
  os.remove(path)
  local errs = {}
  green.spawn(function()
    p.stderr:settimeout(120)
    while true do
      local l = p.stderr:receive("*l")
      if not l then return end
      errs[#errs + 1] = l
    end
  end)
  assert(line, "the master did not start: " .. table.concat(errs, "\n"))
  local port = assert(math.tointeger(tonumber(line:match("^port (%d+)"))))
  handed = true
  return p, port, errs
end

--- Is `pid` running (alive and not a zombie)?
function S.running(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local st = f:read("a"):match("^%d+ %b() (%u)")
  f:close()
  return st ~= "Z"
end

return S
