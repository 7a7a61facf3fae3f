-- Every example runs, so none can rot.
local h = require "helper"

local function example(name, args)
  local out, err, code = h.sh(h.greenlua .. " examples/" .. name .. " "
                              .. (args or ""))
  assert.are.equal(0, code, err)
  return out
end

describe("examples", function()
  it("hello.lua: overlapping sleeps, results in spawn order", function()
    local out = example("hello.lua")
    local wakes = {}
    for name in out:gmatch("(%a+)%s+wakes") do wakes[#wakes + 1] = name end
    assert.are.same({ "blue", "green", "red" }, wakes)
    local results = {}
    for r in out:gmatch("result:\t(%u+)") do results[#results + 1] = r end
    assert.are.same({ "RED", "GREEN", "BLUE" }, results)
  end)

  it("retry.lua: retries with sleeps while the heartbeat runs", function()
    local out = example("retry.lua", "0.05")
    assert.matches("attempt 1 failed", out)
    assert.matches("attempt 2 failed", out)
    assert.matches("result: plugged instance%-1", out)
    local attempts, beats = out:match("(%d+) attempts, (%d+) heartbeats")
    assert.are.equal("3", attempts)
    -- two retry sleeps of 4 beat intervals each: the heartbeat kept going
    assert.is_true(tonumber(beats) >= 3, out)
    -- and it beat between the failed attempts, not only before or after
    assert.matches("attempt 1 failed.-heartbeat %d+.-attempt 2 failed", out)
  end)
end)
