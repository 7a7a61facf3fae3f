-- Debian's lua-redis client (unmodified, on LuaSocket's API) talking to a
-- real redis-server through green.patch(), from many green threads at
-- once (issue 4). The spec starts redis-server on a free loopback port
-- and stops it afterwards.
local green = require "green"

-- lua-redis installs the same version-agnostic file under
-- /usr/share/lua/5.{1,2,3}; load it from there, leaving package.path as
-- it was.
local function load_redis()
  local old = package.path
  package.path = "/usr/share/lua/5.3/?.lua;/usr/share/lua/5.1/?.lua;" .. old
  local ok, mod = pcall(require, "redis")
  package.path = old
  assert(ok, "Debian's lua-redis is not installed: " .. tostring(mod))
  return mod
end

local function free_port()
  local s = assert(green.listen("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

local function alive(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

describe("lua-redis on green.socket against redis-server", function()
  local redis, port, pid, saved

  setup(function()
    saved = { package.loaded.socket, package.loaded["socket.core"] }
    package.loaded.socket, package.loaded["socket.core"] = nil, nil
    green.patch()
    redis = load_redis()
    port = free_port()
    local p = assert(io.popen("redis-server --port " .. port
      .. " --bind 127.0.0.1 --save '' --appendonly no --daemonize no"
      .. " >/dev/null 2>&1 & echo $!"))
    pid = assert(tonumber(p:read("l")), "could not start redis-server")
    p:close()
    -- Wait (bounded) until it accepts connections.
    require("helper").eventually(function()
      local c = green.connect("127.0.0.1", port)
      if c then
        c:close()
        return true
      end
      assert(alive(pid), "redis-server exited at start on port " .. port)
    end, "redis-server accepting on port " .. port)
  end)

  teardown(function()
    if pid then
      os.execute("kill " .. pid .. " 2>/dev/null")
      for _ = 1, 100 do -- bounded: 2 s, then SIGKILL
        if not alive(pid) then break end
        green.sleep(0.02)
      end
      if alive(pid) then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
    end
    package.loaded.socket, package.loaded["socket.core"] = saved[1], saved[2]
  end)

  -- QUIT, then close our end.
  local function bye(c)
    c:quit()
    c.network.socket:close()
  end

  local function connect(timeout)
    return redis.connect { host = "127.0.0.1", port = port,
                           timeout = timeout }
  end

  it("runs commands over a green socket", function()
    green_run(function()
      local client = connect()
      assert.matches("^tcp{client}: ", tostring(client.network.socket))
      assert.is_true(client:ping())
      assert.is_true(client:set("greeting", "hello"))
      assert.are.equal("hello", client:get("greeting"))
      assert.are.equal(1, client:del("greeting"))
      bye(client)
    end)
  end)

  it("serves 20 green threads, each with its own connection, at once",
     function()
    green_run(function()
      local client_cmd = redis.command("CLIENT")
      local n = 20
      local connected, all_in = 0, green.Event()
      local go = green.Event()
      local threads = {}
      for i = 1, n do
        threads[i] = green.spawn(function()
          local c = connect()
          connected = connected + 1
          if connected == n then all_in:send() end
          go:wait()
          for _ = 1, 50 do c:incr("counter") end
          c:rpush("order", i)
          bye(c)
        end)
      end
      all_in:wait()
      -- The server sees all of them connected at the same time.
      local obs = connect()
      obs:del("counter", "order")
      local list = client_cmd(obs, "LIST")
      local _, lines = list:gsub("id=%d+", "")
      assert.is_true(lines >= n + 1, "CLIENT LIST shows " .. lines)
      go:send()
      for i = 1, n do threads[i]:wait() end
      assert.are.equal("1000", obs:get("counter"))
      assert.are.equal(n, obs:llen("order"))
      bye(obs)
    end)
  end)

  it("keeps other threads working while one waits in BLPOP", function()
    green_run(function()
      local log = {}
      local waiter = green.spawn(function()
        local c = connect()
        log[#log + 1] = "blpop sent"
        local r = c:blpop("jobs", 10)
        log[#log + 1] = "blpop returned"
        bye(c)
        return r
      end)
      local c = connect()
      c:del("jobs", "work")
      require("helper").eventually(function() return #log > 0 end,
                                   "the BLPOP client connected")
      for i = 1, 100 do c:rpush("work", i) end
      assert.are.equal(100, c:llen("work"))
      log[#log + 1] = "work done"
      assert.is_false(waiter:dead())
      c:lpush("jobs", "job-1")
      assert.are.same({ "jobs", "job-1" }, waiter:wait())
      assert.are.same({ "blpop sent", "work done", "blpop returned" }, log)
      c:del("work")
      bye(c)
    end)
  end)

  it("reports refused connections, timeouts and killed connections",
     function()
    green_run(function()
      local closed = free_port()
      local ok, err = pcall(redis.connect, "127.0.0.1", closed)
      assert.is_false(ok)
      assert.matches("connection refused", err)
      -- a read timeout (settimeout(t, 't') on the socket)
      local slow = connect(0.05)
      ok, err = pcall(slow.blpop, slow, "never", 0)
      assert.is_false(ok)
      assert.matches("connection error: timeout", err)
      slow.network.socket:close()
      -- the server drops a connection: the next command sees "closed"
      local victim, killer = connect(), connect()
      local client_cmd = redis.command("CLIENT")
      local id = client_cmd(victim, "ID")
      assert.are.equal(1, client_cmd(killer, "KILL", "ID", id))
      ok, err = pcall(victim.ping, victim)
      assert.is_false(ok)
      assert.matches("connection error: closed", err)
      victim.network.socket:close()
      bye(killer)
    end)
  end)
end)
