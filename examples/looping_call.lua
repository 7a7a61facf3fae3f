-- The Nova pattern (seeds/004): wait for an instance to finish rebooting
-- by polling it every 0.5 s with a LoopingCall that stops by raising
-- LoopingCallDone, while a heartbeat LoopingCall keeps its 1 s cadence
-- (measured start to start, so the polls never push it back).
--
-- Run: ./build/greenlua examples/looping_call.lua
local green = require "green"

local t0 = green.now()
local function stamp()
  return string.format("[%4.1fs]", green.now() - t0)
end

-- A simulated hypervisor: the instance reboots for about 2.2 s.
local instance = { state = "REBOOTING", ready_at = t0 + 2.2 }
local function get_state(inst)
  green.sleep(0.05) -- an API round trip
  if inst.state == "REBOOTING" and green.now() >= inst.ready_at then
    inst.state = "ACTIVE"
  end
  return inst.state
end

local beats = 0
local heartbeat = green.LoopingCall(function()
  beats = beats + 1
  print(stamp() .. " heartbeat " .. beats)
end):start(1)

local polls = 0
local poller = green.LoopingCall(function(inst)
  polls = polls + 1
  local state = get_state(inst)
  print(stamp() .. " instance state: " .. state)
  if state == "ACTIVE" then
    error(green.LoopingCallDone(polls))
  end
end, instance):start(0.5)

local n = poller:wait()
print(stamp() .. " instance is ACTIVE after " .. n .. " polls")
green.sleep(1.1) -- one more heartbeat, on cadence
heartbeat:stop()
heartbeat:wait()
print("heartbeat overruns: " .. heartbeat.overruns)
