-- Issue 7, fault 1: a finalizer (__gc) that closes a socket while another
-- call on that socket is starting. The call read the socket's record,
-- then allocated its wait record; that allocation could run the finalizer,
-- which closed the socket, and the call then queued itself on a closed
-- socket whose memory was freed soon after (heap-use-after-free under
-- ASan; without a timeout the caller was never woken). Now receive, recv,
-- send, accept and the UDP receive allocate nothing before they wait
-- (they wait in their thread's own wait record, issue 8), so the
-- finalizer runs while they wait and wakes them with "closed"; select
-- allocates, and reads its sockets again after allocating.
--
-- The finalizer is made to run at the first allocation after the call
-- started: inside it if it allocates, else in a helper thread that runs
-- once the call blocks. See 'race'. Each spec counts the times it ran
-- during the call and requires some, so it cannot pass without
-- exercising the race.
local green = require "green"

-- Run 'rounds' times: make a fresh object (from make()), leave garbage
-- whose finalizer closes it, then call op(obj), which blocks unless the
-- object is closed. Returns how often the finalizer ran during op's call
-- and the results of those calls.
--
-- With the collector stopped, ten finalizable objects newer than the
-- closer become garbage with it. The collector runs up to ten pending
-- finalizers per step, newest first: once the last of the ten has run
-- (stepping by hand), the closer is next. Then the collector restarts
-- with no allowance, so the next allocation steps it and runs the closer:
-- the first allocation inside op's call, or the helper's once op blocks.
local function race(rounds, make, op)
  local inside, results = 0, {}
  for _ = 1, rounds do
    local obj, cleanup = make()
    local calling, ran_inside, armed = false, false, false
    -- No socket timeout: before the fix the call waited on the closed
    -- socket until this Timeout (the socket's own timeout would have hit
    -- freed memory and still said "closed").
    local guard = green.Timeout(5)
    -- Runs when op blocks (this thread does not yield before): it
    -- allocates, which runs the closer if op's call did not.
    green.spawn(function() return { calling } end)
    collectgarbage() -- no older finalizer pending: the ten go first
    -- a step: one state change (the mode it was in put back after:
    -- lua5.4 starts generational, and busted runs the files after this
    -- one in this process)
    local mode = collectgarbage("incremental", 200, 100, 1)
    collectgarbage("stop")
    setmetatable({}, { __gc = function()
      ran_inside = calling
      obj:close()
    end })
    for i = 1, 10 do
      setmetatable({}, { __gc = function() armed = armed or i == 1 end })
    end
    for _ = 1, 100000 do
      if armed then break end
      collectgarbage("step", 0)
    end
    collectgarbage("restart")
    calling = true
    local r = table.pack(pcall(op, obj))
    calling = false
    collectgarbage("incremental", 200, 100, 13) -- Lua's defaults
    collectgarbage(mode)
    guard:cancel()
    if not r[1] and not green.is_timeout(r[2]) then error(r[2], 0) end
    assert(r[1] or not ran_inside, "a call whose socket a finalizer closed "
           .. "was left waiting until the guard's Timeout")
    table.remove(r, 1)
    r.n = r.n - 1
    if ran_inside then
      inside = inside + 1
      results[#results + 1] = r
    end
    if cleanup then cleanup() end
    obj:close()
  end
  return inside, results
end

local function pair(server, port)
  local c = assert(green.connect("127.0.0.1", port))
  local s = assert(server:accept())
  return c, s
end

-- A connected client (with its peer closed after each round).
local function client_of(server, port, prepare)
  return function()
    local c, peer = pair(server, port)
    if prepare then prepare(c, peer) end
    return c, function() peer:close() end
  end
end

describe("a finalizer that closes a socket during a call", function()
  it("makes receive return nil, 'closed'", function()
    green_run(function()
      local server = assert(green.listen("127.0.0.1", 0))
      local _, port = server:getsockname()
      local inside, results = race(50, client_of(server, port),
                                   function(c) return c:receive() end)
      assert.is_true(inside > 0, "the race was never exercised")
      for _, r in ipairs(results) do
        assert.are.same({ n = 3, nil, "closed", "" }, r)
      end
      server:close()
    end)
  end)

  it("makes recv return nil, 'closed'", function()
    green_run(function()
      local server = assert(green.listen("127.0.0.1", 0))
      local _, port = server:getsockname()
      local inside, results = race(50, client_of(server, port),
                                   function(c) return c:recv(100) end)
      assert.is_true(inside > 0, "the race was never exercised")
      for _, r in ipairs(results) do
        assert.are.same({ n = 2, nil, "closed" }, r)
      end
      server:close()
    end)
  end)

  it("makes a blocked sendall return nil, 'closed'", function()
    green_run(function()
      local server = assert(green.listen("127.0.0.1", 0))
      local _, port = server:getsockname()
      local big = string.rep("x", 1 << 20)
      local inside, results = race(20, client_of(server, port,
        function(c, peer)
          c:setoption("send-buffer-size", 4096)
          peer:setoption("recv-buffer-size", 4096)
          c:settimeout(0.02)
          local ok, err = c:sendall(big) -- fills every buffer
          assert(not ok and err == "timeout", err)
          c:settimeout(nil)
        end), function(c) return c:sendall(big) end)
      assert.is_true(inside > 0, "the race was never exercised")
      for _, r in ipairs(results) do
        assert.are.same({ nil, "closed" }, { r[1], r[2] })
      end
      server:close()
    end)
  end)

  it("makes accept return nil, 'closed'", function()
    green_run(function()
      local inside, results = race(50, function()
        local server = assert(green.listen("127.0.0.1", 0))
        return server
      end, function(server) return server:accept() end)
      assert.is_true(inside > 0, "the race was never exercised")
      for _, r in ipairs(results) do
        assert.are.same({ n = 2, nil, "closed" }, r)
      end
    end)
  end)

  it("makes a UDP receive return nil, 'closed'", function()
    green_run(function()
      local inside, results = race(50, function()
        local u = assert(green.udp())
        assert(u:setsockname("127.0.0.1", 0))
        return u
      end, function(u) return u:receive() end)
      assert.is_true(inside > 0, "the race was never exercised")
      for _, r in ipairs(results) do
        assert.are.same({ n = 2, nil, "closed" }, r)
      end
    end)
  end)

  it("makes green.select report the closed socket", function()
    green_run(function()
      local server = assert(green.listen("127.0.0.1", 0))
      local _, port = server:getsockname()
      local list -- built before the race: a table constructor allocates
      local inside, results = race(50, client_of(server, port,
        function(c) list = { c } end), function(c)
          local r = green.select(list, nil)
          return #r, r[1] == c
        end)
      assert.is_true(inside > 0, "the race was never exercised")
      for _, r in ipairs(results) do
        assert.are.same({ n = 2, 1, true }, r)
      end
      server:close()
    end)
  end)
end)
