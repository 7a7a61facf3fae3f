-- The hub's lifecycle edges: what green does once lua_close has closed
-- the hub (a finalizer that runs after green's own), and what holds the
-- end of a program or of the state.
local h = require "helper"

-- A finalizer Lua runs after green's own at lua_close (its object was
-- given its __gc before green loaded) calls green. Every call that would
-- use the closed hub (a thread's slot, the timer heap, a libuv handle or
-- request, the watchdog's OS thread) raises "the hub is closed"; the
-- calls listed in HARMLESS need no hub (documented in docs/api.md) and
-- just work. Under the sanitizers nothing may leak or touch freed memory:
-- spawn and spawn_after leaked their slot and timer-heap entry, a
-- Timeout's cancel and the kill of a delayed thread read the freed heap,
-- readline made a poll handle on the closed loop, and the watchdog's
-- thread read the freed hub.
local WALK = [[
local green, core, calls
local T = %q
G = setmetatable({}, { __gc = function()
  for _, c in ipairs(calls) do
    local ok, err = pcall(c[2])
    print(c[1] .. "\t" .. tostring(ok) .. "\t" .. tostring(err))
  end
  -- every function of green.core, without arguments: nothing crashes
  local seen, n = {}, 0
  local function walk(t)
    if seen[t] then return end
    seen[t] = true
    for _, v in pairs(t) do
      if type(v) == "function" then
        pcall(v)
        n = n + 1
      elseif type(v) == "table" then
        walk(v)
      end
    end
  end
  walk(core)
  print("walked\t" .. n)
end })
green = require "green"
core = require "green.core"
local gt0 = green.spawn(function() green.sleep(100) end)
local late = green.spawn_after(100, print)
local to0 = green.Timeout(100)
local q0, ev0, sem0 = green.Queue(), green.Event(), green.Semaphore(0)
green.sleep(0)
calls = {
  {"spawn", function() return green.spawn(print) end},
  {"spawn_n", function() return green.spawn_n(print) end},
  {"spawn_after", function() return green.spawn_after(1, print) end},
  {"sleep", function() return green.sleep(0) end},
  {"sleep 1", function() return green.sleep(1) end},
  {"kill", function() return green.kill(gt0) end},
  {"kill delayed", function() return late:kill() end},
  {"cancel delayed", function() return late:cancel() end},
  {"wait", function() return gt0:wait() end},
  {"run", function() return green.run() end},
  {"suspend", function() return green.suspend() end},
  {"Timeout", function() return green.Timeout(1) end},
  {"Timeout never", function() return green.Timeout() end},
  {"with_timeout", function() return green.with_timeout(1, print) end},
  {"GreenPool:spawn", function() return green.GreenPool(2):spawn(print) end},
  {"LoopingCall:start", function()
     return green.LoopingCall(print):start(1) end},
  {"connect", function() return green.connect("127.0.0.1", 1) end},
  {"listen", function() return green.listen("127.0.0.1", 0) end},
  {"connect_unix", function() return green.connect_unix(T .. "/no") end},
  {"listen_unix", function() return green.listen_unix(T .. "/sock") end},
  {"udp", function() return green.udp() end},
  {"tls.context", function() return green.tls.context({}) end},
  {"http.get", function() return green.http.get("http://127.0.0.1:1/") end},
  {"getaddrinfo", function() return green.getaddrinfo("localhost") end},
  {"getnameinfo", function() return green.getnameinfo("127.0.0.1") end},
  {"fs.open", function() return green.fs.open("/dev/null") end},
  {"fs.stat", function() return green.fs.stat("/") end},
  {"fs.scandir", function() return green.fs.scandir("/") end},
  {"fs.readfile", function() return green.fs.readfile("/dev/null") end},
  {"fs.mkdir", function() return green.fs.mkdir(T .. "/d") end},
  {"process.spawn", function() return green.process.spawn({"true"}) end},
  {"process.run", function() return green.process.run("true") end},
  {"process.wait", function() return green.process.wait(1, 0) end},
  {"signal", function() return green.signal("USR1", print) end},
  {"signal.wait", function() return green.signal.wait("USR1", 0) end},
  {"readline", function() return core.readline() end},
  {"hub_blocking_detection", function()
     return green.debug.hub_blocking_detection(true, 0.01) end},
  {"require anew", function() -- the closed hub's table, not a new hub
     package.loaded["green.core"] = nil
     return require("green.core").spawn(print) end},
  -- HARMLESS: no hub needed
  {"Timeout:cancel", function() return to0:cancel() end},
  {"now", function() return green.now() end},
  {"getcurrent", function() return green.getcurrent() end},
  {"Event", function() return green.Event():send(1) end},
  {"Event:send", function() return ev0:send(1) end},
  {"Semaphore", function() return green.Semaphore(2):acquire() end},
  {"Semaphore:release", function() return sem0:release() end},
  {"Queue", function() return green.Queue():put(1) end},
  {"Queue:put", function() return q0:put(1) end},
  {"Queue:get", function() return q0:get() end},
  {"GreenPool", function() return green.GreenPool(2) end},
  {"http.Client", function() return green.http.Client() end},
  {"fs.stats", function() return green.fs.stats() end},
  {"resolver.stats", function() return green.resolver.stats() end},
  {"debug.threads", function() return green.debug.threads() end},
  {"debug.stats", function() return green.debug.stats() end},
  {"getpid", function() return green.process.getpid() end},
}
]]

local HARMLESS = {
  ["Timeout:cancel"] = true, now = true, getcurrent = true, Event = true,
  ["Event:send"] = true, Semaphore = true, ["Semaphore:release"] = true,
  Queue = true, ["Queue:put"] = true, ["Queue:get"] = true,
  GreenPool = true, ["http.Client"] = true, ["fs.stats"] = true,
  ["resolver.stats"] = true, ["debug.threads"] = true,
  ["debug.stats"] = true, getpid = true,
}

describe("a finalizer that runs after lua_close closed the hub", function()
  it("every call that needs the hub raises 'the hub is closed'; the rest "
     .. "work; nothing leaks or crashes", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. h.quote(dir)))
    local out, err, code = h.lua54_run(WALK:format(dir), 60)
    os.execute("rm -rf " .. h.quote(dir))
    assert.are.equal(0, code, "exit code " .. code .. ": " .. err)
    local n, closed, harmless = 0, 0, 0
    for name, ok, msg in out:gmatch("([^\t\n]+)\t([^\t\n]+)\t([^\n]*)") do
      n = n + 1
      if HARMLESS[name] then
        assert.are.equal("true", ok, name .. ": " .. msg)
        harmless = harmless + 1
      else
        assert.are.equal("false", ok, name .. " worked: " .. msg)
        assert.matches("green: the hub is closed %(lua_close%): a "
                       .. "finalizer that runs after it cannot use green$",
                       msg, 1, false, name)
        closed = closed + 1
      end
    end
    local walked = tonumber(out:match("walked\t(%d+)"))
    assert.is_true(walked ~= nil and walked > 150, out)
    assert.are.equal(38, closed, out)
    assert.are.equal(17, harmless, out)
  end)
end)

describe("the end of a program with a thread asleep in sleep_unref", function()
  -- Its timer keeps nothing running, so the program ends with the thread
  -- asleep (green.http's pool watcher ticks so): the hub's close closed
  -- the timer without a callback and its record leaked (LeakSanitizer).
  local src = [[
    local green = require "green"
    green.spawn(function() green.core.sleep_unref(100) end)
    green.sleep(0)
    io.write("bye")
  ]]
  for _, host in ipairs({ "greenlua", "lua54" }) do
    it("leaks nothing (" .. host .. ")", function()
      local out, err, code
      if host == "lua54" then
        out, err, code = h.lua54_run(src, 60)
      else
        out, err, code = h.greenlua_run(src, nil, 60)
      end
      assert.are.equal(0, code, err)
      assert.are.equal("bye", out)
      assert.not_matches("Sanitizer", err)
    end)
  end
end)
