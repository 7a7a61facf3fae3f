-- The resolver: green.core.getaddrinfo / getnameinfo / gethostname (c-ares
-- on the hub's loop; the hub keeps running while it works). Abandoned
-- lookups, timeouts and green.resolver are in resolver_spec.lua.
local green = require "green"

local core = green.core

describe("the green resolver", function()
  it("resolves localhost, while other threads run", function()
    green_run(function()
      local ticks = 0
      local ticker = green.spawn(function()
        while true do ticks = ticks + 1; green.sleep(0) end
      end)
      local list = assert(core.getaddrinfo("localhost"))
      local found = false
      for _, a in ipairs(list) do
        assert.is_true(a.family == "inet" or a.family == "inet6")
        if a.addr == "127.0.0.1" then found = true end
      end
      assert.is_true(found)
      assert.is_true(ticks > 0)
      ticker:kill()
    end)
  end)

  it("filters by family", function()
    green_run(function()
      local list = assert(core.getaddrinfo("localhost", { family = "inet" }))
      for _, a in ipairs(list) do assert.are.equal("inet", a.family) end
      assert.has_error(function()
        core.getaddrinfo("localhost", { family = "ipx" })
      end)
    end)
  end)

  it("says host not found for an unknown name", function()
    green_run(function()
      assert.are.same({ nil, "host not found" },
                      { core.getaddrinfo("no-such-host.invalid") })
    end)
  end)

  it("leaves nothing behind when the waiting thread is killed", function()
    green_run(function()
      local t = green.spawn(core.getaddrinfo, "localhost")
      green.sleep(0) -- t waits for the resolver
      t:kill()
      assert.are.equal(green.GreenletExit, t:wait())
      -- the lookup is dropped; the hub empties
    end)
  end)

  it("raises a Timeout that fires during a lookup", function()
    green_run(function()
      local ok, err = pcall(function()
        local _ <close> = green.Timeout(0)
        return core.getaddrinfo("localhost")
      end)
      -- A Timeout due at once fires at the end of the hub's pass, before
      -- the thread runs again, even if the resolver has answered by then.
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
    end)
  end)

  it("reverse-resolves an address", function()
    green_run(function()
      local host, service = core.getnameinfo("127.0.0.1", 80)
      assert.is_string(host)
      assert.are.equal("http", service)
      assert.has_error(function() core.getnameinfo("not an ip") end)
    end)
  end)

  it("works from the main thread and names this machine", function()
    assert.is_table(core.getaddrinfo("127.0.0.1"))
    local name = core.gethostname()
    assert.is_string(name)
    assert.is_true(#name > 0)
  end)

  it("finds no host for a name with a zero byte, in every call that "
     .. "takes one", function()
    -- C reads the name up to its first zero byte: "localhost\0.example"
    -- resolved localhost, and "127.0.0.1\0..." was 127.0.0.1
    green_run(function()
      local u = assert(green.udp())
      local calls = {
        function(h) return green.getaddrinfo(h) end,
        function(h) return green.connect(h, 1, { timeout = 5 }) end,
        function(h) return green.listen(h, 0) end,
        function(h) return u:sendto("x", h, 9) end,
        function(h) return u:setsockname(h, 0) end,
        function(h) return u:setpeername(h, 9) end,
      }
      for i, call in ipairs(calls) do
        for _, host in ipairs({ "localhost\0.example", "127.0.0.1\0x",
                                "*\0x" }) do
          assert.same({ nil, "host not found" }, { call(host) },
                      "call " .. i .. " took " .. host)
        end
      end
      u:close()
      -- green.socket (its connect runs green.connect in a thread of its
      -- own: an error there left the caller waiting for ever)
      local socket = require "green.socket"
      assert.same({ nil, "host or service not provided, or not known" },
                  { socket.connect("localhost\0.example", 1) })
      assert.same({ nil, "host or service not provided, or not known" },
                  { socket.bind("127.0.0.1\0x", 0) })
      local ok, err = pcall(green.getnameinfo, "127.0.0.1\0x", 80)
      assert.is_false(ok)
      assert.matches("not an IP address", err)
      ok, err = pcall(green.getaddrinfo, "localhost", { family = "inet\0x" })
      assert.is_false(ok)
      assert.matches("bad family", err)
    end)
  end)
end)

