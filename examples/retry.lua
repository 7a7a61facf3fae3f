-- retry.lua: the Nova pattern of plug_vifs(): try an operation, and on
-- failure sleep before the next attempt, up to max_retry times, while other
-- green threads keep running (see ../shared/seeds/004, "greenthread.sleep").
--   ./build/greenlua examples/retry.lua
-- A heartbeat ticks every 0.25 s throughout: the retry loop's sleeps
-- suspend only the retrying thread, never the hub.
local green = require "green"

local RETRY_DELAY = tonumber(arg and arg[1]) or 1.0 -- Nova sleeps 1 s

-- A flaky operation: fails on the first two attempts.
local attempts = 0
local function plug_vifs(instance)
  attempts = attempts + 1
  if attempts < 3 then
    error(string.format("plug_vifs(%s): device busy", instance), 0)
  end
  return "plugged " .. instance
end

local function with_retries(max_retry, fn, ...)
  for cnt = 1, max_retry do
    local ok, result = pcall(fn, ...)
    if ok then return result end
    if cnt == max_retry then error(result, 0) end
    print(string.format("attempt %d failed (%s); retry up to %d", cnt,
                        result, max_retry))
    green.sleep(RETRY_DELAY)
  end
end

local beats = 0
local heartbeat = green.spawn(function()
  while true do
    beats = beats + 1
    print("heartbeat " .. beats)
    green.sleep(RETRY_DELAY / 4)
  end
end)

local task = green.spawn(with_retries, 5, plug_vifs, "instance-1")
print("result: " .. task:wait())
heartbeat:kill()
print(string.format("%d attempts, %d heartbeats meanwhile", attempts, beats))
