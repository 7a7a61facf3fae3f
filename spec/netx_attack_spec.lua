-- Hostile arguments to the socket calls other than HTTP, WebSocket and
-- TLS: options tables, socket options, listen backlogs.
local green = require "green"
local helper = require "helper"

describe("green sockets under hostile arguments", function()
  it("names the option a bad value was given for", function()
    -- luaL_check*(L, -1) said "bad argument #-1 (number expected, got
    -- string)": neither the argument nor the field
    green_run(function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -m 700 " .. dir))
      local u = assert(green.udp())
      local cases = {
        { "#3 .*%(timeout: number expected, got string%)",
          green.connect, "127.0.0.1", 1, { timeout = "soon" } },
        { "#3 .*%(backlog: integer expected, got a number with a fraction%)",
          green.listen, "127.0.0.1", 0, { backlog = 1.5 } },
        { "#3 .*%(family: string expected, got table%)",
          green.listen, "127.0.0.1", 0, { family = {} } },
        { "#2 .*%(family: string expected, got boolean%)",
          green.getaddrinfo, "localhost", { family = true } },
        { "#1 .*%(family: string expected, got number%)",
          green.udp, { family = 4 } },
        { "#2 .*%(timeout: number expected, got table%)",
          green.connect_unix, dir .. "/s", { timeout = {} } },
        { "#2 .*%(mode: integer expected, got string%)",
          green.listen_unix, dir .. "/s", { mode = "0600" .. "x" } },
        { "#2 .*%(backlog: integer expected, got boolean%)",
          green.listen_unix, dir .. "/s", { backlog = true } },
        { "#1 .*%(timeout: number expected, got string%)",
          green.resolver.setup, { timeout = "x" } },
        { "#1 .*%(tries: integer expected, got a number with a fraction%)",
          green.resolver.setup, { tries = 1.5 } },
        { "#1 .*%(servers: table expected, got string%)",
          green.resolver.setup, { servers = "127.0.0.1" } },
        { "#3 .*%(timeout: integer expected, got a number with a fraction%)",
          u.setoption, u, "linger", { on = true, timeout = 1.5 } },
      }
      for i, case in ipairs(cases) do
        local ok, err = pcall(table.unpack(case, 2))
        assert.is_false(ok, "case " .. i)
        assert.matches("bad argument " .. case[1], err)
      end
      u:close()
      green.resolver.setup() -- the system's again, whatever happened
      os.execute("rm -rf " .. dir)
    end)
  end)

  it("refuses an integer socket option beyond an int, rather than "
     .. "setting what is left of it", function()
    green_run(function()
      local u = assert(green.udp())
      -- (int)(2^32 + 4096) is 4096: the buffer was set to that
      local before = assert(u:getoption("send-buffer-size"))
      local ok, err = pcall(u.setoption, u, "send-buffer-size",
                            (1 << 32) + 4096)
      assert.is_false(ok)
      assert.matches("bad argument #3 to '.*' %(value out of range%)", err)
      assert.are.equal(before, u:getoption("send-buffer-size"))
      assert.are.equal(1, u:setoption("send-buffer-size", 65536))
      u:close()
    end)
  end)

  it("listens with the kernel's largest backlog for a backlog beyond an "
     .. "int, not with what is left of it", function()
    if not helper.has_tool("ss") then
      pending("no ss here")
      return
    end
    green_run(function()
      -- (int)2^32 is 0: listen(fd, 0)
      local srv = assert(green.listen("127.0.0.1", 0, { backlog = 1 << 32 }))
      local _, port = srv:getsockname()
      local line, err = helper.sh("env -u LD_PRELOAD ss -ltnH 'sport = :"
                                  .. port .. "'", 30)
      assert.are.equal("", err)
      -- LISTEN Recv-Q Send-Q ...: Send-Q is the backlog
      local backlog = tonumber(line:match("^%S+%s+%d+%s+(%d+)"))
      assert.is_truthy(backlog, line)
      assert.is_true(backlog > 0, line)
      srv:close()
    end)
  end)

  it("refuses to shut a listening socket down, which goes on listening",
     function()
    -- Linux takes shutdown(SHUT_RD) on a listening socket as a
    -- disconnect: "receive" and "both" returned 1 and the server, still
    -- "listening", refused every connection from then on
    green_run(function()
      local srv = assert(green.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      for _, how in ipairs({ "receive", "both", "send" }) do
        assert.same({ nil, "closed" }, { srv:shutdown(how) })
      end
      assert.matches("listening", tostring(srv))
      local c = assert(green.connect("127.0.0.1", port, { timeout = 10 }))
      srv:settimeout(10)
      local a = assert(srv:accept())
      a:close()
      c:close()
      srv:close()
    end)
  end)

  -- listen_unix's mode was given by setting the process's umask around
  -- bind(2), for every OS thread: a file green.fs (libuv's pool) or a
  -- green.thread created meanwhile got ~mode as its umask (mode 0666: a
  -- world-writable file). The mode is the descriptor's now, before bind.
  -- Bits the umask takes away (0666 under umask 022) were added by
  -- chmod(path) after bind: a symlink swapped in for the socket file
  -- meanwhile (a world-writable directory without the sticky bit) gave
  -- its target the mode. No chmod names the path now: the file is opened
  -- as itself (O_PATH | O_NOFOLLOW) and chmod-ed through its descriptor.
  it("gives a Unix socket file its mode without touching the umask "
     .. "or chmod-ing the path", function()
    if not helper.has_tool("strace") then
      pending("no strace here")
      return
    end
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 700 " .. dir))
    local script = dir .. "/s.lua"
    local f = assert(io.open(script, "w"))
    f:write([[
      local green = require "green"
      local dir = ...
      for _, mode in ipairs({ 6 * 64, 6 * 64 + 6 * 8 + 6, 4 * 64 }) do
        local srv = assert(green.listen_unix(dir .. "/x.sock",
                                             { mode = mode }))
        local p = io.popen("stat -c %a " .. dir .. "/x.sock")
        io.write(p:read("l"), " ")
        p:close()
        srv:close()
      end
      local p = io.popen("ls -A " .. dir)
      io.write(p:read("a"))
      p:close()
    ]])
    f:close()
    -- (LeakSanitizer cannot run under ptrace: no leak check here)
    local out, err, code = helper.sh("cd " .. dir .. " && umask 022 && "
      .. "env -u LD_PRELOAD ASAN_OPTIONS=detect_leaks=0 strace -f -o trace "
      .. "-e trace=umask,chmod,fchmodat " .. helper.quote(
           (helper.greenlua:sub(1, 1) == "/" and "" or os.getenv("PWD")
            .. "/") .. helper.greenlua) .. " s.lua " .. dir, 60)
    local trace = helper.slurp(dir .. "/trace") or ""
    os.execute("rm -rf " .. dir)
    assert.are.equal(0, code, err)
    -- (nothing left behind)
    assert.are.equal("600 666 400 s.lua\ntrace\n", out)
    assert.is_nil(trace:match("umask%(.-\n"), trace)
    assert.is_nil(trace:match("chmod[^\n]*x%.sock"), trace)
  end)

  -- green.socket's connect runs green.connect in a helper thread: a port
  -- green.connect refuses raised there, the helper died, and the caller
  -- waited for its timeout (without one, for ever)
  it("refuses a bad port to green.socket's connect at once", function()
    green_run(function()
      local socket = require "green.socket"
      for _, port in ipairs({ 70000, -1, 1.5, 0 / 0, math.huge }) do
        local t = socket.tcp()
        t:settimeout(10)
        local ok, err = pcall(green.with_timeout, 5, t.connect, t,
                              "127.0.0.1", port)
        assert.is_false(ok, tostring(port))
        assert.matches("bad argument #2 to 'connect' %(port out of range%)",
                       tostring(err))
        t:close()
      end
      local ok, err = pcall(green.with_timeout, 5, socket.connect,
                            "127.0.0.1", 70000)
      assert.is_false(ok)
      assert.matches("port out of range", tostring(err))
    end)
  end)

  -- green.connect and green.listen call the C functions from init.lua:
  -- their argument errors named the locals there ('cconnect',
  -- 'clisten') and pointed at init.lua's line
  it("names connect and listen in their argument errors, at the caller's "
     .. "line", function()
    green_run(function()
      local cases = {
        { green.listen, "listen", "127.0.0.1", -1 },
        { green.listen, "listen", "127.0.0.1", 70000 },
        { green.connect, "connect", "127.0.0.1", 70000 },
        { green.connect, "connect", "127.0.0.1", -1 },
      }
      for _, c in ipairs(cases) do
        local line
        local ok, err = pcall(function()
          line = debug.getinfo(1, "l").currentline + 1
          local s = c[1](c[3], c[4]) -- (not a tail call: the line stays)
          return s
        end)
        assert.is_false(ok)
        assert.are.equal(("%s:%d: bad argument #2 to '%s' (port out of "
                          .. "range)"):format(debug.getinfo(1, "S")
                                                .short_src, line, c[2]),
                         err)
      end
      -- an error that is not an argument's, and a kill, pass as they are
      local t = green.spawn(green.connect, "127.0.0.1", 1)
      assert.are.same({ true, nil, "connection refused" },
                      { pcall(t.wait, t) })
    end)
  end)

  -- tonumber("soon") is nil, which was "no limit": the call waited for
  -- ever where LuaSocket (luaL_optnumber) raises
  it("refuses a timeout that is not a number in green.socket's select",
     function()
    green_run(function()
      local socket = require "green.socket"
      for _, t in ipairs({ "soon", {}, false }) do
        local ok, err = pcall(green.with_timeout, 5, socket.select, {}, {},
                              t)
        assert.is_false(ok, tostring(t))
        assert.matches("bad argument #3 to 'select' %(number expected, got "
                       .. type(t) .. "%)", tostring(err))
      end
      assert.same({ {}, {}, "timeout" }, { socket.select({}, {}, "0.001") })
      assert.same({ {}, {}, "timeout" }, { socket.select({}, {}, 0) })
    end)
  end)
end)

