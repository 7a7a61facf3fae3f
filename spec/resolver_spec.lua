-- The resolver (bindings/dns.c: c-ares on the hub's loop) against a name
-- server run by the spec on 127.0.0.1: abandoned lookups, timeouts,
-- green.resolver.setup and .stats, "too many open files".
local green = require "green"
local helper = require "helper"
local socket = require "green.socket"
local D = require "dns_support"

local pack = string.pack

-- {======================================================================
-- A name server for the specs
-- =======================================================================

-- A response to a query: an A record holding `ip` for an A query, no
-- record (NODATA) for another type; `ip` false: NXDOMAIN.
local function response(id, question, qtype, ip)
  local answer = ""
  if ip and qtype == 1 then
    local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    answer = pack(">I2I2I2I4I2BBBB", 0xC00C, 1, 1, 60, 4, tonumber(a),
                  tonumber(b), tonumber(c), tonumber(d))
  end
  local flags = 0x8180 | (ip and 0 or 3)
  return pack(">I2I2I2I2I2I2", id, flags, 1, answer ~= "" and 1 or 0, 0, 0)
      .. question .. answer
end

--- A name server on 127.0.0.1 (in a green thread): it answers at once for
-- the names in `answers` (name -> IPv4 address, or false for NXDOMAIN),
-- keeps the queries for the names in `held` until `release()`, and never
-- answers any other name (a server that has stalled). `.queries` counts
-- the queries received; `.addr` is "127.0.0.1:port".
local function fake_server(answers, held)
  held = held or {}
  local kept = {}
  local self = D.server(function(q, ip, from)
    if answers[q.name] ~= nil then
      return { response(q.id, q.question, q.qtype, answers[q.name]) }
    elseif held[q.name] ~= nil then
      kept[#kept + 1] = { response(q.id, q.question, q.qtype, held[q.name]),
                          ip, from }
    end
  end)
  self.kept = kept
  return self
end

--- Answer the queries kept for the `held` names (of `server`).
local function release(server)
  for _, r in ipairs(server.kept) do server.u:sendto(r[1], r[2], r[3]) end
  for i = #server.kept, 1, -1 do server.kept[i] = nil end
end

-- }======================================================================

-- Wait (bounded) until `cond()` holds.
local function wait_for(cond, what)
  require("helper").eventually(cond, what)
end

local function waiting(n)
  return function() return green.resolver.stats().waiting == n end
end

local IDLE = { waiting = 0, abandoned = 0, sockets = 0 }

describe("green.resolver", function()
  it("asks the configured servers; /etc/hosts and literals need none",
     function()
    finally(function() green.resolver.setup() end)
    green_run(function()
      local dns <close> = fake_server{ ["web.test"] = "192.0.2.10",
                                       ["gone.test"] = false }
      green.resolver.setup{ servers = { dns.addr }, timeout = 60 }
      assert.are.same({ { family = "inet", addr = "192.0.2.10" } },
                      green.getaddrinfo("web.test"))
      assert.are.same({ nil, "host not found" },
                      { green.getaddrinfo("gone.test") })
      assert.are.equal("192.0.2.10", socket.dns.toip("web.test"))
      local asked = dns.queries
      -- "localhost" comes from /etc/hosts, literals from nowhere
      assert.are.equal("127.0.0.1",
                       green.getaddrinfo("localhost", { family = "inet" })[1]
                         .addr)
      assert.are.same({ { family = "inet6", addr = "::1" } },
                      green.getaddrinfo("::1"))
      assert.are.same({ nil, "host not found" },
                      { green.getaddrinfo("::1", { family = "inet" }) })
      assert.are.same({ nil, "host not found" },
                      { green.connect("127.0.0.1", 1, { family = "inet6" }) })
      assert.are.equal(asked, dns.queries)
      assert.are.same(IDLE, green.resolver.stats())
    end)
  end)

  it("answers a fresh lookup while 200 abandoned ones are in flight",
     function()
    finally(function() green.resolver.setup() end)
    green_run(function()
      local server <close> = assert(green.listen("127.0.0.1", 0))
      local _, lport = server:getsockname()
      local dns <close> = fake_server{ ["fresh.test"] = "127.0.0.1" }
      -- The stalled queries would end after 60 s.
      green.resolver.setup{ servers = { dns.addr }, timeout = 60, tries = 1 }
      local keeper = green.spawn(green.getaddrinfo, "keeper.test")
      local killed, timed, expired = {}, {}, {}
      for i = 1, 70 do
        killed[i] = green.spawn(green.getaddrinfo, "k" .. i .. ".test",
                                { family = "inet" })
      end
      for i = 1, 65 do
        timed[i] = green.spawn(pcall, green.with_timeout, 0.05,
                               socket.dns.toip, "t" .. i .. ".test")
        expired[i] = green.spawn(green.connect, "c" .. i .. ".test", 80,
                                 { timeout = 0.05 })
      end
      -- Every lookup is under way (the green.Timeouts and socket timeouts
      -- may fire meanwhile; none can end otherwise: the server is silent).
      wait_for(function()
        local st = green.resolver.stats()
        return st.waiting + st.abandoned == 201
      end, "201 lookups under way")
      for _, t in ipairs(killed) do
        t:kill()
        assert.are.equal(green.GreenletExit, t:wait())
      end
      for i = 1, 65 do
        local ok, err = timed[i]:wait()
        assert.is_false(ok)
        assert.is_true(green.is_timeout(err))
        assert.are.same({ nil, "timeout" }, { expired[i]:wait() })
      end
      local s = green.resolver.stats()
      assert.are.equal(1, s.waiting)
      assert.are.equal(200, s.abandoned)
      -- Fresh lookups are answered (a generous bound: 10 s), ...
      local c <close> = assert(green.with_timeout(10, green.connect,
                                                  "fresh.test", lport))
      assert.are.same({ "127.0.0.1", lport, "inet" }, { c:getpeername() })
      assert.are.same({ { family = "inet", addr = "127.0.0.1" } },
                      green.getaddrinfo("fresh.test", { family = "inet" }))
      assert.are.equal("127.0.0.1", socket.dns.toip("localhost"))
      -- ... before any of the stalled queries ended.
      assert.are.equal(200, green.resolver.stats().abandoned)
      -- Once nobody waits, every query is cancelled and every socket shut.
      keeper:kill()
      assert.are.same(IDLE, green.resolver.stats())
    end)
  end)

  it("gives up on a silent server after timeout and tries: host not found",
     function()
    finally(function() green.resolver.setup() end)
    green_run(function()
      local dns <close> = fake_server{}
      green.resolver.setup{ servers = { dns.addr }, timeout = 0.1, tries = 2 }
      assert.are.same({ nil, "host not found" },
                      { green.with_timeout(30, green.getaddrinfo,
                                           "silent.test",
                                           { family = "inet" }) })
      assert.are.equal(2, dns.queries) -- one per try
      assert.are.same({ nil, "host not found" },
                      { green.with_timeout(30, green.connect, "silent.test",
                                           80) })
      assert.are.same(IDLE, green.resolver.stats())
    end)
  end)

  -- Every way into the resolver, killed and timed out while it waits.
  local calls = {
    ["green.getaddrinfo"] = function()
      return green.getaddrinfo("stall.test")
    end,
    ["green.connect"] = function() return green.connect("stall.test", 80) end,
    ["socket.dns.toip"] = function() return socket.dns.toip("stall.test") end,
    ["green.getnameinfo"] = function()
      return green.getnameinfo("192.0.2.1", 80)
    end,
    ["udp:sendto"] = function()
      local u <close> = assert(green.udp())
      return u:sendto("x", "stall.test", 9)
    end,
  }
  for name, call in pairs(calls) do
    it("leaves nothing behind when killed in a lookup (" .. name .. ")",
       function()
      finally(function() green.resolver.setup() end)
      green_run(function()
        local dns <close> = fake_server{}
        green.resolver.setup{ servers = { dns.addr }, timeout = 60 }
        local t = green.spawn(call)
        wait_for(waiting(1), "the lookup")
        t:kill()
        assert.are.equal(green.GreenletExit, t:wait())
        assert.are.same(IDLE, green.resolver.stats())
      end)
    end)

    it("leaves nothing behind after a green.Timeout in a lookup (" .. name
       .. ")", function()
      finally(function() green.resolver.setup() end)
      green_run(function()
        local dns <close> = fake_server{}
        green.resolver.setup{ servers = { dns.addr }, timeout = 60 }
        local ok, err = pcall(green.with_timeout, 0.05, call)
        assert.is_false(ok)
        assert.is_true(green.is_timeout(err))
        assert.are.same(IDLE, green.resolver.stats())
      end)
    end)
  end

  -- close() wakes every thread waiting on the socket; a UDP call
  -- resolving its name waited for the resolver instead (up to its timeout,
  -- 60 s here), then said "host not found"
  it("ends a UDP call's lookup with 'closed' when its socket closes",
     function()
    finally(function() green.resolver.setup() end)
    green_run(function()
      local dns <close> = fake_server{}
      green.resolver.setup{ servers = { dns.addr }, timeout = 60 }
      for _, op in ipairs({ "sendto", "setsockname", "setpeername" }) do
        local u = assert(green.udp())
        local t = green.spawn(function()
          if op == "sendto" then return u:sendto("x", "stall.test", 9) end
          return u[op](u, "stall.test", 9)
        end)
        wait_for(waiting(1), "the lookup of " .. op)
        u:close()
        assert.are.same({ nil, "closed" },
                        { green.with_timeout(10, t.wait, t) }, op)
        assert.are.same(IDLE, green.resolver.stats())
      end
    end)
  end)

  it("counts the socket timeout from the start of the lookup", function()
    finally(function() green.resolver.setup() end)
    green_run(function()
      local dns <close> = fake_server{}
      green.resolver.setup{ servers = { dns.addr }, timeout = 60 }
      local u <close> = assert(green.udp())
      u:settimeout(0.05)
      assert.are.same({ nil, "timeout" }, { u:sendto("x", "stall.test", 9) })
      local tcp = socket.tcp()
      tcp:settimeout(0.05)
      assert.are.same({ nil, "timeout" }, { tcp:connect("stall.test", 80) })
      tcp:close()
      assert.are.same(IDLE, green.resolver.stats())
    end)
  end)

  it("lets lookups under way finish on the servers they started with",
     function()
    finally(function() green.resolver.setup() end)
    green_run(function()
      local old <close> = fake_server({}, { ["held.test"] = "192.0.2.1" })
      local new <close> = fake_server{ ["held.test"] = "192.0.2.2" }
      green.resolver.setup{ servers = { old.addr }, timeout = 60 }
      local t = green.spawn(green.getaddrinfo, "held.test",
                            { family = "inet" })
      wait_for(function() return #old.kept == 1 end, "the held query")
      green.resolver.setup{ servers = { new.addr }, timeout = 60 }
      assert.are.equal("192.0.2.2",
                       green.getaddrinfo("held.test",
                                         { family = "inet" })[1].addr)
      assert.are.equal(1, green.resolver.stats().waiting)
      release(old)
      assert.are.equal("192.0.2.1", t:wait()[1].addr)
      assert.are.same(IDLE, green.resolver.stats())
    end)
  end)

  it("refuses bad options and keeps its configuration", function()
    finally(function() green.resolver.setup() end)
    green_run(function()
      local dns <close> = fake_server{ ["web.test"] = "192.0.2.10" }
      green.resolver.setup{ servers = { dns.addr }, timeout = 60 }
      local bad = {
        { { servers = { "example.com" } }, "bad server 'example.com'" },
        { { servers = { "127.0.0.1:0" } }, "bad server" },
        { { servers = { "127.0.0.1:99999" } }, "bad server" },
        { { servers = { "[::1" } }, "bad server" },
        { { servers = { 53 } }, "bad server" },
        { { servers = {} }, "servers must list" },
        -- a length past 2^32 wrapped to 1 (or 3) in an int: accepted
        { { servers = setmetatable({ "127.0.0.1" }, {
              __len = function() return 2^32 + 1 end }) },
          "servers must list" },
        { { servers = setmetatable({ "127.0.0.1", "127.0.0.2", "127.0.0.3" },
                                   { __len = function()
                                       return math.mininteger + 3
                                     end }) },
          "servers must list" },
        { { timeout = 0 }, "timeout must be" },
        { { tries = 0 }, "tries must be" },
        { { retries = 2 }, "unknown option 'retries'" },
      }
      for _, case in ipairs(bad) do
        local ok, err = pcall(green.resolver.setup, case[1])
        assert.is_false(ok)
        assert.matches(case[2], err, 1, true)
      end
      assert.has_error(function() green.resolver.setup("x") end)
      assert.are.equal("192.0.2.10",
                       green.getaddrinfo("web.test")[1].addr)
      -- the forms that are accepted
      green.resolver.setup{ servers = { "::1", "[::1]:53", "127.0.0.1" },
                            timeout = 0.5, tries = 8 }
    end)
  end)

  it("lets a process exit as soon as its main chunk ends", function()
    local script = [[
      local green = require "green"
      local u = assert(green.udp()) -- a name server that never answers
      assert(u:setsockname("127.0.0.1", 0))
      local _, port = u:getsockname()
      green.resolver.setup{ servers = { "127.0.0.1:" .. port },
                            timeout = 3600, tries = 1 }
      local main, threads = green.getcurrent(), {}
      for i = 1, 200 do
        threads[i] = green.spawn(green.getaddrinfo, "s" .. i .. ".test")
      end
      green.sleep(0)
      print("waiting", green.resolver.stats().waiting)
      for i = 1, 200, 2 do threads[i]:kill() end
      print("abandoned", green.resolver.stats().abandoned)
      green.spawn(function()
        main:wait() -- the others are killed after the main chunk
        for i = 2, 200, 2 do threads[i]:kill() end
      end)
    ]]
    -- The resolver's timeout (an hour) is far past the subprocess's bound
    -- (helper.subprocess_timeout): a process that waited for its lookups
    -- would be killed (code 124), so no clock is read here.
    local out, err, code = helper.greenlua_run(script)
    assert.are.equal(0, code, err)
    assert.matches("waiting%s+200", out)
    -- the 100 killed ones were still in flight when the chunk ended
    assert.matches("abandoned%s+100", out)
  end)

  it("says 'too many open files' when it cannot open a socket", function()
    local script = [[
      local green = require "green"
      local socket = require "green.socket"
      green.resolver.setup{ servers = { "127.0.0.1:9" }, timeout = 5,
                            tries = 1 }
      local held = {}
      local function exhaust()
        while true do
          local u, err = green.udp()
          if not u then
            assert(err == "too many open files", err)
            return
          end
          held[#held + 1] = u
          assert(#held < 100000)
        end
      end
      local function release()
        for i = #held, 1, -1 do held[i]:close(); held[i] = nil end
        green.sleep(0) -- the descriptors close on the next loop turn
      end
      local function try()
        print("getaddrinfo", select(2, green.getaddrinfo("net.test")))
        print("connect", select(2, green.connect("net.test", 80)))
        print("toip", select(2, socket.dns.toip("net.test")))
        print("literal", green.getaddrinfo("127.0.0.1")[1].addr)
      end
      exhaust() -- before the resolver's first lookup
      try()
      release()
      print("localhost", green.getaddrinfo("localhost")[1].addr)
      exhaust() -- the resolver is set up, its sockets are not
      try()
      release()
      print("localhost", green.getaddrinfo("localhost")[1].addr)
    ]]
    local p = os.tmpname()
    local f = assert(io.open(p, "w"))
    f:write(script)
    f:close()
    local out, err, code = helper.sh("ulimit -n 64 && " .. helper.greenlua
                                     .. " " .. p)
    os.remove(p)
    assert.are.equal(0, code, err)
    local _, n = out:gsub("too many open files", "")
    assert.are.equal(6, n, out)
    local _, lit = out:gsub("literal\t127%.0%.0%.1", "")
    assert.are.equal(2, lit, out)
    local _, lh = out:gsub("localhost\t127%.0%.0%.1", "")
    assert.are.equal(2, lh, out)
  end)
end)
