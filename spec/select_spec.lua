-- green.select over TCP, Unix and UDP sockets: bindings/select.c.
local green = require "green"

-- A connected TCP pair over 127.0.0.1: client, server side.
local helper = require "helper"
local pair = helper.pair

local function bound()
  local u = assert(green.udp())
  assert(u:setsockname("127.0.0.1", 0))
  local _, port = u:getsockname()
  return u, port
end

describe("green.select", function()
  it("polls with timeout 0: nothing ready is 'timeout'", function()
    green_run(function()
      local c, s = pair()
      local r, w, err = green.select({ s }, nil, 0)
      assert.same({}, r)
      assert.same({}, w)
      assert.are.equal("timeout", err)
      -- A connected socket with room in its queue is writable at once.
      r, w, err = green.select(nil, { c }, 0)
      assert.same({ c, [c] = 1 }, w)
      assert.same({}, r)
      assert.is_nil(err)
      c:close()
      s:close()
    end)
  end)

  it("times out when nothing becomes ready", function()
    green_run(function()
      local c, s = pair()
      local r, w, err = green.select({ s, c }, {}, 0.01)
      assert.same({ {}, {}, "timeout" }, { r, w, err })
      c:close()
      s:close()
    end)
  end)

  it("wakes on the first ready socket and steals nothing", function()
    green_run(function()
      local c, s = pair()
      local c2, s2 = pair()
      local waiter = green.spawn(function()
        return green.select({ s, s2 })
      end)
      green.sleep(0)
      c2:send("line\n")
      local r, w = waiter:wait()
      assert.same({ s2, [s2] = 1 }, r)
      assert.same({}, w)
      assert.is_true(s2:dirty())
      assert.is_false(s:dirty())
      -- The data is still there, and this thread may read it.
      assert.are.equal("line", s2:receive())
      for _, x in ipairs { c, s, c2, s2 } do x:close() end
    end)
  end)

  it("does not trip the simultaneous-reader check: select, then receive",
     function()
    green_run(function()
      local c, s = pair()
      local got = green.spawn(function()
        local lines = {}
        for _ = 1, 3 do
          local r = green.select({ s }, nil, 5)
          assert.are.equal(s, r[1])
          lines[#lines + 1] = s:receive()
        end
        return table.concat(lines, ",")
      end)
      for i = 1, 3 do
        green.sleep(0)
        c:send("l" .. i .. "\n")
      end
      assert.are.equal("l1,l2,l3", got:wait())
      c:close()
      s:close()
    end)
  end)

  it("reports a server with a pending connection as readable", function()
    green_run(function()
      local srv = assert(green.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local waiter = green.spawn(function() return green.select({ srv }) end)
      green.sleep(0)
      local c = assert(green.connect("127.0.0.1", port))
      local r = waiter:wait()
      assert.are.equal(srv, r[1])
      local s = assert(srv:accept())
      s:close()
      c:close()
      srv:close()
    end)
  end)

  it("reports end of stream as readable", function()
    green_run(function()
      local c, s = pair()
      local waiter = green.spawn(function() return green.select({ s }) end)
      green.sleep(0)
      c:close()
      assert.are.equal(s, waiter:wait()[1])
      assert.same({ nil, "closed", "" }, { s:receive() })
      s:close()
    end)
  end)

  it("treats a closed socket as ready, and wakes when one is closed",
     function()
    green_run(function()
      local c, s = pair()
      c:close()
      local r, w = green.select({ c }, { c }, 0)
      assert.same({ c, [c] = 1 }, r)
      assert.same({ c, [c] = 1 }, w)
      local waiter = green.spawn(function() return green.select({ s }) end)
      green.sleep(0)
      s:close()
      assert.same({ s, [s] = 1 }, (waiter:wait()))
    end)
  end)

  it("works with UDP and Unix sockets in one call", function()
    green_run(function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -m 700 " .. dir))
      local path = dir .. "/sel.sock"
      local srv = assert(green.listen_unix(path))
      local uc = assert(green.connect_unix(path))
      local us = assert(srv:accept())
      local a = bound()
      local b, pb = bound()
      local waiter = green.spawn(function()
        return green.select({ us, b })
      end)
      green.sleep(0)
      a:sendto("dgram", "127.0.0.1", pb)
      local r = waiter:wait()
      assert.are.equal(b, r[1])
      assert.are.equal("dgram", b:receive())
      uc:send("unix\n")
      r = green.select({ us, b }, nil, 5)
      assert.are.equal(us, r[1])
      assert.are.equal("unix", us:receive())
      for _, x in ipairs { uc, us, srv, a, b } do x:close() end
      assert(os.execute("rm -rf " .. dir))
    end)
  end)

  it("waits on many sockets at once", function()
    green_run(function()
      local cs, ss = {}, {}
      local srv = assert(green.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      for i = 1, 200 do
        cs[i] = assert(green.connect("127.0.0.1", port))
        ss[i] = assert(srv:accept())
      end
      srv:close()
      local waiter = green.spawn(function() return green.select(ss) end)
      green.sleep(0)
      cs[137]:send("x")
      local r = waiter:wait()
      assert.same({ ss[137], [ss[137]] = 1 }, r)
      -- Several ready at once come back together, each once.
      cs[3]:send("y")
      cs[200]:send("z")
      local got = require("helper").eventually(function()
        r = green.select(ss, nil, 5)
        local g = {}
        for _, x in ipairs(r) do g[x] = true end
        return g[ss[3]] and g[ss[200]] and g
      end, "both sockets readable")
      assert.is_true(got[ss[137]])
      assert.are.equal(3, #r)
      for i = 1, 200 do cs[i]:close() ss[i]:close() end
    end)
  end)

  it("leaves nothing behind when killed or timed out mid-select",
     function()
    green_run(function()
      local c, s = pair()
      local waiter = green.spawn(function() return green.select({ s }) end)
      green.sleep(0)
      waiter:kill()
      assert.are.equal(green.GreenletExit, waiter:wait())
      local ok, err = pcall(green.with_timeout, 0.01, green.select, { s })
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
      -- The socket works normally afterwards.
      c:send("ok\n")
      assert.are.equal("ok", s:receive())
      c:close()
      s:close()
    end)
  end)

  it("sleeps for the timeout with empty lists", function()
    green_run(function()
      assert.same({ {}, {}, "timeout" }, { green.select({}, {}, 0.001) })
      assert.same({ {}, {}, "timeout" }, { green.select(nil, nil, 0) })
    end)
  end)

  it("raises on something that is not a green socket", function()
    green_run(function()
      assert.has_error(function() green.select({ {} }, nil, 0) end)
      assert.has_error(function() green.select("x") end)
    end)
  end)

  it("works from the host's main thread under stock lua5.4", function()
    local u, p = bound()
    local v = bound()
    v:sendto("m", "127.0.0.1", p)
    local r = green.select({ u }, nil, 5)
    assert.are.equal(u, r[1])
    assert.are.equal("m", u:receive())
    u:close()
    v:close()
  end)

  -- select reads its lists again after allocating, and an allocation can
  -- run a finalizer: one that put a string in the list, or appended
  -- sockets, made it read the string as a socket (a crash) or watch more
  -- sockets than it had counted (a heap overflow). In a process of its
  -- own (it crashed) with a collector that finalizes at almost every
  -- allocation: a chain of finalizers, each making the next, changes the
  -- list whenever one runs during a select; the padding moves the
  -- collections over each allocation select makes.
  it("does not trust a list a finalizer changed during the call",
     function()
    local src = [[
      local green = require "green"
      local how = ...
      green.run(function()
        local u = assert(green.udp())
        assert(u:setsockname("127.0.0.1", 0))
        local list, armed, hits = { u }, false, 0
        local function chain()
          setmetatable({}, { __gc = function()
            -- called from inside select (the C function allocating)
            local caller = debug.getinfo(2, "f")
            if armed and caller and caller.func == green.select then
              hits = hits + 1
              if how == "string" then list[1] = "not a socket"
              else for i = #list + 1, #list + 50 do list[i] = u end end
            end
            chain()
          end })
        end
        chain()
        collectgarbage("generational", 1, 100)
        local tries = 0
        while hits < 100 and tries < 5000 do
          tries = tries + 1
          for _ = 1, tries % 500 do local _ = {} end
          list = { u }
          armed = true
          local ok, r, w, e = pcall(green.select, list, nil, 0.0001)
          armed = false
          assert(ok and #r == 0 and #w == 0 and e == "timeout"
                 or not ok and r:find("item 1 is a string", 1, true), r)
        end
        collectgarbage("incremental")
        print(hits >= 100 and "ok" or "only " .. hits .. " hits")
      end)
    ]]
    for _, how in ipairs({ "string", "grow" }) do
      local out, err, code = helper.greenlua_run(src, how, 120)
      assert.are.equal("ok\n", out, how .. ": " .. err)
      assert.are.equal(0, code, err)
    end
  end)
end)

