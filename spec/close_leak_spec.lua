-- What a blocking call hands to a green thread that never runs again: the
-- state closes (the end of a stock lua5.4 script) after the thread's wait
-- ended and before its continuation ran. The runtime calls each such
-- wait's 'drop' in gl_hub_close (docs/internals.md). green.fs and
-- green.tpool: fs_attack_spec.lua, tpool_attack_spec.lua.
local h = require "helper"

describe("the close of the state", function()
  it("reaps a forked child whose waiter was woken but never ran", function()
    -- The child ended and its waiter (green.process.wait) was woken, but
    -- the main thread, queued first, ends the script: the continuation
    -- that reaps never runs. The hub's close reaps it: no zombie left for
    -- a host that goes on after lua_close. A finalizer made before green
    -- (so run after its hub closed) reports the child's state.
    local out, err, code = h.lua54_run([[
local function pstate(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return "gone" end
  local s = f:read("a")
  f:close()
  return s:match("^%d+ %(.-%) (%a)")
end
local child
local after = setmetatable({}, {__gc = function()
  io.stdout:write("child after the close: ", pstate(child), "\n")
end})
local green = require "green"
local flag = os.tmpname()
os.remove(flag)
local pid = green.fork()
if pid == 0 then -- ends once the parent's waiter waits
  local deadline = os.time() + 20
  while not io.open(flag) and os.time() < deadline do end
  os.exit(0, false)
end
child = pid
local ran = 0
local gt = green.spawn(function()
  green.process.wait(pid)
  ran = ran + 1
end)
green.sleep(0)
assert(tostring(gt):find("suspended", 1, true), tostring(gt))
assert(io.open(flag, "w")):close()
local deadline = os.time() + 20
repeat -- each turn queues the main thread before the woken waiter
  green.sleep(0)
  assert(os.time() < deadline, "the waiter was never woken")
until tostring(gt):find("(ready)", 1, true)
os.remove(flag)
print("ran: " .. ran .. ", child: " .. pstate(pid))
_ = after
]], 60)
    assert.equal(0, code, err)
    assert.equal("ran: 0, child: Z\nchild after the close: gone\n", out)
  end)
end)
