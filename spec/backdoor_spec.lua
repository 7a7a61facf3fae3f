-- green.backdoor: a Lua prompt into a running greenlua process, driven by
-- a real client (socat) from outside (issue 9).
local green = require "green"
local helper = require "helper"

-- A greenlua process with a backdoor and a ticking thread; it prints the
-- backdoor's port (or path), then runs until a session sets `stop`.
local SERVER = [[
  local green = require "green"
  local where = ...
  local server
  if where == "tcp" then
    server = assert(green.backdoor{ port = 0 })
    local _, port = server:getsockname()
    print(port)
  else
    server = assert(green.backdoor{ path = where })
    print(where)
  end
  io.stdout:flush()
  ticks = 0
  while not stop do
    ticks = ticks + 1
    green.sleep(0.005)
  end
  server:close()
]]

-- Run the server, feed `input` to one session through socat, return the
-- session's output and the server's own output and exit code.
local function session(where, input)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 700 " .. dir))
  local script = dir .. "/server.lua"
  local f = assert(io.open(script, "w"))
  f:write(SERVER)
  f:close()
  f = assert(io.open(dir .. "/input", "w"))
  f:write(input)
  f:close()
  if where ~= "tcp" then where = dir .. "/" .. where end
  local target = where == "tcp" and "TCP:127.0.0.1:$(head -1 out)"
                 or "UNIX-CONNECT:" .. where
  local out, err, code = helper.sh(table.concat({
    "bin=$(realpath " .. helper.greenlua .. ")",
    "cd " .. dir,
    "$bin server.lua " .. where .. " > out 2> err &",
    "pid=$!",
    -- wait (bounded) for the backdoor to listen
    "for i in $(seq 1 500); do [ -s out ] && break; sleep 0.01; done",
    "socat -t 5 - " .. target .. " < input > session",
    "wait $pid; rc=$?",
    where ~= "tcp" and "stat -c %a " .. where .. " 2>/dev/null > mode; true"
      or "true",
    "cat session; echo \"== rc $rc\"; cat err",
  }, "\n"), 60)
  os.execute("rm -rf " .. dir)
  return out, err, code
end

-- A backdoor on a free port and a client at its first prompt (in a green
-- thread): the server and the client.
local function connected()
  local server = assert(green.backdoor{ port = 0 })
  local _, port = server:getsockname()
  local c = assert(green.connect("127.0.0.1", port))
  c:settimeout(10)
  assert.matches("backdoor", c:receive("*l"))
  assert.are.equal("> ", c:receive(2))
  return server, c
end

