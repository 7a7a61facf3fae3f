-- Issue 7, fault 7: a NaN duration compares false with everything, so it
-- passed every range check and was then cast to an integer (undefined
-- behaviour; in practice a wait forever). Every place that takes a
-- duration refuses it with a clear error.
local green = require "green"
local NaN = 0 / 0

local function refuses(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "a NaN duration was accepted")
  assert.matches("NaN", tostring(err))
end

describe("a NaN duration", function()
  it("is refused by sleep, spawn_after, Timeout and with_timeout",
     function()
    green_run(function()
      refuses(green.sleep, NaN)
      refuses(green.spawn_after, NaN, function() end)
      refuses(green.Timeout, NaN)
      refuses(green.with_timeout, NaN, function() end)
    end)
  end)

  it("is refused by socket timeouts, select and connect", function()
    green_run(function()
      local server = assert(green.listen("127.0.0.1", 0))
      local _, port = server:getsockname()
      refuses(server.settimeout, server, NaN)
      refuses(green.select, { server }, nil, NaN)
      refuses(green.connect, "127.0.0.1", port, { timeout = NaN })
      refuses(green.connect_unix, "/nonexistent.sock", { timeout = NaN })
      local u = assert(green.udp())
      refuses(u.settimeout, u, NaN)
      u:close()
      server:close()
    end)
  end)

  it("is refused by the toolkit's waits", function()
    green_run(function()
      refuses(green.Event().wait, green.Event(), NaN)
      local q = green.Queue()
      refuses(q.get, q, true, NaN)
      refuses(q.put, green.Queue(0), 1, true, NaN)
      refuses(green.Semaphore(0).acquire, green.Semaphore(0), true, NaN)
      local lc = green.LoopingCall(function() end)
      refuses(lc.start, lc, NaN)
      refuses(lc.start, lc, 1, NaN)
      local dl = green.DynamicLoopingCall(function() return 1 end)
      refuses(dl.start, dl, NaN)
      refuses(dl.start, dl, nil, NaN)
    end)
  end)

  it("returned by a DynamicLoopingCall's function stops it with an error",
     function()
    green_run(function()
      local dl = green.DynamicLoopingCall(function() return NaN end)
      dl:start()
      local ok, err = pcall(dl.wait, dl)
      assert.is_false(ok)
      assert.matches("next interval", err)
    end)
  end)
end)
