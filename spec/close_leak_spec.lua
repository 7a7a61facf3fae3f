-- What a blocking call hands to a green thread that never runs again: the
-- state closes (the end of a stock lua5.4 script) after the thread's wait
-- ended and before its continuation ran. The runtime calls each such
-- wait's 'drop' in gl_hub_close (docs/internals.md). green.fs and
-- green.tpool: fs_attack_spec.lua, tpool_attack_spec.lua.
local h = require "helper"
local S = require "fs_support"

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

  it("frees the requests of green.fs path calls whose threads never ran",
     function()
    -- Memory only: ASan's leak detector (the sanitized build, LD_PRELOAD
    -- inherited by lua5.4) reports the requests and scandir entries, and
    -- fails the exit code; without ASan the spec cannot fail. One worker
    -- (UV_THREADPOOL_SIZE=1; a worker's stack may still point to the
    -- last request it ran, which then does not count as leaked): a FIFO
    -- open holds it while 24 path calls queue behind it, then another
    -- FIFO open; the main thread lets the first go and completes the last
    -- with blocking io.opens, so every path call has ended before the
    -- hub turns again, and that one turn wakes their threads after the
    -- main thread, which ends the script.
    local d = os.tmpname()
    os.remove(d)
    assert(os.execute("mkdir -m 700 " .. d))
    finally(function() os.execute("rm -rf " .. d) end)
    local script = d .. "/script.lua"
    local f = assert(io.open(script, "w"))
    f:write(("local dir = %q\n"):format(d), [[
local green = require "green"
local fs = green.fs
]] .. S.script_fifos .. [[
local a, b = fifo("a"), fifo("b")
green.spawn(function() return fs.open(a, "r") end)
until_inflight(1)
local ran = 0
for _ = 1, 8 do
  green.spawn(function() fs.scandir("/usr/bin") ran = ran + 1 end)
  green.spawn(function() fs.stat("/") ran = ran + 1 end)
  green.spawn(function() fs.realpath("/usr/bin/..") ran = ran + 1 end)
end
green.spawn(function() return fs.open(b, "r") end)
until_inflight(26)
-- the hub does not turn from here to the wait below
local wa = assert(io.open(a, "w")) -- the worker is free: the calls run
local wb = assert(io.open(b, "w")) -- returns once they all have
local deadline = os.time() + 20
repeat -- one turn: their callbacks wake them after this thread
  green.sleep(0)
  assert(os.time() < deadline, "the path calls never called back")
until fs.stats().inflight <= 1 -- b's open may not have called back
io.stdout:write("threads that ran after their call: ", ran, "\n")
wa:close()
wb:close()
]])
    f:close()
    local out, err, code = S.run_pool_script(script, 1)
    assert.equal(0, code, err)
    assert.equal("", err)
    assert.equal("threads that ran after their call: 0\n", out)
  end)
end)