describe("green.backdoor", function()
  it("runs lines as greenlua -i does, over TCP, with socat", function()
    local out, err, code = session("tcp", table.concat({
      "1 + 1",
      "function f(x)",
      "  return x * 21",
      "end",
      "f(2)",
      "print('hi', 3)",
      "before = ticks",
      "green.sleep(0.05) return 'slept'",
      "ticks > before", -- the other thread ran during the sleep
      "error('boom')",
      "'still here'",
      "stop = true -- a session global: the server does not see it",
      "_G.stop = true",
    }, "\n") .. "\n")
    assert.are.equal(0, code, err)
    assert.matches("^greenlua [%d.]+ backdoor", out)
    assert.matches("\n?> 2\n", out)
    assert.matches(">> >> > 42\n", out)
    assert.matches("> hi\t3\n", out)
    assert.matches("> slept\n", out)
    assert.matches("> true\n", out)
    assert.matches("> backdoor:1: boom\nstack traceback:", out)
    assert.matches("> still here\n", out)
    assert.matches("== rc 0\n", out) -- the process ended normally
  end)

  it("serves a Unix socket that only its owner can use", function()
    local out, err, code = session("bd.sock", "2 ^ 10\n_G.stop = true\n")
    assert.are.equal(0, code, err)
    assert.matches("> 1024.0\n", out)
    assert.matches("== rc 0\n", out)
  end)

  it("creates the Unix socket with mode 0600", function()
    green_run(function()
      local path = os.tmpname()
      os.remove(path)
      local server = assert(green.backdoor{ path = path })
      local p = io.popen("stat -c %a " .. path)
      local mode = p:read("l")
      p:close()
      assert.are.equal("600", mode)
      server:close()
    end)
  end)

  it("refuses an address that is not loopback, before binding",
     function()
    green_run(function()
      local ok, err = pcall(green.backdoor, { host = "0.0.0.0", port = 0 })
      assert.is_false(ok)
      assert.matches("0%.0%.0%.0 %(0%.0%.0%.0%) is not a loopback address; "
                     .. "pass allow_remote = true", err)
      ok, err = pcall(green.backdoor, { bogus = 1 })
      assert.is_false(ok)
      assert.matches("unknown option 'bogus'", err)
      ok, err = pcall(green.backdoor, { path = "/x", port = 1 })
      assert.is_false(ok)
      assert.matches("path, or host and port", err)
    end)
  end)

  -- green.listen's error named its internal 'clisten' and a line of
  -- green/init.lua
  it("refuses a bad port as its own argument error", function()
    for _, port in ipairs { -1, 65536, 1.5, 0 / 0, math.huge, "80", {} } do
      assert.has_error(function() green.backdoor { port = port } end,
        "bad argument #1 to 'backdoor' (port: integer from 0 to 65535 "
        .. "expected)")
    end
  end)

  it("serves localhost and ::1 without allow_remote", function()
    green_run(function()
      local server = assert(green.backdoor{ host = "localhost" })
      local ip, port = server:getsockname()
      assert.is_truthy(ip == "127.0.0.1" or ip == "::1", ip)
      local c = assert(green.connect(ip, port))
      assert.matches("backdoor", c:receive("*l"))
      assert.are.equal("> ", c:receive(2))
      c:send("6 * 7\n")
      assert.are.equal("42", c:receive("*l"))
      c:close()
      server:close()
    end)
  end)

  it("shows the default prompt for a _PROMPT or _PROMPT2 that is not "
     .. "a string and cannot become one, and goes on", function()
    green_run(function()
      local server, c = connected()
      -- a __tostring that returns no string, one that raises: the
      -- session used to end with an error at either
      c:sendall("_PROMPT2 = setmetatable({}, { __tostring = "
                .. "function() return {} end })\n")
      assert.are.equal("> ", c:receive(2))
      c:sendall("do\n")
      assert.are.equal(">> ", c:receive(3))
      c:sendall("end\n")
      assert.are.equal("> ", c:receive(2))
      c:sendall("_PROMPT = setmetatable({}, { __tostring = "
                .. "function() error('no prompt') end })\n")
      assert.are.equal("> ", c:receive(2))
      c:sendall("6 * 7\n")
      assert.are.equal("42", c:receive("*l"))
      c:close()
      server:close()
    end)
  end)

  -- A write to a connection whose client left was ignored: a session
  -- running a loop of prints went on for ever, with nobody to read them.
  -- The first print the connection refuses raises now, and so does every
  -- one after it (a pcall around print does not keep the loop going).
  it("writes green.debug.dump() to the session, as its banner says",
     function()
    green_run(function()
      local server, c = connected()
      local sleeper = green.spawn(green.sleep, 30)
      sleeper.name = "dumped"
      c:sendall("green.debug.dump()\n")
      local lines = {}
      repeat
        local line, err = c:receive("*l")
        assert(line, err)
        lines[#lines + 1] = line
      until line:match("the backdoor connection$")
      local text = table.concat(lines, "\n")
      assert.matches("^green threads: %d+ live\n", text)
      assert.matches("'dumped' suspended in green.sleep", text)
      -- another file is still the caller's to choose
      c:sendall("local t = {} green.debug.dump({ write = function(_, s) "
                .. "t[#t + 1] = s end }) return #t\n")
      assert.are.equal("> 1", c:receive("*l"))
      sleeper:kill()
      c:close()
      server:close()
    end)
  end)

  it("ends a session's printing once its client is gone", function()
    finally(function() _G.backdoor_gone = nil end)
    green_run(function()
      local server, c = connected()
      c:sendall("local n = 0 "
                .. "local ok, e = pcall(function() while true do "
                .. "n = n + 1 print(n) end end) "
                .. "pcall(print, 'again') "
                .. "_G.backdoor_gone = { n = n, err = e, "
                .. "again = select(2, pcall(print, 'again')) }\n")
      assert.are.equal("1", c:receive("*l"))
      c:close()
      local gone = helper.eventually(function() return _G.backdoor_gone end,
                                     30, "the session's loop to end")
      assert.matches("green%.backdoor: the client is gone %(", gone.err)
      assert.matches("green%.backdoor: the client is gone %(", gone.again)
      assert.is_true(gone.n > 1)
      server:close()
    end)
  end)

  -- The check resolved the name, then green.listen resolved it again: a
  -- name server answering 127.0.0.1, then 0.0.0.0, had the backdoor serve
  -- every interface without allow_remote
  it("listens on the loopback address it checked, not on the name again",
     function()
    finally(function() green.resolver.setup() end)
    green_run(function()
      local u = assert(green.udp())
      assert(u:setsockname("127.0.0.1", 0))
      local _, dport = u:getsockname()
      local answers = { "127.0.0.1", "0.0.0.0" }
      local served = 0
      local dns = green.spawn(function()
        while true do
          local q, ip, port = u:receivefrom()
          if not q then return end
          local pos = 13 -- the question: labels, then type and class
          while q:byte(pos) ~= 0 do pos = pos + q:byte(pos) + 1 end
          local qtype = string.unpack(">I2", q, pos + 1)
          local question = q:sub(13, pos + 4)
          local answer = ""
          if qtype == 1 then -- A: the next address of the list
            served = served + 1
            local addr = answers[math.min(served, #answers)]
            local a, b, c, d = addr:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
            answer = string.pack(">I2I2I2I4I2BBBB", 0xC00C, 1, 1, 0, 4,
                                 tonumber(a), tonumber(b), tonumber(c),
                                 tonumber(d))
          end
          u:sendto(q:sub(1, 2) .. string.pack(">I2I2I2I2I2", 0x8180, 1,
                                               answer ~= "" and 1 or 0, 0, 0)
                   .. question .. answer, ip, port)
        end
      end)
      green.resolver.setup{ servers = { "127.0.0.1:" .. dport },
                            timeout = 10 }
      local server = assert(green.backdoor{ host = "flip.test" })
      assert.are.equal("127.0.0.1", (server:getsockname()))
      server:close()
      u:close()
      dns:wait()
    end)
  end)
end)

