-- Seed 003, problem 1: after fork, the child ran the parent's loop.
--
-- The seed's service started a thread that listened to Redis; under
-- gevent's monkey-patching that "thread" was a greenlet, and when
-- gunicorn forked its workers the greenlet was copied and went on
-- looping in every child. In greenlua, green.fork() has defined
-- semantics: in the child only the green thread that called fork goes
-- on; every other green thread of the parent is gone without running
-- another instruction (buried as killed), its timers and waits with it.
-- Clients are opened anew in the child with green.on_fork.
--
-- Run: ./build/greenlua examples/fork_threads.lua
local green = require "green"
local getpid = green.process.getpid

-- The seed's listen_redis loop: counts its rounds per process.
local rounds = {}
local function listen_redis()
  while true do
    local pid = getpid()
    rounds[pid] = (rounds[pid] or 0) + 1
    green.sleep(0.01)
  end
end

local listener = green.spawn(listen_redis)
listener.name = "listen_redis"
local parent = getpid()
while (rounds[parent] or 0) < 3 do green.sleep(0.01) end -- it runs here

green.on_fork(function()
  print("child: on_fork hook runs (open the child's own clients here)")
end)

local pid = green.fork()
if pid == 0 then
  local me = getpid()
  -- Give the parent's loop every chance to run here: it does not.
  for _ = 1, 10 do green.sleep(0.01) end
  print(("child: listen_redis is %s, its rounds in the child: %d")
        :format(listener:dead() and "gone" or "running", rounds[me] or 0))
  os.exit(0)
end

local how, code = green.process.wait(pid)
print(("parent: the child ended (%s %d); listen_redis is %s, %s rounds "
       .. "here"):format(how, code, listener:dead() and "gone" or "running",
                         rounds[parent] >= 3 and "3 or more" or "fewer than 3"))
listener:kill()
