-- green.tpool under attack: what the pool hands to a caller that never
-- runs again. The leaks these look for are memory only: ASan's leak
-- detector (the sanitized build, LD_PRELOAD inherited by the script's
-- lua5.4) reports them on stderr and fails the exit code.
local h = require "helper"

describe("green.tpool at the close of the state", function()
  it("frees the results of callers woken by their task, never run since",
     function()
    -- The tasks end while the hub does not turn (the main thread spins
    -- on stats()), so one turn hands all results over and wakes their
    -- callers after the main thread, which then ends the script: the
    -- state closes with every caller woken and none run.
    local out, err, code = h.lua54_run([[
local green = require "green"
local tpool = green.tpool
local ran = 0
for i = 1, 8 do
  green.spawn(function()
    tpool.execute(function(n) return ("r"):rep(1000 * n) end, i)
    ran = ran + 1
  end)
end
green.sleep(0) -- the callers submit their tasks
local deadline = os.time() + 20
while tpool.stats().completed < 8 do -- the hub does not turn: a spin
  assert(os.time() < deadline, "the tasks never ended")
end
green.sleep(0) -- the hub takes the results in and wakes their callers
print("callers that ran after their task: " .. ran)
]], 60)
    assert.equal(0, code, err)
    assert.equal("", err)
    assert.equal("callers that ran after their task: 0\n", out)
  end)
end)
