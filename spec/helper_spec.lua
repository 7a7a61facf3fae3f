-- The spec helper itself (spec/helper.lua): a hung green_run fails with a
-- dump of its threads instead of hanging CI, eventually() is bounded, and
-- subprocesses are killed after their limit.
local green = require "green"
local h = require "helper"

local pair = require("helper").pair

local function assert_hub_empty()
  local st = green.core.stats()
  assert.are.same({ 0, 0, 0 }, { st.threads, st.timers, st.ready })
  assert.are.equal(0, #green.debug.threads() - 1) -- the main thread only
end

describe("green_run's deadline", function()
  it("fails a hung run with a dump of its threads, then empties the hub",
     function()
    local ok, err = pcall(green_run, { deadline = 0.2 }, function()
      local c, s = pair()
      local _ <close> = setmetatable({}, { __close = function()
        c:close(); s:close() -- also when a kill unwinds fn
      end })
      local function stuck_in_receive()
        local line = s:receive()
        return line
      end
      green.spawn(function()
        local line = stuck_in_receive()
        return line
      end).name = "reader"
      local function stuck_forever()
        local v = green.Event():wait()
        return v
      end
      stuck_forever()
      c:send("never\n")
    end)
    assert.is_false(ok)
    assert.matches("green_run: the deadline of 0.2 s passed; every green "
                   .. "thread was killed", err, 1, true)
    -- The hub would have blocked in the poller for good (a read pending,
    -- no timer): the deadline still fired, and the dump says where each
    -- thread was.
    assert.matches("suspended in Event:wait for [%d.]+ s", err)
    assert.matches("'stuck_forever'", err)
    assert.matches("'reader' suspended in socket:receive", err)
    assert.matches("'stuck_in_receive'", err)
    assert.not_matches("green_run deadline", err) -- its own helpers: left out
    assert_hub_empty()
    assert.are.equal("next", green_run(function() return "next" end))
  end)

  it("fires before a long sleep would end", function()
    local ok, err = pcall(green_run, { deadline = 0.1 }, function()
      local function long_nap() green.sleep(3600) end
      long_nap()
    end)
    assert.is_false(ok)
    assert.matches("deadline of 0.1 s passed", err, 1, true)
    assert.matches("suspended in green.sleep", err, 1, true)
    assert.matches("'long_nap'", err, 1, true)
    assert_hub_empty()
  end)

  it("fails a thread that keeps the hub busy past the deadline", function()
    local ok, err = pcall(green_run, { deadline = 0.2 }, function()
      local function spin_here()
        while true do green.sleep(0) end -- never blocks: no poll runs it
      end
      local spinner = green.spawn(function()
        spin_here()
        return "unreachable"
      end)
      spinner.name = "spinner"
      return spinner:wait()
    end)
    assert.is_false(ok)
    assert.matches("green_run: the deadline of 0.2 s passed", err, 1, true)
    assert.matches("'spinner' %(running%) spawned at spec/helper_spec.lua:"
                   .. "%d+ kept the hub busy", err)
    assert.matches("'spinner' running", err, 1, true)
    assert.matches("'spin_here'", err, 1, true)
    assert_hub_empty()
  end)

  it("fails a loop that never yields at all", function()
    local ok, err = pcall(green_run, { deadline = 0.2 }, function()
      local n = 0
      while true do n = n + 1 end
    end)
    assert.is_false(ok)
    assert.matches("green_run: the deadline of 0.2 s passed", err, 1, true)
    assert_hub_empty()
  end)

  it("fails at once, with a dump, when every thread is blocked for good",
     function()
    local ok, err = pcall(green_run, { deadline = 3600 }, function()
      local function nobody_sends()
        local v = green.Event():wait()
        return v
      end
      nobody_sends()
    end)
    assert.is_false(ok)
    assert.matches("^deadlock: ", err)
    assert.matches("suspended in Event:wait", err, 1, true)
    assert.matches("'nobody_sends'", err, 1, true)
    assert_hub_empty()
  end)

  it("names the threads left blocked after fn returned", function()
    local ok, err = pcall(green_run, { deadline = 3600 }, function()
      green.spawn(function() green.Event():wait() end).name = "orphan"
    end)
    assert.is_false(ok)
    assert.matches("hub not empty after green_run: threads left blocked",
                   err, 1, true)
    assert.matches("'orphan' suspended in Event:wait", err, 1, true)
    assert_hub_empty()
  end)

  it("raises fn's error at once, killing the threads that wait on I/O",
     function()
    local ok, err = pcall(green_run, { deadline = 3600 }, function()
      local c, s = pair()
      local _ <close> = setmetatable({}, { __close = function()
        c:close(); s:close() -- also when a kill unwinds fn
      end })
      green.spawn(function() return s:receive() end)
      green.sleep(0)
      error("fn failed")
    end)
    assert.is_false(ok)
    assert.matches("fn failed", err, 1, true)
    assert.not_matches("deadline", err, 1, true)
    assert_hub_empty()
  end)

  it("takes its default from helper.deadline", function()
    local saved = h.deadline
    h.deadline = 0.1
    local ok, err = pcall(green_run, function() green.sleep(3600) end)
    h.deadline = saved
    assert.is_false(ok)
    assert.matches("deadline of 0.1 s passed", err, 1, true)
    assert_hub_empty()
  end)
end)

describe("eventually", function()
  it("returns the condition's first true value", function()
    green_run(function()
      local n = 0
      green.spawn(function()
        for _ = 1, 3 do n = n + 1; green.sleep(0) end
      end)
      assert.are.equal(3, h.eventually(function() return n == 3 and n end))
    end)
  end)

  it("fails with a message after its bound", function()
    green_run(function()
      local ok, err = pcall(h.eventually, function() return false end, 0.05,
                            "the impossible")
      assert.is_false(ok)
      assert.matches("never happened within 0.05 s: the impossible", err,
                     1, true)
    end)
  end)
end)

describe("subprocesses", function()
  it("are killed after their limit, and say so", function()
    local out, err, code = h.sh("echo started; sleep 30", 0.3)
    assert.are.equal(124, code)
    assert.are.equal("started\n", out)
    assert.matches("[helper.sh: killed after 0.3 s: echo started; sleep 30]",
                   err, 1, true)
  end)

  it("keep their exit code and output otherwise", function()
    local out, err, code = h.sh("echo 'it''s'; echo oops >&2; exit 3")
    assert.are.same({ "its\n", "oops\n", 3 }, { out, err, code })
  end)
end)

describe("capture_stderr", function()
  it("returns what fn wrote to io.stderr, then its results", function()
    local real = io.stderr
    local text, a, b = h.capture_stderr(function(x)
      io.stderr:write("one ", 2, "\n")
      return x, "b"
    end, "a")
    assert.are.same({ "one 2\n", "a", "b" }, { text, a, b })
    assert.are.equal(real, io.stderr)
  end)

  it("restores io.stderr when fn fails, and re-raises", function()
    local real = io.stderr
    assert.has_error(function() h.capture_stderr(error, "boom") end, "boom")
    assert.are.equal(real, io.stderr)
  end)
end)
