-- Child processes and signals, green: several commands run at once while
-- a heartbeat keeps ticking, a slow one is killed by its timeout, output
-- is streamed line by line from a pipe, and SIGTERM stops the program
-- cleanly through a handler.
--
--   greenlua examples/subprocess.lua
local green = require "green"
local process = green.process

local beats = 0
local heart = green.spawn(function()
  while true do
    beats = beats + 1
    green.sleep(0.01)
  end
end)

-- Three commands at once: each run suspends only its own thread.
local beats0 = beats
local pile = green.GreenPile()
for _, n in ipairs { 3, 1, 2 } do
  pile:spawn(process.run, string.format("sleep 0.%d; echo slept %d", n, n))
end
for ok, out in pile do io.write(tostring(ok), " ", out) end
print("the heartbeat beat while they ran:", beats > beats0)

-- A command that overstays its timeout is killed (SIGKILL) and reaped.
local ok, _, _, how = process.run({ "sleep", "60" }, { timeout = 0.2 })
print("sleep 60:", ok, how)

-- Input in, output out, without deadlock however much either holds.
local _, upper = process.run({ "tr", "a-z", "A-Z" },
                             { input = ("green "):rep(20000) })
print("tr returned", #upper, "bytes:", upper:sub(1, 12))

-- A pipe read line by line while the child writes.
do
  local p <close> = assert(process.spawn {
    "sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.05; done",
    stdout = "pipe" })
  for line in function() return p.stdout:receive("*l") end do
    print("from the child:", line)
  end
  print("child ended:", p:wait())
end

-- The io.popen look-alike (what green.patch() installs as io.popen).
local f = assert(process.popen("printf 'a\\nb\\n'"))
for line in f:lines() do print("popen line:", line) end
print("popen close:", f:close())

-- SIGTERM, handled in a green thread: here the program sends it to
-- itself; a service would get it from its supervisor.
local stop = green.Event()
local handle = green.signal("TERM", function(signum)
  print("got signal", signum, "- stopping")
  stop:send()
end)
local stat = assert(io.open("/proc/self/stat"))
local pid = math.tointeger(stat:read("n"))
stat:close()
green.spawn(process.run, { "kill", "-TERM", tostring(pid) })
stop:wait()
handle:cancel()

heart:kill()
