-- The toolkit's one rule for the timeout of a call (docs/api.md,
-- "Reading this reference"): nil is no limit, a negative number is 0 (do
-- not wait: expire at once), NaN raises. The exceptions keep LuaSocket's
-- contract: a socket's own timeout (settimeout) and green.select take a
-- negative value as no limit.
local green = require "green"
local process = require "green.process"
local signal = require "green.signal"
local http = require "green.http"

local NaN = 0 / 0

local function at_once(what, fn)
  local t = green.Timeout(20, what .. ": a negative timeout waited")
  local r = table.pack(fn())
  t:cancel()
  return r
end

describe("a negative timeout", function()
  it("expires at once in every wait that takes one", function()
    green_run(function()
      local r = at_once("Event:wait", function()
        return green.Event():wait(-1)
      end)
      assert.same({ n = 2, nil, "timeout" }, r)
      r = at_once("Semaphore:acquire", function()
        return green.Semaphore(0):acquire(true, -1)
      end)
      assert.is_false(r[1])
      r = at_once("Queue:get", function()
        return green.Queue():get(true, -1)
      end)
      assert.same({ n = 2, nil, "timeout" }, r)
      r = at_once("Queue:put", function()
        local q = green.Queue(1)
        q:put(1)
        return q:put(2, true, -1)
      end)
      assert.same({ n = 2, nil, "timeout" }, r)
      local ok, err = pcall(green.with_timeout, -1, green.sleep, 10)
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
    end)
  end)

  it("is 0 for Process:wait and green.process.wait (they waited for ever)",
     function()
    green_run(function()
      local p = assert(process.spawn({ "sleep", "30" }))
      local r = at_once("Process:wait", function() return p:wait(-1) end)
      assert.same({ n = 2, nil, "timeout" }, r)
      r = at_once("green.process.wait", function()
        return process.wait(p.pid, -0.5)
      end)
      assert.same({ n = 2, nil, "timeout" }, r)
      p:kill()
      assert.equal("signal", (p:wait(20)))
    end)
  end)

  it("is 0 for process.run and Process:communicate", function()
    green_run(function()
      local r = at_once("process.run", function()
        return process.run({ "sleep", "30" }, { timeout = -1 })
      end)
      assert.equal("timeout", r[4])
    end)
  end)

  it("is 0 for green.signal.wait (it waited for ever)", function()
    green_run(function()
      local r = at_once("green.signal.wait", function()
        return signal.wait("USR2", -1)
      end)
      assert.same({ n = 2, nil, "timeout" }, r)
    end)
  end)

  it("is 0 for green.connect's and green.connect_unix's opts.timeout",
     function()
    green_run(function()
      -- a listener that never accepts: the connect completes in the
      -- kernel, but a zero timeout has expired before the hub sees it
      local srv = assert(green.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local ok, a, b = pcall(green.connect, "127.0.0.1", port,
                             { timeout = -1 })
      assert.is_true(ok)
      local z, zerr = green.connect("127.0.0.1", port, { timeout = 0 })
      -- -1 behaves as 0 does, whatever 0 does on this machine
      assert.equal(z == nil, a == nil)
      assert.equal(zerr, b)
      if a then a:close() end
      if z then z:close() end
      srv:close()
      local path = os.tmpname()
      os.remove(path)
      local u = assert(green.listen_unix(path))
      local c1, e1 = green.connect_unix(path, { timeout = -1 })
      local c0, e0 = green.connect_unix(path, { timeout = 0 })
      assert.equal(c0 == nil, c1 == nil)
      assert.equal(e0, e1)
      if c1 then c1:close() end
      if c0 then c0:close() end
      u:close()
      os.remove(path)
    end)
  end)

  it("leaves an options table without a timeout unlimited", function()
    green_run(function()
      -- a listener whose accept queue is full: a connect to it hangs
      local port, cleanup = require("helper").unresponsive_listener()
      local got
      local connector = green.spawn(function()
        got = table.pack(green.connect("127.0.0.1", port,
                                       { family = "inet" }))
      end)
      require("helper").until_suspended(connector, "green.connect")
      assert.is_nil(got)
      connector:kill()
      cleanup()
    end)
  end)

  it("stays LuaSocket's 'no limit' for a socket's own timeout", function()
    green_run(function()
      local srv = assert(green.listen("127.0.0.1", 0))
      srv:settimeout(-1)
      assert.is_nil(srv:gettimeout())
      srv:close()
    end)
  end)
end)

describe("a NaN timeout", function()
  local cases = {
    { "green.sleep", function() green.sleep(NaN) end },
    { "green.Timeout", function() green.Timeout(NaN) end },
    { "green.with_timeout", function() green.with_timeout(NaN, print) end },
    { "Event:wait", function() green.Event():wait(NaN) end },
    { "Semaphore:acquire",
      function() green.Semaphore(0):acquire(true, NaN) end },
    { "CappedSemaphore:acquire",
      function() green.CappedSemaphore(0, 1):acquire(true, NaN) end },
    { "Queue:get", function() green.Queue():get(true, NaN) end },
    { "Queue:join", function()
        local q = green.Queue()
        q:put(1)
        q:join(NaN)
      end },
    { "green.select", function() green.select({}, {}, NaN) end },
    { "Process:wait", function()
        local p = assert(process.spawn({ "true" }))
        local ok, err = pcall(p.wait, p, NaN)
        p:wait(20)
        error(ok and "no error" or err, 0)
      end },
    { "process.run", function() process.run({ "true" }, { timeout = NaN }) end,
      "timeout must be a number of seconds" },
    { "green.signal.wait", function() signal.wait("USR2", NaN) end,
      "number of seconds expected" },
    { "green.connect", function()
        green.connect("127.0.0.1", 1, { timeout = NaN })
      end },
    { "green.connect_unix", function()
        green.connect_unix("/nonexistent", { timeout = NaN })
      end },
    { "sock:settimeout", function()
        local s <close> = assert(green.listen("127.0.0.1", 0))
        s:settimeout(NaN)
      end },
    { "client:request", function()
        http.Client():request { url = "http://127.0.0.1:1/",
                                      timeout = NaN }
      end, "timeout: non-negative number expected" },
    { "http.Client idle_timeout", function()
        http.Client { idle_timeout = NaN }
      end, "idle_timeout: non-negative number expected" },
    { "http.websocket", function()
        http.websocket("ws://127.0.0.1:1/", { timeout = NaN })
      end },
    { "tls handshake_timeout", function()
        green.connect("127.0.0.1", 1, { tls = { handshake_timeout = NaN } })
      end },
  }
  for _, c in ipairs(cases) do
    it("raises a clear error in " .. c[1], function()
      green_run(function()
        local ok, err = pcall(c[2])
        assert.is_false(ok, c[1] .. " took NaN")
        assert.matches(c[3] or "NaN", tostring(err), 1, true)
      end)
    end)
  end
end)
