-- Unix-domain stream sockets: bindings/pipe.c over the shared stream code.
local green = require "green"

-- A fresh temporary directory, removed (with what is in it) by rmdir().
local function tempdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -m 700 " .. p))
  return p
end

local function rmdir(d)
  assert(os.execute("rm -rf " .. d))
end

describe("Unix-domain sockets", function()
  local dir
  before_each(function() dir = tempdir() end)
  after_each(function() rmdir(dir) end)

  it("echoes lines through listen_unix/connect_unix", function()
    green_run(function()
      local path = dir .. "/echo.sock"
      local srv = assert(green.listen_unix(path, { backlog = 8 }))
      assert.are.equal(path, srv:getsockname())
      assert.matches("^green%.socket %(unix, fd %d+, listening%)$",
                     tostring(srv))
      local server = green.spawn(function()
        local c, addr = assert(srv:accept())
        assert.are.equal("", addr) -- the client did not bind a name
        assert.are.equal(path, c:getsockname())
        local line = assert(c:receive())
        assert(c:sendall(line:upper() .. "\n"))
        assert.are.equal("tail", c:receive("*a"))
        c:close()
      end)
      local c = assert(green.connect_unix(path))
      assert.are.equal(path, c:getpeername())
      assert.is_true(c:getfd() >= 0)
      assert.are.equal(6, c:send("hello\n"))
      assert.are.equal("HELLO", c:receive())
      c:send("tail")
      assert(c:shutdown("send"))
      server:wait()
      assert.same({ nil, "closed", "" }, { c:receive() })
      c:close()
      srv:close()
    end)
  end)

  it("fails to connect to a missing path", function()
    green_run(function()
      local c, err = green.connect_unix(dir .. "/missing.sock")
      assert.is_nil(c)
      assert.are.equal("no such file or directory", err)
    end)
  end)

  it("refuses to listen on a path in use, and on a too long path",
     function()
    green_run(function()
      local path = dir .. "/busy.sock"
      local srv = assert(green.listen_unix(path))
      assert.same({ nil, "address already in use" },
                  { green.listen_unix(path) })
      srv:close()
      -- close() removed the socket file (libuv does): the path is free.
      local again = assert(green.listen_unix(path))
      again:close()
      -- Any other file in the way is left alone.
      local f = assert(io.open(path, "w"))
      f:close()
      assert.same({ nil, "address already in use" },
                  { green.listen_unix(path) })
      assert.same({ nil, "name too long" },
                  { green.listen_unix(dir .. "/" .. ("x"):rep(200)) })
      assert.has_error(function() green.listen_unix("a\0b") end)
      -- libuv's bind says "permission denied" for a missing directory
      for _, opts in ipairs({ {}, { mode = 6 * 64 } }) do
        assert.same({ nil, "no such file or directory" },
                    { green.listen_unix(dir .. "/none/x.sock", opts) })
      end
    end)
  end)

  -- A mode with bits the umask takes away is added after bind, through
  -- the file opened as itself (never a symlink swapped in): on a path
  -- near sockaddr_un's size limit too. The socket's address is the path
  -- (getsockname, a client's getpeername), nothing is left behind, and
  -- a file in the way is still "address already in use".
  local function output(cmd, fmt)
    local p = assert(io.popen(cmd))
    local r = p:read(fmt)
    p:close()
    return r
  end
  local function mode_of(path) return output("stat -c %a " .. path, "l") end
  local function listing(d) return output("ls -A " .. d, "a") end

  it("gives a wide mode on a path near the size limit, leaving nothing",
     function()
    green_run(function()
      local sub = dir .. "/" .. ("d"):rep(97 - #dir)
      assert(os.execute("mkdir " .. sub))
      for _, name in ipairs({ "s", "x.sock" }) do
        local path = sub .. "/" .. name
        local srv = assert(green.listen_unix(path, { mode = 7 * 64 + 7 * 8
                                                          + 7 }))
        assert.are.equal("777", mode_of(path))
        assert.are.equal(name .. "\n", listing(sub))
        assert.are.equal(path, srv:getsockname())
        local c = assert(green.connect_unix(path, { timeout = 10 }))
        assert.are.equal(path, c:getpeername())
        srv:settimeout(10)
        local a = assert(srv:accept())
        assert(c:send("hi\n"))
        assert.are.equal("hi", a:receive())
        a:close()
        c:close()
        srv:close()
        assert.are.equal("", listing(sub))
        assert(io.open(path, "w")):close()
        assert.same({ nil, "address already in use" },
                    { green.listen_unix(path, { mode = 7 * 64 + 7 * 8
                                                     + 7 }) })
        assert.are.equal(name .. "\n", listing(sub))
        os.remove(path)
      end
    end)
  end)

  it("returns the partial data when the peer closes mid-read", function()
    green_run(function()
      local path = dir .. "/partial.sock"
      local srv = assert(green.listen_unix(path))
      local reader = green.spawn(function()
        local c = assert(srv:accept())
        local r = { c:receive(10) }
        c:close()
        return table.unpack(r)
      end)
      local c = assert(green.connect_unix(path))
      c:send("abc")
      c:close()
      assert.same({ nil, "closed", "abc" }, { reader:wait() })
      srv:close()
    end)
  end)

  it("wakes a waiting reader with 'closed' when another thread closes",
     function()
    green_run(function()
      local path = dir .. "/close.sock"
      local srv = assert(green.listen_unix(path))
      local c = assert(green.connect_unix(path))
      local s = assert(srv:accept())
      local reader = green.spawn(function() return s:receive() end)
      green.sleep(0)
      s:close()
      assert.same({ nil, "closed", "" }, { reader:wait() })
      c:close()
      srv:close()
    end)
  end)

  it("times out and survives a kill mid-receive without losing bytes",
     function()
    green_run(function()
      local path = dir .. "/kill.sock"
      local srv = assert(green.listen_unix(path))
      local c = assert(green.connect_unix(path))
      local s = assert(srv:accept())
      s:settimeout(0.01)
      assert.same({ nil, "timeout", "" }, { s:receive() })
      s:settimeout(nil)
      local reader = green.spawn(function() return s:receive(6) end)
      green.sleep(0)
      c:send("abc")
      require("helper").eventually(function() return s:dirty() end,
                                   "the partial read buffered")
      assert.are.same({ "suspended", "socket:receive" }, { reader:status() })
      reader:kill()
      c:send("def")
      assert.are.equal("abcdef", s:receive(6))
      s:close()
      c:close()
      srv:close()
    end)
  end)

  it("applies the simultaneous-reader check", function()
    green_run(function()
      local path = dir .. "/two.sock"
      local srv = assert(green.listen_unix(path))
      local c = assert(green.connect_unix(path))
      local s = assert(srv:accept())
      local first = green.spawn(function() return s:receive() end)
      green.sleep(0)
      local ok, err = pcall(s.receive, s)
      assert.is_false(ok)
      assert.matches("Second simultaneous read on fileno", err)
      c:send("x\n")
      assert.are.equal("x", first:wait())
      s:close()
      c:close()
      srv:close()
    end)
  end)

  it("times out a connect_unix to a full backlog only with a timeout",
     function()
    green_run(function()
      local c, err = green.connect_unix(dir .. "/none.sock",
                                        { timeout = 1 })
      assert.is_nil(c)
      assert.are.equal("no such file or directory", err)
    end)
  end)

  it("serves a Unix server with green.serve", function()
    green_run(function()
      local path = dir .. "/serve.sock"
      local srv = assert(green.listen_unix(path))
      local server = green.spawn(green.serve, srv, function(client)
        local line = client:receive()
        client:send(line .. "!\n")
        if line == "stop" then error(green.StopServe) end
      end, 4)
      local clients = {}
      for i = 1, 10 do
        clients[i] = green.spawn(function()
          local c = assert(green.connect_unix(path))
          c:send("hi " .. i .. "\n")
          local r = c:receive()
          c:close()
          return r
        end)
      end
      for i = 1, 10 do
        assert.are.equal("hi " .. i .. "!", clients[i]:wait())
      end
      local c = assert(green.connect_unix(path))
      c:send("stop\n")
      assert.are.equal("stop!", c:receive())
      c:close()
      server:wait()
      srv:close()
    end)
  end)
end)
