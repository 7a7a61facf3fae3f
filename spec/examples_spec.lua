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

  it("subprocess.lua: commands at once, a timeout, pipes, popen, SIGTERM",
     function()
    assert.are.equal(table.concat({
      "true slept 3", "true slept 1", "true slept 2",
      "the heartbeat beat while they ran:\ttrue",
      "sleep 60:\tfalse\ttimeout",
      "tr returned\t120000\tbytes:\tGREEN GREEN ",
      "from the child:\tline 1", "from the child:\tline 2",
      "from the child:\tline 3", "child ended:\texit\t0",
      "popen line:\ta", "popen line:\tb", "popen close:\ttrue\texit\t0",
      "got signal\t15\t- stopping", "" }, "\n"),
      example("subprocess.lua"))
  end)

  it("starved_heartbeat.lua (seed 001): detection names the burst, the "
     .. "time slice keeps the heartbeat on time", function()
    local out = example("starved_heartbeat.lua", "1.5")
    -- It names the task and the line of the computation.
    assert.matches("blocking detected: thread %d+ %('periodic_task'%) kept "
                   .. "the hub for [%d.]+ s, running Lua code at\n%s+"
                   .. "examples/starved_heartbeat.lua:3[6-9]:", out)
    local reports, starved, kept =
      out:match("reports: (%d+); gap without the slice ([%d.]+) s, with "
                .. "it ([%d.]+) s")
    assert.are.equal("1", reports)
    -- Without the slice the 1.5 s burst silenced the heartbeat; with it,
    -- the heartbeat kept beating through the same burst.
    assert.is_true(tonumber(starved) >= 1.0, out)
    assert.is_true(tonumber(kept) < tonumber(starved) / 2, out)
  end)

  it("fork_threads.lua (seed 003): the child does not run the parent's "
     .. "loop", function()
    local out = example("fork_threads.lua")
    assert.are.equal(table.concat({
      "child: on_fork hook runs (open the child's own clients here)",
      "child: listen_redis is gone, its rounds in the child: 0",
      "parent: the child ended (exit 0); listen_redis is running, 3 or "
        .. "more rounds here",
    }, "\n") .. "\n", out)
  end)

  it("prefork_chat.lua (seed 003): workers share messages through Redis",
     function()
    local out = example("prefork_chat.lua", "0 demo")
    assert.matches("started redis%-server on 127%.0%.0%.1:%d+", out)
    local n = 0
    for i, w, got, all, lines in out:gmatch(
        "client (%d) %(worker (%d)%) got (%d)/(%d): ([^\n]*)") do
      n = n + 1
      assert.are.equal("4", got, out)
      assert.are.equal("4", all, out)
      assert.are.equal(tonumber(i) <= 2 and "1" or "2", w)
      -- every client has the lines posted on both workers
      for c = 1, 4 do
        assert.matches("%[worker " .. (c <= 2 and 1 or 2)
                       .. "%] hello from client " .. c, lines)
      end
    end
    assert.are.equal(4, n, out)
    assert.matches("redis-server stopped", out, 1, true)
  end)

  it("prefork_chat.lua: SIGKILLed, it takes its redis-server with it",
     function()
    if not h.has_tool("redis-server") then
      return pending("redis-server is not installed")
    end
    local green = require "green"
    -- however this ends: the example, and its redis-server if it
    -- outlived the example
    local pid, rpid
    finally(function()
      if pid then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
      if rpid then os.execute("kill -KILL " .. rpid .. " 2>/dev/null") end
    end)
    green_run(function()
      local proc = assert(green.process.spawn {
        h.greenlua, "examples/prefork_chat.lua", "0",
        stdout = "pipe", stderr = "stdout" })
      pid = proc.pid
      proc.stdout:settimeout(30)
      local out, rport = {}, nil
      local line
      repeat
        local err
        line, err = proc.stdout:receive("*l")
        out[#out + 1] = line or ("(" .. tostring(err) .. ")")
        rport = rport or line and line:match("redis%-server on [%d.]+:(%d+)")
      until not line or line:match("^chat on ")
      assert(rport and line, table.concat(out, "\n"))
      local ps = h.sh("unset LD_PRELOAD; ps -eo pid=,args=")
      rpid = ps:match("(%d+) redis%-server 127%.0%.0%.1:" .. rport)
      assert(rpid, ps)
      local c = assert(green.connect("127.0.0.1", tonumber(rport)))
      c:close()
      proc:kill("KILL") -- no cleanup runs; its workers are TERMed
      assert.are.equal("signal", (proc:wait(10)))
      pid = nil
      proc.stdout:close()
      h.eventually(function()
        return not os.execute("kill -0 " .. rpid .. " 2>/dev/null")
          or h.sh("unset LD_PRELOAD; ps -o stat= -p " .. rpid):match("^Z")
      end, 30, "redis-server " .. rpid .. " gone")
      rpid = nil
      assert.is_nil(green.connect("127.0.0.1", tonumber(rport)))
    end)
  end)

  it("two_loops.lua (seed 003): two loops that never sleep both run",
     function()
    local out = example("two_loops.lua")
    local a = tonumber(out:match("poll_redis%s+(%d+)"))
    local b = tonumber(out:match("push_websockets%s+(%d+)"))
    assert.is_true(a > 0 and b > 0, out)
    assert.is_true(tonumber(out:match("preemptions: (%d+)")) > 0)
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
