-- green.serve: the accept loop (lua/green/socket.lua, issue 4).
local green = require "green"

local h = require "helper"
local eventually = h.eventually

-- Is some green thread suspended in `what`?
local function waits_in(what)
  for _, e in ipairs(green.debug.threads()) do
    if e.waiting_in == what then return true end
  end
  return false
end

local function server()
  local srv = assert(green.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  return srv, port
end

local function talk(port, msg)
  local c = assert(green.connect("127.0.0.1", port))
  c:send(msg .. "\n")
  local r, err = c:receive()
  c:close()
  return r, err
end

describe("green.serve", function()
  it("runs a handler per connection and ends on StopServe", function()
    green_run(function()
      local srv, port = server()
      local done = false
      local loop = green.spawn(function()
        local r = { green.serve(srv, function(c, addr)
          assert.matches("^127%.0%.0%.1:%d+$", addr)
          local line = assert(c:receive())
          if line == "stop" then error(green.StopServe) end
          c:send(line:upper() .. "\n")
        end) }
        done = true
        return table.unpack(r)
      end)
      assert.are.equal("ONE", talk(port, "one"))
      assert.are.equal("TWO", talk(port, "two"))
      assert.is_false(done)
      -- the handler ends without replying: the client sees the close
      assert.are.same({ nil, "closed" }, { talk(port, "stop") })
      assert.is_nil(loop:wait()) -- serve returned, nothing reported
      assert.is_true(done)
      srv:close()
    end)
  end)

  it("runs at most `concurrency` handlers at once", function()
    green_run(function()
      local srv, port = server()
      local running, maxrunning, started = 0, 0, 0
      local release = {}
      local loop = green.spawn(green.serve, srv, function(c)
        running = running + 1
        started = started + 1
        if running > maxrunning then maxrunning = running end
        local line = assert(c:receive())
        local me = green.getcurrent()
        release[#release + 1] = me
        green.suspend() -- until the test lets it go
        running = running - 1
        c:send(line .. "\n")
        if line == "5" then error(green.StopServe) end
      end, 2)
      local clients = {}
      for i = 1, 5 do
        clients[i] = green.spawn(talk, port, tostring(i))
      end
      -- Wait until everything that can run has: all five clients sent
      -- their line and wait for the answer, two handlers hold their slot,
      -- and the accept loop waits for room. Then only two have started.
      eventually(function()
        for i = 1, 5 do
          if not h.suspended(clients[i], "socket:receive") then
            return false
          end
        end
        return #release == 2 and waits_in("green.serve (at the "
                                          .. "concurrency limit)")
      end, "five clients waiting, the accept loop at its limit")
      green.sleep(0) -- a third handler, if spawned, would run now
      assert.are.equal(2, started)
      -- free the slots one at a time; a third never overlaps the two
      local woken = 0
      while woken < 5 do
        eventually(function() return #release > woken end,
                   "handler " .. woken + 1 .. " started")
        woken = woken + 1
        assert(green.wake(release[woken]))
      end
      for i = 1, 5 do assert.are.equal(tostring(i), clients[i]:wait()) end
      loop:wait()
      assert.are.equal(2, maxrunning)
      assert.are.equal(5, started)
      srv:close()
    end)
  end)

  it("reports a handler's error and keeps serving", function()
    local reported = {}
    green_run(function()
      local old = green.on_error(function(_, err)
        reported[#reported + 1] = tostring(err)
      end)
      local srv, port = server()
      local loop = green.spawn(green.serve, srv, function(c)
        local line = assert(c:receive())
        if line == "boom" then error("handler exploded") end
        c:send("ok " .. line .. "\n")
        if line == "last" then error(green.StopServe) end
      end)
      assert.are.same({ nil, "closed" }, { talk(port, "boom") })
      assert.are.equal("ok fine", talk(port, "fine"))
      assert.are.equal("ok last", talk(port, "last"))
      loop:wait()
      green.on_error(old)
      srv:close()
    end)
    assert.are.equal(1, #reported)
    assert.matches("handler exploded", reported[1])
  end)

  it("checks its server argument at the call (issue 7)", function()
    green_run(function()
      local listener = assert(green.listen("127.0.0.1", 0))
      local _, port = listener:getsockname()
      local client = assert(green.connect("127.0.0.1", port))
      local function refused(x, what)
        local ok, err = pcall(green.serve, x, function() end)
        assert.is_false(ok)
        assert.matches("bad argument #1 to 'serve' %(listening socket "
                       .. "expected, got " .. what .. "%)", err)
      end
      refused(nil, "nil")
      refused({}, "table")
      refused(client, "connected socket")
      refused(assert(green.udp()), "unconnected socket")
      client:close()
      listener:close()
    end)
  end)

  it("returns nil, 'closed' when the server socket is closed", function()
    green_run(function()
      local srv = server()
      local loop = green.spawn(green.serve, srv, function() end)
      green.sleep(0)
      srv:close()
      assert.are.same({ nil, "closed" }, { loop:wait() })
    end)
  end)

  it("stops its accept loop when the serving thread is killed", function()
    green_run(function()
      local srv, port = server()
      local loop = green.spawn(green.serve, srv, function(c)
        c:send("hi\n")
      end)
      assert.are.equal("hi", talk(port, "x"))
      loop:kill()
      -- nothing accepts any more; the hub is left empty (green_run checks)
      srv:settimeout(0)
      assert.are.same({ nil, "timeout" }, { srv:accept() })
      srv:close()
    end)
  end)

  it("ends with a Timeout around it", function()
    green_run(function()
      local srv = server()
      local ok, err = pcall(green.with_timeout, 0.02, green.serve, srv,
                            function() end)
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
      srv:close()
    end)
  end)

  it("examples/echo_server.lua --demo: three clients, then shutdown",
     function()
    local out, err, code = h.sh(h.greenlua
                                .. " examples/echo_server.lua 0 --demo")
    assert.are.equal(0, code, err)
    assert.matches("echo server on 127%.0%.0%.1:%d+", out)
    for i = 1, 3 do
      assert.matches("echo: client " .. i .. " says hi\n", out, 1, true)
    end
    assert.are.equal(3, select(2, out:gsub("echo: bye", "")))
    assert.are.equal(3, select(2, out:gsub("connection from", "")))
    assert.are.equal(3, select(2, out:gsub("closed 127", "")))
    assert.matches("serve:\tnil\tclosed", out, 1, true)
  end)

  it("survives EMFILE without spinning and recovers when descriptors "
     .. "free up", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([=[
      local green = require "green"
      local t <close> = green.Timeout(20)
      local srv = assert(green.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local accepts, failures = 0, {}
      local proxy = {} -- counts serve's accept calls
      function proxy.accept()
        accepts = accepts + 1
        local c, err = srv:accept()
        if not c then failures[#failures + 1] = err end
        return c, err
      end
      local loop = green.spawn(green.serve, proxy, function(c)
        c:send("hi\n")
        c:receive("*a")
      end)
      local greeted = 0
      local function greet()
        local c, err = green.connect("127.0.0.1", port)
        if not c then return nil, err end
        c:settimeout(5)
        local r, rerr = c:receive()
        if r == "hi" then greeted = greeted + 1 end
        return c, rerr
      end
      local conns = { assert(greet()), assert(greet()) }
      local files = {} -- use up every descriptor but one
      for _ = 1, 100 do
        local fh = io.open("/dev/null")
        if not fh then break end
        files[#files + 1] = fh
      end
      table.remove(files):close()
      -- the client's socket takes the last descriptor: accept fails
      local c, err = greet()
      print("client: " .. tostring(c and "connected" or "failed") .. " "
            .. tostring(err))
      if c then c:close() end
      print("failures: " .. table.concat(failures, ","))
      local before = accepts
      green.sleep(0.3) -- backing off: a few retries, no spinning
      print("retries while out of descriptors: " .. (accepts - before))
      for _, fh in ipairs(files) do fh:close() end
      for _, cc in ipairs(conns) do cc:close() end
      green.sleep(0.05)
      c = assert(green.connect("127.0.0.1", port))
      c:settimeout(5)
      print("after recovery: " .. tostring(c:receive()))
      c:close()
      srv:close()
      loop:wait()
      print("greeted " .. greeted)
    ]=])
    f:close()
    local out, err, code = h.sh("ulimit -n 40; " .. h.greenlua .. " "
                                .. script)
    os.remove(script)
    assert.are.equal(0, code, err)
    -- libuv sheds the connection it cannot accept (its reserve-descriptor
    -- trick) rather than reporting EMFILE: the client sees it closed, and
    -- the accept loop waits without spinning.
    assert.matches("client: connected closed", out, 1, true)
    local retries = tonumber(out:match("retries while out of descriptors: "
                                       .. "(%d+)"))
    assert.is_true(retries <= 10, out)
    assert.matches("after recovery: hi", out, 1, true)
  end)

  it("keeps its count of handlers when they are killed, kill themselves "
     .. "or fail: a full server keeps accepting", function()
    local reported = 0
    green_run(function()
      local old = green.on_error(function() reported = reported + 1 end)
      local srv, port = server()
      local started = {}
      local loop = green.spawn(green.serve, srv, function(c)
        started[#started + 1] = green.getcurrent()
        local l = c:receive()
        if l == "err" then error("boom", 0) end
        if l == "self" then green.getcurrent():kill() end
        c:send("ok:" .. tostring(l) .. "\n")
      end, 2)
      -- each round fills the server (2 of 2), then ends its handlers: one
      -- killed from outside, the other by itself or by an error
      for round = 1, 4 do
        local a = assert(green.connect("127.0.0.1", port))
        local b = assert(green.connect("127.0.0.1", port))
        eventually(function() return #started == 2 * round end,
                   nil, "both handlers started")
        started[#started]:kill()
        assert(a:send(round % 2 == 0 and "self\n" or "err\n"))
        a:close()
        b:close()
      end
      eventually(function() return waits_in("socket:accept") end, nil,
                 "the accept loop waits for a connection, not for room")
      assert.are.equal("ok:hi", talk(port, "hi"))
      assert.are.equal("ok:again", talk(port, "again"))
      srv:close()
      loop:wait()
      green.on_error(old)
    end)
    assert.is_true(reported <= 2) -- the "err" rounds' own
  end)

  it("checks its arguments", function()
    green_run(function()
      local srv = server()
      assert.has_error(function() green.serve(srv, nil) end)
      assert.has_error(function() green.serve(srv, print, 0) end)
      srv:close()
    end)
  end)
end)
