-- green.process's own clone3 spawner under attack (bindings/process.c):
-- each case runs a greenlua script twice, with the spawner this kernel
-- gives (clone3 here, posix_spawn where clone3 cannot) and with
-- GREENLUA_SPAWN=posix_spawn, and wants the same observable outcome from
-- both: what posix_spawn does is the contract.
local h = require "helper"

-- Run Lua `src` under greenlua with shell `prefix` (ulimit ...) and
-- command `wrap` (setsid) once per spawner; the outputs, after checking
-- each run succeeded.
local function both(src, prefix, wrap)
  local p = os.tmpname()
  local f = assert(io.open(p, "w"))
  f:write(src)
  f:close()
  local outs = {}
  for _, which in ipairs { "default", "posix_spawn" } do
    local out, err, code = h.sh((prefix or "") .. " GREENLUA_SPAWN=" .. which
                                .. " exec " .. (wrap or "") .. h.greenlua
                                .. " " .. p, 60)
    assert.are.equal("", err, which)
    assert.are.equal(0, code, which)
    outs[#outs + 1] = out
  end
  os.remove(p)
  return outs[1], outs[2]
end

-- The prelude of every script: green, process, and `fill()`, which opens
-- /dev/null until no descriptor is left and returns a function that
-- closes them again.
local PRELUDE = [[
local green = require "green"
local process = green.process
-- Counted here, not by a child: io.popen's child (ls) could list the
-- parent's copy of the pipe's write end, which glibc closes only once
-- the child has exec'd (on a loaded machine, now and then: off by one).
local function nfds()
  return #assert(green.fs.scandir("/proc/self/fd"))
end
local function children()
  local pid = process.getpid()
  local f = assert(io.open("/proc/" .. pid .. "/task/" .. pid .. "/children"))
  local s = f:read("a")
  f:close()
  return s
end
local function fill()
  local files = {}
  for _ = 1, 100000 do
    local f = io.open("/dev/null")
    if not f then break end
    files[#files + 1] = f
  end
  assert(#files > 0 and not io.open("/dev/null"))
  return function()
    for _, f in ipairs(files) do f:close() end
  end
end
local function show(...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = tostring(t[i]) end
  io.write(table.concat(t, " "), "\n")
end
]]

describe("the clone3 spawner", function()
  it("starts children with no descriptor left, as posix_spawn: no pidfd "
     .. "for run and execute, /dev/null on the child's own number",
     function()
    local a, b = both(PRELUDE .. [[
green.run(function()
  assert(process.run { "true" }) -- the child stack, pipes: warmed up
  local before = nfds()
  local unfill = fill()
  show(process.execute("exit 5"))
  local ok, _, _, how, code = process.run({ "sh", "-c", "exit 6" },
    { stdout = "null", stderr = "null" })
  show(ok, how, code)
  local p, msg = process.spawn { "sh", "-c", "exit 7", stdin = "null",
                                 stdout = "null" }
  if p then show(msg, p:wait()) else show(msg) end
  unfill()
  show("descriptors", nfds() - before, "children", children())
end)
]], "ulimit -n 64;")
    assert.are.equal("nil exit 5\nfalse exit 6\nnil exit 7\n"
                     .. "descriptors 0 children \n", b)
    assert.are.equal(b, a)
  end)
end)

describe("the clone3 spawner refused", function()
  -- greenlua's clone3 calls: the first is pthread_create's (the
  -- watchdog), the second the first spawn's.
  local SRC = [[
local green = require "green"
green.run(function()
  local p, msg, errno = green.process.spawn { "true" }
  if p then msg, errno = p:wait() end
  print(msg, errno, green.core.process_spawner())
  local ok, _, _, how, code = green.process.run { "sh", "-c", "exit 3" }
  print(ok, how, code, green.core.process_spawner())
end)
]]

  it("falls back to posix_spawn for good where clone3 cannot "
     .. "(ENOSYS, EPERM, EINVAL, E2BIG); other failures are the spawn's",
     function()
    if not h.has_tool("strace") then
      pending("no strace here")
      return
    end
    local p = os.tmpname()
    local f = assert(io.open(p, "w"))
    f:write(SRC)
    f:close()
    local function under(errname)
      local inject = errname and "-e inject=clone3:error=" .. errname
                     .. ":when=2 " or ""
      -- (LeakSanitizer cannot run under ptrace: no leak check here)
      local out, err, code = h.sh("env -u LD_PRELOAD ASAN_OPTIONS="
        .. "detect_leaks=0 strace -o /dev/null -e trace=clone3 " .. inject
        .. h.greenlua .. " " .. p, 60)
      assert.are.equal("", err, errname)
      assert.are.equal(0, code, errname)
      return out
    end
    local plain = under(nil) -- no failure injected
    if not plain:match("clone3\n$") then
      os.remove(p)
      pending("no clone3 spawner on this kernel")
      return
    end
    for _, e in ipairs { "ENOSYS", "EPERM", "EINVAL", "E2BIG" } do
      assert.are.equal("exit\t0\tposix_spawn\nfalse\texit\t3\tposix_spawn\n",
                       under(e))
    end
    assert.are.equal("true: Resource temporarily unavailable\t11\tclone3\n"
                     .. "false\texit\t3\tclone3\n", under("EAGAIN"))
    assert.are.equal("true: Cannot allocate memory\t12\tclone3\n"
                     .. "false\texit\t3\tclone3\n", under("ENOMEM"))
    os.remove(p)
  end)
end)

describe("the clone3 spawner under signals", function()
  it("starts hundreds of children from four threads while the process "
     .. "group takes SIGUSR1 and SIGUSR2 in a tight loop, with green "
     .. "handlers: each child exits or dies by one, all are reaped",
     function()
    local a, b = both(PRELUDE .. [[
local N = 400
green.run(function()
  local got = 0
  local h1 = green.signal("USR1", function() got = got + 1 end)
  local h2 = green.signal("USR2", function() got = got + 1 end)
  local me = process.getpid()
  assert(process.run { "true" }) -- libuv's spare descriptor: opened once
  local before = nfds()
  local killer = assert(process.spawn { "sh", "-c", "trap '' USR1 USR2; "
    .. "while kill -0 " .. me .. " 2>/dev/null; do kill -USR1 -" .. me
    .. "; kill -USR2 -" .. me .. "; done" })
  local seen, done, bad = 0, 0, {}
  for t = 1, 4 do
    green.spawn(function()
      for i = 1, N // 4 do
        local how, code
        if (i + t) % 2 == 0 then
          local _, _, _, hw, c = process.run { "true" }
          how, code = hw, c
        else
          local p = assert(process.spawn { "true", stdout = "null" })
          how, code = p:wait()
        end
        seen = seen + 1
        if not (how == "exit" and code == 0 or how == "signal"
                and (code == 10 or code == 12)) then
          bad[#bad + 1] = tostring(how) .. " " .. tostring(code)
        end
      end
      done = done + 1
    end)
  end
  for _ = 1, 4000 do -- 40 s at most
    if done == 4 and got > 0 then break end
    green.sleep(0.01)
  end
  killer:kill("KILL")
  killer:wait()
  h1:cancel()
  h2:cancel()
  show(seen, #bad, table.concat(bad, ","), got > 0,
       "descriptors", nfds() - before, "children", children())
end)
]], nil, "setsid ")
    assert.are.equal("400 0  true descriptors 0 children \n", a)
    assert.are.equal(a, b)
  end)
end)

describe("the clone3 spawner's child", function()
  -- The functions the child runs (child_main and all it calls), from the
  -- disassembly of green/core.so: the calls in each.
  local function child_calls()
    local so = (os.getenv("GREENLUA_BUILD") or "./build") .. "/green/core.so"
    local out, err, code = h.sh("objdump -d --no-show-raw-insn " .. so, 60)
    assert.are.equal(0, code, err)
    local funcs, cur = {}, nil
    for line in out:gmatch("[^\n]+") do
      local name = line:match("^%x+ <([^>]+)>:$")
      if name then
        cur = {}
        funcs[name] = cur
      elseif cur and line:match("^%s+%x+:") then
        cur[#cur + 1] = line
      end
    end
    return funcs
  end

  it("makes raw system calls only: child_main and what it calls call "
     .. "nothing but syscall, __errno_location and each other (no "
     .. "sanitizer hook, no memcpy, no lock)", function()
    if not h.has_tool("objdump") then
      pending("no objdump here")
      return
    end
    local funcs = child_calls()
    if not funcs.child_main then
      pending("no clone3 spawner (or no symbols) in this build")
      return
    end
    local seen, todo, plt = { child_main = true }, { "child_main" }, {}
    while #todo > 0 do
      local name = table.remove(todo)
      for _, ins in ipairs(assert(funcs[name], name)) do
        assert.is_nil(ins:match("%scall%a*%s+%*"), name .. ": " .. ins)
        local op, target = ins:match("^%s+%x+:%s+(%a+)%s+%x+ <([^>+]+)")
        if target and target ~= name and (op == "call" or op == "jmp") then
          if target:match("@plt$") then
            plt[target] = true
            assert.is_true(target == "syscall@plt"
                           or target == "__errno_location@plt",
                           name .. " calls " .. target)
          elseif not seen[target] then
            seen[target] = true
            todo[#todo + 1] = target
          end
        end
      end
    end
    assert.is_true(seen.child_search and seen.child_stdio and
                   plt["syscall@plt"] and true or false)
    for name in pairs(seen) do
      assert.matches("^child_", name)
    end
  end)

  it("searches PATH as the posix_spawn fallback does: relative elements "
     .. "in cwd, the child's PATH, over-long elements skipped, EACCES "
     .. "remembered, other errors final", function()
    local w = os.tmpname()
    os.remove(w)
    assert(os.execute("mkdir -p " .. w .. "/bin " .. w .. "/noexec && "
      .. "printf '#!/bin/sh\\necho w-bin\\n' >" .. w .. "/bin/gp && "
      .. "printf '#!/bin/sh\\necho w-cwd\\n' >" .. w .. "/gp && "
      .. ": >" .. w .. "/noexec/gp && chmod 755 " .. w .. "/bin/gp " .. w
      .. "/gp"))
    local a, b = both(PRELUDE .. [[
local w = ]] .. string.format("%q", w) .. [[

local LONG = "/" .. string.rep("a", 4999)
local function try(name, path, cwd)
  local ok, out = process.run({ name }, { cwd = cwd, env = { PATH = path },
                                          stderr = "null" })
  show(ok, (out:gsub("\n", "")))
end
green.run(function()
  for _, c in ipairs {
    { "gp", "bin" }, { "gp", "" }, { "gp", "noexec:bin" },
    { "gp", "noexec:/nonexistent" }, { "gp", LONG .. ":bin" },
    { "gp", LONG .. ":/nonexistent" }, { "gp", "/nonexistent:" .. LONG },
    { "gp", w .. "/" .. string.rep("b", 4092 - #w) .. ":bin" },
    { string.rep("n", 256), "bin" }, { "./gp", "/nonexistent" },
  } do
    try(c[1], c[2], w)
  end
end)
]])
    assert(os.execute("rm -r " .. w))
    assert.are.equal(table.concat({
      "true w-bin", "true w-cwd", "true w-bin",
      "nil gp: Permission denied", "true w-bin",
      "nil gp: No such file or directory",
      "nil gp: No such file or directory", "nil gp: File name too long",
      "nil " .. string.rep("n", 256) .. ": File name too long",
      "true w-cwd", "" }, "\n"), a)
    assert.are.equal(a, b)
  end)
end)
