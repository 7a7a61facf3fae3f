-- green.process: spawn, Process:wait/kill/communicate, run, popen,
-- execute, green.process.wait(pid), and green.patch()'s io.popen and
-- os.execute (issue 10).
local green = require "green"
local h = require "helper"
local process = green.process

local mypid = process.getpid

-- How many descriptors are open in this process, counted here, not by a
-- child: a child (ls of /proc/<pid>/fd) could list the parent's copy of
-- its pipe's write end, closed only once the child has exec'd (on a
-- loaded machine, now and then: one more than there are).
local function nfds()
  return #assert(green.fs.scandir("/proc/self/fd"))
end

-- This process's children that the kernel still knows (running or
-- zombies).
local function children()
  local pid = mypid()
  local f = assert(io.open("/proc/" .. pid .. "/task/" .. pid .. "/children"))
  local s = f:read("a")
  f:close()
  local list = {}
  for c in s:gmatch("%d+") do list[#list + 1] = tonumber(c) end
  return list
end

local function alive(pid) -- running or a zombie: /proc has it
  local f = io.open("/proc/" .. pid .. "/stat")
  if f then f:close() end
  return f ~= nil
end

local function state(pid) -- "R", "S", "Z", ... or nil once reaped
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s:match("^%d+ %b() (%u)")
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(process.run { "mkdir", d })
  return d
end

describe("green.process.spawn", function()
  it("starts a program with pipes: pid, output, exit code", function()
    green_run(function()
      local p = assert(process.spawn { "sh", "-c",
        "echo out; echo err >&2; exit 3", stdout = "pipe", stderr = "pipe" })
      assert.is_true(math.type(p.pid) == "integer" and p.pid > 0)
      assert.is_nil(p.stdin) -- inherited, not a pipe
      assert.matches("^green%.Process %(pid %d+, running%)$", tostring(p))
      assert.are.equal("out\n", p.stdout:receive("*a"))
      assert.are.equal("err\n", p.stderr:receive("*a"))
      assert.are.same({ "exit", 3 }, { p:wait() })
      assert.are.same({ "exit", 3 }, { p:wait() }) -- again: the same
      assert.matches("pid %d+, exit 3%)$", tostring(p))
      p.stdout:close()
      p.stderr:close()
    end)
  end)

  it("pipes are green sockets: stdin to cat, line by line", function()
    green_run(function()
      local p = assert(process.spawn { "cat", stdin = "pipe",
                                       stdout = "pipe" })
      assert.matches("^green%.socket", tostring(p.stdin))
      for i = 1, 3 do
        assert(p.stdin:send("line " .. i .. "\n"))
        assert.are.equal("line " .. i, p.stdout:receive("*l"))
      end
      p.stdin:close() -- cat sees the end of its input
      assert.are.same({ nil, "closed", "" }, { p.stdout:receive("*l") })
      assert.are.same({ "exit", 0 }, { p:wait() })
      p.stdout:close()
    end)
  end)

  -- shutdown("send") is how a socket's peer is told the end: on a pipe
  -- it returned 1 and did nothing (shutdown(2) is ENOTSOCK there), and
  -- the child waited for more input for ever.
  it("stdin:shutdown(\"send\") ends the child's input once what was sent "
     .. "is out", function()
    green_run(function()
      local p = assert(process.spawn { "wc", "-c", stdin = "pipe",
                                       stdout = "pipe" })
      assert(p.stdin:send(string.rep("x", 1000000))) -- more than a pipe
      assert.are.equal(1, p.stdin:shutdown("send"))   -- holds: queued
      p.stdout:settimeout(30)
      assert.are.equal("1000000", (assert(p.stdout:receive("a"))):match("%d+"))
      assert.are.same({ "exit", 0 }, { p:wait(30) })
      local ok, err = p.stdin:send("late")
      assert.are.same({ nil, "closed" }, { ok, err })
    end)
  end)

  it("stderr = \"stdout\" sends both to one pipe; \"null\" is /dev/null",
     function()
    green_run(function()
      local p = assert(process.spawn { "sh", "-c",
        "echo one; echo two >&2; echo three", stdout = "pipe",
        stderr = "stdout" })
      assert.is_nil(p.stderr)
      assert.are.equal("one\ntwo\nthree\n", p.stdout:receive("*a"))
      p:wait()
      p.stdout:close()
      -- stdin from /dev/null: cat ends at once; its output thrown away
      local q = assert(process.spawn { "sh", "-c", "cat; echo done >&2",
        stdin = "null", stdout = "null", stderr = "pipe" })
      assert.are.equal("done\n", q.stderr:receive("*a"))
      assert.are.same({ "exit", 0 }, { q:wait() })
      q.stderr:close()
    end)
  end)

  it("runs in cwd, with env changed (set, unset) and PATH from env",
     function()
    green_run(function()
      local d = tmpdir()
      local ok, out = process.run({ "pwd" }, { cwd = d })
      assert.is_true(ok)
      assert.are.equal(d, out:match("^(.-)\n$"))
      local f = assert(io.open(d .. "/hello-green", "w"))
      f:write("#!/bin/sh\necho \"hi $GREEN_X ${HOME-nohome}\"\n")
      f:close()
      assert(process.run { "chmod", "+x", d .. "/hello-green" })
      -- found through the child's PATH, not ours
      ok, out = process.run({ "hello-green" },
        { env = { PATH = d, GREEN_X = "x1", HOME = false } })
      assert.is_true(ok)
      assert.are.equal("hi x1 nohome\n", out)
      -- a bad cwd fails as io.open fails
      local p, msg, errno = process.spawn { "pwd", cwd = d .. "/nope" }
      assert.is_nil(p)
      assert.are.equal(d .. "/nope: No such file or directory", msg)
      assert.are.equal(2, errno)
      assert.are.same({ nil, d .. "/hello-green: Not a directory", 20 },
                      { process.spawn { "pwd", cwd = d .. "/hello-green" } })
      assert(process.run { "rm", "-r", d })
    end)
  end)

  it("a program that does not exist: nil, message, errno (ENOENT)",
     function()
    green_run(function()
      local before = nfds()
      -- 20 rounds: a failed spawn that leaked its pipes would leave 60
      -- or more descriptors; the margin absorbs the runtime's own lazily
      -- opened ones (a one-time pipe seen once under a loaded ctest).
      for _ = 1, 20 do
        local p, msg, errno = process.spawn { "green-no-such-command",
          stdin = "pipe", stdout = "pipe", stderr = "pipe" }
        assert.is_nil(p)
        assert.are.equal("green-no-such-command: No such file or directory",
                         msg)
        assert.are.equal(2, errno)
        p, msg = process.spawn { "/nonexistent/prog" }
        assert.is_nil(p)
        assert.matches("No such file or directory", msg)
        p, msg, errno = process.spawn { "/etc/passwd" } -- not executable
        assert.is_nil(p)
        assert.are.equal("/etc/passwd: Permission denied", msg)
        assert.are.equal(13, errno)
      end
      collectgarbage()
      collectgarbage()
      local after = nfds()
      assert.is_true(after - before < 10, ("descriptors leaked: %d before,"
                     .. " %d after"):format(before, after))
    end)
  end)

  it("raises on misuse", function()
    green_run(function()
      local function err(t)
        local ok, e = pcall(process.spawn, t)
        assert.is_false(ok)
        return e
      end
      assert.matches("table expected", err("ls"))
      assert.matches("no command", err({}))
      assert.matches("unknown option 'stdot'", err({ "ls", stdot = "pipe" }))
      assert.matches("stdin must be \"pipe\", \"inherit\" or \"null\"$",
                     err({ "ls", stdin = "stdout" }))
      assert.matches("stderr must be .* or \"stdout\"",
                     err({ "ls", stderr = "file" }))
      assert.matches("argument 2 is a table", err({ "ls", {} }))
      assert.matches("zero byte", err({ "ls", "a\0b" }))
      assert.matches("empty program name", err({ "" }))
      assert.matches("env must be a table", err({ "ls", env = "X=1" }))
      assert.matches("bad environment variable name 'A=B'",
                     err({ "ls", env = { ["A=B"] = "1" } }))
      assert.matches("env.X must be a string or false",
                     err({ "ls", env = { X = true } }))
      assert.matches("cwd must be a string", err({ "ls", cwd = 1 }))
      assert.matches("cwd contains a zero byte",
                     err({ "ls", cwd = "/tmp\0/nowhere" }))
      assert.matches("env.A contains a zero byte",
                     err({ "ls", env = { A = "x\0y" } }))
      assert.matches("env keys must be names",
                     err({ "ls", env = { [1.5] = "x" } }))
      assert.matches("argument 1 is a boolean", err({ true }))
      -- what the kernel refuses is a failure to start, not an error
      local env = {}
      for i = 1, 30000 do env["V" .. i] = ("x"):rep(100) end
      assert.are.same({ nil, "true: Argument list too long", 7 },
                      { process.spawn { "true", env = env } })
      assert.are.same({ nil, "true: Argument list too long", 7 },
                      { process.spawn { "true", ("y"):rep(200000) } })
      -- numbers are arguments too
      local ok, out = process.run { "echo", 1, 2.5 }
      assert.is_true(ok)
      assert.are.equal("1 2.5\n", out)
    end)
  end)

  it("leaks no descriptor into children, not even non-close-on-exec ones",
     function()
    green_run(function()
      local f = assert(io.open(os.tmpname(), "w")) -- no O_CLOEXEC (fopen)
      local other = assert(process.spawn { "cat", stdin = "pipe",
                                           stdout = "pipe" })
      local ok, out = process.run { "ls", "/proc/self/fd" }
      assert.is_true(ok)
      local set = {}
      for fd in out:gmatch("%d+") do set[#set + 1] = tonumber(fd) end
      table.sort(set)
      -- 0, 1, 2 and the directory ls is reading: nothing of ours
      assert.are.same({ 0, 1, 2, 3 }, set)
      f:close()
      other.stdin:close()
      other:wait()
      other.stdout:close()
    end)
  end)
end)

describe("starting a child", function()
  -- An executable file at `path` holding `text`.
  local function script(path, text, mode)
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    assert(process.run { "chmod", mode or "755", path })
  end

  it("through clone3 on this kernel, posix_spawn if GREENLUA_SPAWN says so",
     function()
    green_run(function()
      local _, arch = assert(process.run { "uname", "-m" })
      local _, release = assert(process.run { "uname", "-r" })
      local major, minor = release:match("^(%d+)%.(%d+)")
      local new = tonumber(major) * 100 + tonumber(minor) >= 505
      arch = arch:gsub("%s+$", "")
      local want = (os.getenv("GREENLUA_SPAWN") == "posix_spawn"
                    or arch ~= "x86_64" or not new) and "posix_spawn"
                   or "clone3"
      assert.are.equal(want, green.core.process_spawner())
    end)
    local out, err, code = h.sh("GREENLUA_SPAWN=posix_spawn "
      .. h.greenlua .. " -e 'local g = require(\"green\"); "
      .. "assert(g.process.run(\"true\")); "
      .. "io.write(g.core.process_spawner())'",
      30)
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("posix_spawn", out)
  end)

  it("searches PATH as posix_spawnp: past a directory whose file cannot "
     .. "run, to the first that can; exec errors come back", function()
    green_run(function()
      local d1, d2 = tmpdir(), tmpdir()
      script(d1 .. "/greenprog", "#!/bin/sh\necho one\n", "644") -- no x
      script(d2 .. "/greenprog", "#!/bin/sh\necho two\n")
      local ok, out = process.run({ "greenprog" },
                                  { env = { PATH = d1 .. ":" .. d2 } })
      assert.is_true(ok)
      assert.are.equal("two\n", out)
      -- only the one that cannot run: EACCES, not ENOENT
      local p, msg, errno = process.spawn { "greenprog",
        env = { PATH = "/nonexistent:" .. d1 } }
      assert.is_nil(p)
      assert.are.equal("greenprog: Permission denied", msg)
      assert.are.equal(13, errno)
      -- no "#!" and not a binary: ENOEXEC (posix_spawn runs no /bin/sh)
      script(d1 .. "/plain", "echo plain\n")
      p, msg, errno = process.spawn { d1 .. "/plain" }
      assert.is_nil(p)
      assert.are.equal(d1 .. "/plain: Exec format error", msg)
      assert.are.equal(8, errno)
      -- our own PATH (no env): the same search
      local q, _, e = process.spawn { "green-no-such-command-either" }
      assert.is_nil(q)
      assert.are.equal(2, e)
      -- a name longer than NAME_MAX: ENAMETOOLONG, nothing searched
      p, msg, errno = process.spawn { string.rep("x", 5000) }
      assert.is_nil(p)
      assert.are.equal(36, errno, msg)
      assert(process.run { "rm", "-r", d1, d2 })
      assert.are.same({}, children()) -- every failed child reaped
    end)
  end)
end)


describe("the PATH search", function()
  -- A tree to search: w/gp and w/bin/gp (scripts that say which they
  -- are), w/dir/gp (a directory), w/noexec/gp (not executable),
  -- w/plain/gp (executable, but no "#!": ENOEXEC), w/loop/gp (a symbolic
  -- link to itself: ELOOP), w/file (a file where a directory should be).
  local function tree()
    local w = tmpdir()
    assert(process.run { "mkdir", w .. "/bin", w .. "/dir", w .. "/dir/gp",
                         w .. "/noexec", w .. "/plain", w .. "/loop" })
    for _, s in ipairs { { "/gp", "w-cwd" }, { "/bin/gp", "w-bin" } } do
      local f = assert(io.open(w .. s[1], "w"))
      f:write("#!/bin/sh\necho " .. s[2] .. "\n")
      f:close()
    end
    local f = assert(io.open(w .. "/plain/gp", "w"))
    f:write("echo plain\n")
    f:close()
    assert(io.open(w .. "/noexec/gp", "w")):close()
    assert(io.open(w .. "/file", "w")):close()
    assert(process.run { "chmod", "755", w .. "/gp", w .. "/bin/gp",
                         w .. "/plain/gp" })
    assert(process.run { "ln", "-s", "gp", w .. "/loop/gp" })
    return w
  end

  -- What starting `name` gives with PATH `path` (false: none) in `cwd`:
  -- its output, or the error's message (strerror's words).
  local function ours(name, path, cwd)
    local ok, out, _, how, code = process.run({ name },
      { cwd = cwd, env = { PATH = path }, stderr = "null" })
    if ok == nil then
      assert.are.equal(name .. ": ", out:sub(1, #name + 2))
      return out:sub(#name + 3)
    end
    assert(ok, how .. " " .. tostring(code))
    return out
  end

  -- The same through glibc's execvp: env(1) execs `name` in a child with
  -- that cwd and PATH (its failure: "env: 'name': <strerror>").
  local function glibc(name, path, cwd)
    local ok, out, err = process.run({ "/usr/bin/env", name },
      { cwd = cwd, env = { PATH = path, LC_ALL = "C" } })
    assert(ok ~= nil, out)
    if ok then return out end
    return (assert(err:match(": ([^:]*)\n$"), err))
  end

  local LONG = "/" .. string.rep("a", 4999) -- an element over PATH_MAX

  it("finds what glibc's execvp finds, and fails as it fails: EACCES "
     .. "remembered, ENOENT and ENOTDIR passed, other errors final, "
     .. "relative elements in the child's cwd, the child's PATH",
     function()
    green_run(function()
      local w = tree()
      local cases = {
        -- found in a relative element, under the child's cwd (ours is
        -- elsewhere): "bin", "" and "." (an empty element is the cwd)
        { "bin", w, "w-bin\n" },
        { "", w, "w-cwd\n" },
        { ".", w, "w-cwd\n" },
        { ":/nonexistent", w, "w-cwd\n" },
        { "/nonexistent:", w, "w-cwd\n" },
        { "nonexistent:./bin", w, "w-bin\n" },
        -- past what cannot run: a directory, a file without x, a file
        -- where a directory should be (EACCES, EACCES, ENOTDIR)
        { "dir:noexec:file:bin", w, "w-bin\n" },
        { w .. "/dir:" .. w .. "/bin", nil, "w-bin\n" },
        -- nothing runs: EACCES if anything was denied, however early;
        -- else the last element's error
        { "noexec:/nonexistent", w, "Permission denied" },
        { "dir", w, "Permission denied" },
        { "/nonexistent:file", w, "Not a directory" },
        { "file:/nonexistent", w, "No such file or directory" },
        -- other errors end the search
        { "loop:bin", w, "Too many levels of symbolic links" },
        { "/" .. string.rep("n", 300) .. ":bin", w, "File name too long" },
        -- an element under PATH_MAX whose candidate is over it: the
        -- kernel's ENAMETOOLONG ends the search
        { w .. "/" .. string.rep("b", 4092 - #w) .. ":" .. w .. "/bin",
          nil, "File name too long" },
        -- an element of PATH_MAX bytes or more is skipped
        { LONG .. ":" .. w .. "/bin", nil, "w-bin\n" },
        { w .. "/noexec:" .. LONG, nil, "Permission denied" },
        { "/nonexistent:" .. LONG, nil, "No such file or directory" },
        -- no PATH: glibc's default, /bin:/usr/bin (not the cwd)
        { false, w, "No such file or directory" },
      }
      for i, c in ipairs(cases) do
        local what = i .. ": " .. tostring(c[1]):sub(1, 40)
        assert.are.equal(c[3], glibc("gp", c[1], c[2]), what)
        assert.are.equal(c[3], ours("gp", c[1], c[2]), what)
      end
      -- the default finds what is there; a name with "/" is not searched
      assert.are.equal(glibc("true", false, w), ours("true", false, w))
      assert.are.equal("", ours("true", false, w))
      for _, name in ipairs { "./gp", "bin/gp", "dir/gp" } do
        assert.are.equal(glibc(name, "/nonexistent", w),
                         ours(name, "/nonexistent", w), name)
      end
      assert.are.equal("w-bin\n", ours("bin/gp", "/nonexistent", w))
      assert.are.equal("Permission denied", ours("dir/gp", "bin", w))
      assert(process.run { "rm", "-r", w })
      assert.are.same({}, children()) -- every failed child reaped
    end)
  end)

  it("relative elements of our own PATH (no env PATH) are the child's "
     .. "cwd's too, as posix_spawnp", function()
    green_run(function()
      local w = tree()
      -- (our cwd has neither bin/gp nor dir/gp)
      local out, err, code = h.sh("PATH=bin:dir " .. h.greenlua
        .. " -e 'local g = require \"green\"; g.run(function() "
        .. "local ok, out = g.process.run({ \"gp\" }, { cwd = "
        .. "\"" .. w .. "\", env = { X = \"1\" } }); io.write(out) end)'",
        30)
      assert.are.equal("", err)
      assert.are.equal(0, code)
      assert.are.equal("w-bin\n", out)
      assert(process.run { "rm", "-r", w })
    end)
  end)

  it("differs from glibc where glibc misbehaves: a name longer than "
     .. "NAME_MAX is ENAMETOOLONG, an element over PATH_MAX does not make "
     .. "it look in the current directory; ENOEXEC is final", function()
    green_run(function()
      local w = tree()
      -- glibc 2.36's NAME_MAX check never fires (it then execs the name
      -- cut short and unterminated: ENOENT here)
      assert.are.equal("File name too long",
                       ours(string.rep("n", 256), "/nonexistent", w))
      -- one of NAME_MAX bytes is searched and found
      local long = w .. "/bin/" .. string.rep("n", 255)
      local f = assert(io.open(long, "w"))
      f:write("#!/bin/sh\necho long\n")
      f:close()
      assert(process.run { "chmod", "755", long })
      assert.are.equal("long\n", ours(string.rep("n", 255), ":bin", w))
      -- after skipping an element of PATH_MAX bytes or more, glibc 2.36
      -- tries the current directory (its loop steps onto the ':' and
      -- reads an empty element): w/gp would run
      assert.are.equal("No such file or directory",
                       ours("gp", LONG .. ":/nonexistent", w))
      assert.are.equal("No such file or directory", ours("gp", LONG, w))
      -- a file that is no executable: ENOEXEC, final (posix_spawnp's
      -- choice; execvp would hand it to /bin/sh)
      assert.are.equal("Exec format error", ours("gp", "plain:bin", w))
      assert(process.run { "rm", "-r", w })
      assert.are.same({}, children())
    end)
  end)
end)


describe("SIGCHLD ignored by whoever started us", function()
  it("children are still ours to reap: run, execute, popen, wait",
     function()
    local out, err, code = h.sh("env --ignore-signal=CHLD " .. h.greenlua
      .. " -e 'local p = require(\"green\").process; "
      .. "print(p.execute(\"exit 5\")); "
      .. "print(p.run(\"echo hi; exit 3\")); "
      .. "local f = p.popen(\"echo x\"); print(f:read(\"l\"), f:close()); "
      .. "print(p.spawn{\"true\"}:wait())'", 30)
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("nil\texit\t5\nfalse\thi\n\t\texit\t3\n"
                     .. "x\ttrue\texit\t0\nexit\t0\n", out)
  end)
end)


describe("the child's signals", function()
  -- The bit of signal `sig` in field `field` of a /proc status text.
  local function bit(status, field, sig)
    local mask = tonumber(status:match(field .. ":%s*(%x+)"), 16)
    return (mask >> (sig - 1)) & 1 == 1
  end

  it("none blocked, none caught, SIGPIPE at its default (green ignores it)",
     function()
    green_run(function()
      local handle = green.signal("USR1", function() end) -- caught here
      -- (without the ASan preload of a sanitized run: its runtime in cat
      -- would block signals of its own)
      local ok, status = process.run({ "cat", "/proc/self/status" },
                                     { env = { LD_PRELOAD = false } })
      handle:cancel()
      assert.is_true(ok)
      assert.are.equal("0000000000000000", status:match("SigBlk:%s*(%x+)"))
      assert.are.equal("0000000000000000", status:match("SigCgt:%s*(%x+)"))
      assert.is_false(bit(status, "SigIgn", 13)) -- PIPE
    end)
  end)

  it("a signal our own caller ignored stays ignored (nohup's SIGHUP)",
     function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local ok, status = require("green").process.run {
        "cat", "/proc/self/status" }
      assert(ok)
      io.write(status)
    ]])
    f:close()
    local out, err, code = h.sh("trap '' HUP; exec " .. h.greenlua .. " "
                                .. script, 30)
    os.remove(script)
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.is_true(bit(out, "SigIgn", 1)) -- HUP
    assert.is_false(bit(out, "SigIgn", 13)) -- PIPE
  end)
end)

describe("Process:wait and Process:kill", function()
  it("waits with a timeout for a child that never exits, then kills it",
     function()
    green_run(function()
      local p = assert(process.spawn { "sleep", "1000" })
      assert.are.same({ nil, "timeout" }, { p:wait(0) })
      assert.are.same({ nil, "timeout" }, { p:wait(0.05) })
      assert.is_true(p:kill())
      assert.are.same({ "signal", 15 }, { p:wait() })
      -- reaped: its pid may be someone else's now, nothing is sent
      assert.are.same({ nil, "no such process" }, { p:kill("KILL") })
      local q = assert(process.spawn { "sleep", "1000" })
      assert.is_true(q:kill("KILL"))
      assert.are.same({ "signal", 9 }, { q:wait() })
      local r = assert(process.spawn { "sleep", "1000" })
      assert.is_true(r:kill(0)) -- only checks
      assert.is_true(r:kill("sigint"))
      assert.are.same({ "signal", 2 }, { r:wait() })
      assert.has_error(function() r:kill("NOPE") end,
                       "bad argument #1 to 'kill' (unknown signal 'NOPE')")
    end)
  end)

  it("wakes every thread waiting for the child; a killed waiter leaves",
     function()
    green_run(function()
      local p = assert(process.spawn { "sh", "-c", "read x; exit 7",
                                       stdin = "pipe" })
      local got = {}
      local waiters = {}
      for i = 1, 3 do
        waiters[i] = green.spawn(function()
          got[i] = { p:wait() }
        end)
      end
      local doomed = green.spawn(function() p:wait() end)
      for i = 1, 3 do h.until_suspended(waiters[i], "process:wait") end
      h.until_suspended(doomed, "process:wait")
      doomed:kill()
      assert.is_true(doomed:dead())
      assert.are.same({ nil, "timeout" }, { p:wait(0) }) -- still running
      p.stdin:send("go\n")
      for i = 1, 3 do waiters[i]:wait() end
      for i = 1, 3 do assert.are.same({ "exit", 7 }, got[i]) end
      p.stdin:close()
    end)
  end)

  it("a green.Timeout interrupts a wait; the child is unaffected",
     function()
    green_run(function()
      local p = assert(process.spawn { "sleep", "1000" })
      local ok, err = pcall(green.with_timeout, 0.05, p.wait, p)
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
      assert.is_true(p:kill())
      assert.are.same({ "signal", 15 }, { p:wait() })
    end)
  end)

  it("keeps the other threads running while it waits", function()
    green_run(function()
      local ticks = 0
      local beat = green.spawn(function()
        while true do
          ticks = ticks + 1
          green.sleep(0.01)
        end
      end)
      local p = assert(process.spawn { "sh", "-c", "read x",
                                       stdin = "pipe" })
      green.spawn(function()
        h.eventually(function() return ticks >= 3 end)
        p.stdin:send("done\n") -- the child ends only after 3 beats
      end)
      assert.are.same({ "exit", 0 }, { p:wait() })
      assert.is_true(ticks >= 3)
      beat:kill()
      p.stdin:close()
    end)
  end)

  it("a child blocked writing to a full pipe: wait times out, reading "
     .. "lets it finish", function()
    green_run(function()
      local p = assert(process.spawn { "head", "-c", "1000000", "/dev/zero",
                                       stdout = "pipe" })
      -- 1 MB does not fit in a pipe: it cannot exit before we read
      assert.are.same({ nil, "timeout" }, { p:wait(0.2) })
      assert.are.equal(1000000, #p.stdout:receive("*a"))
      assert.are.same({ "exit", 0 }, { p:wait() })
      p.stdout:close()
    end)
  end)
end)

describe("Process:communicate", function()
  it("writes input and reads both outputs", function()
    green_run(function()
      local p = assert(process.spawn { "sh", "-c",
        "tr a-z A-Z; echo warn >&2; exit 4",
        stdin = "pipe", stdout = "pipe", stderr = "pipe" })
      assert.are.same({ "HELLO\n", "warn\n", "exit", 4 },
                      { p:communicate("hello\n") })
    end)
  end)

  it("does not deadlock on a child writing more than a pipe holds to "
     .. "both outputs before it reads its input", function()
    green_run(function()
      local p = assert(process.spawn { "sh", "-c",
        "head -c 1000000 /dev/zero; head -c 700000 /dev/zero >&2; wc -c",
        stdin = "pipe", stdout = "pipe", stderr = "pipe" })
      local input = string.rep("x", 2000000)
      local out, err, how, code = p:communicate(input)
      assert.are.equal("exit", how)
      assert.are.equal(0, code)
      assert.are.equal(700000, #err)
      assert.are.equal(1000000 + #"2000000\n", #out)
      assert.are.equal("2000000", out:sub(1000001):match("%d+"))
    end)
  end)

  -- A pipe's own limit (settimeout 0: never wait) once ended its read or
  -- write there: the output after it was lost, the input cut short.
  it("goes to the end whatever limit the pipes have (settimeout)",
     function()
    green_run(function()
      local p = assert(process.spawn { "sh", "-c",
        "wc -c; echo warn >&2", stdin = "pipe", stdout = "pipe",
        stderr = "pipe" })
      for _, s in ipairs { p.stdin, p.stdout, p.stderr } do
        s:settimeout(0)
      end
      local out, err, how, code = p:communicate(string.rep("x", 2000000))
      assert.are.same({ "2000000", "warn\n", "exit", 0 },
                      { out:match("%d+"), err, how, code })
      local q = assert(process.spawn { "sh", "-c", "read l; echo got $l",
                                       stdin = "pipe", stdout = "pipe" })
      q.stdout:settimeout(0)
      assert.are.same({ "got x\n", nil, "exit", 0 },
                      { q:communicate("x\n") })
      -- a killed caller finds its pipes' limits as they were
      local r = assert(process.spawn { "sleep", "1000", stdout = "pipe" })
      r.stdout:settimeout(7)
      local gt = green.spawn(r.communicate, r)
      h.until_suspended(gt)
      gt:kill()
      assert.are.equal(7, r.stdout:gettimeout())
      r:kill("KILL")
      assert.are.same({ "signal", 9 }, { r:wait() })
    end)
  end)

  it("returns nil for outputs that are not pipes", function()
    green_run(function()
      local p = assert(process.spawn { "true" })
      local a, b, c, d = p:communicate()
      assert.are.same({ nil, nil, "exit", 0 }, { a, b, c, d })
      local q = assert(process.spawn { "sh", "-c", "echo x", stdout = "pipe",
                                       stdin = "null" })
      local out, err, how = q:communicate()
      assert.are.same({ "x\n", nil, "exit" }, { out, err, how })
    end)
  end)

  it("ignores EPIPE: a child that exits without reading its input",
     function()
    green_run(function()
      local p = assert(process.spawn { "true", stdin = "pipe",
                                       stdout = "pipe" })
      assert.are.same({ "", nil, "exit", 0 },
                      { p:communicate(string.rep("y", 1000000)) })
    end)
  end)

  it("after its timeout: kills the child, returns the output so far",
     function()
    green_run(function()
      local p = assert(process.spawn { "sh", "-c",
        "echo started; exec sleep 1000", stdout = "pipe", stderr = "pipe" })
      h.eventually(function() -- then "started" is in the pipe
        local f = io.open("/proc/" .. p.pid .. "/cmdline")
        local cmd = f and f:read("a")
        if f then f:close() end
        return cmd == "sleep\0" .. "1000\0"
      end, "sleep exec'd")
      local out, err, how, code = p:communicate(nil, 0.3)
      assert.are.equal("started\n", out)
      assert.are.equal("", err)
      assert.are.equal("timeout", how)
      assert.is_nil(code)
      assert.are.same({ "signal", 9 }, { p:wait() })
    end)
  end)

  it("a killed caller stops its helpers; the child is the caller's",
     function()
    green_run(function()
      local p = assert(process.spawn { "sleep", "1000", stdin = "pipe",
                                       stdout = "pipe", stderr = "pipe" })
      local before = green.core.stats().threads
      local gt = green.spawn(p.communicate, p, "data")
      h.until_suspended(gt)
      gt:kill()
      assert.are.equal(green.GreenletExit, gt:wait())
      h.eventually(function()
        return green.core.stats().threads == before
      end, "communicate's helper threads gone")
      assert.are.same({ nil, "timeout" }, { p:wait(0) })
      p:kill("KILL")
      p:wait()
    end)
  end)

  it("raises on misuse", function()
    green_run(function()
      local p = assert(process.spawn { "true" })
      assert.has_error(function() p:communicate("input") end,
        "communicate: input given, but the child's stdin is not a pipe "
        .. "(spawn it with stdin = \"pipe\")")
      assert.has_error(function() p:communicate(1) end,
        "bad argument #1 to 'communicate' (string expected, got number)")
      p:wait()
    end)
  end)
end)

describe("a Process as a to-be-closed variable", function()
  it("kills and reaps a child still running, and closes its pipes",
     function()
    green_run(function()
      local pid, out
      do
        local p <close> = assert(process.spawn { "sleep", "1000",
                                                 stdout = "pipe" })
        pid, out = p.pid, p.stdout
        assert.is_not_nil(state(pid))
      end
      assert.is_nil(state(pid)) -- reaped at the end of the block
      assert.are.same({ nil, "closed" }, { out:recv() })
    end)
  end)

  it("in a killed thread: killed at once, reaped by the hub", function()
    green_run(function()
      local pid
      local gt = green.spawn(function()
        local p <close> = assert(process.spawn { "sleep", "1000" })
        pid = p.pid
        p:wait()
      end)
      h.until_suspended(gt, "process:wait")
      gt:kill()
      h.eventually(function() return not alive(pid) end,
                   "the child reaped")
    end)
  end)

  it("a child exited already: nothing to kill", function()
    green_run(function()
      local p = assert(process.spawn { "true" })
      p:wait()
      local close = getmetatable(p).__close
      close(p)
      assert.are.same({ "exit", 0 }, { p:wait() })
    end)
  end)
end)

describe("no zombies", function()
  it("a Process collected unwaited is reaped when its child ends",
     function()
    green_run(function()
      local pid
      do
        local p = assert(process.spawn { "sh", "-c", "read x",
                                         stdin = "pipe" })
        pid = p.pid
        p.stdin:close() -- the child ends once it sees that
      end
      collectgarbage()
      collectgarbage()
      h.eventually(function() return not alive(pid) end,
                   "the child reaped, no zombie")
      assert.are.same({ nil, "no child processes" },
                      { process.wait(pid, 0) })
    end)
  end)

  it("killed readers and collected Processes and files leak no "
     .. "descriptor", function()
    green_run(function()
      local n0 = nfds()
      local pids = {}
      for _ = 1, 10 do
        local p = assert(process.spawn { "sleep", "100", stdin = "pipe",
                                         stdout = "pipe", stderr = "pipe" })
        local f = assert(process.popen("exec sleep 100"))
        local readers = {
          green.spawn(function() return p:communicate("x") end),
          green.spawn(function() return p:wait() end),
          green.spawn(function() return f:read("a") end),
        }
        for _, gt in ipairs(readers) do
          h.until_suspended(gt)
          gt:kill()
        end
        pids[#pids + 1] = p.pid
        pids[#pids + 1] = f.proc.pid
        assert(p:kill("KILL"))
        assert(f.proc:kill("KILL"))
      end
      collectgarbage()
      collectgarbage()
      h.eventually(function()
        for _, pid in ipairs(pids) do
          if alive(pid) then return false end
        end
        return true
      end, "every child reaped")
      collectgarbage()
      h.eventually(function() return nfds() == n0 end,
                   "descriptors back to " .. n0)
    end)
  end)

  it("leaves no child behind after the specs above", function()
    green_run(function()
      h.eventually(function() return #children() == 0 end,
                   function()
                     return "children left: "
                       .. table.concat(children(), " ")
                   end)
    end)
  end)
end)

describe("green.process.wait(pid)", function()
  it("waits for a spawned child through its Process", function()
    green_run(function()
      local p = assert(process.spawn { "sh", "-c", "read x; exit 5",
                                       stdin = "pipe" })
      local gt = green.spawn(process.wait, p.pid)
      h.until_suspended(gt, "process:wait")
      p.stdin:send("\n")
      assert.are.same({ "exit", 5 }, { gt:wait() })
      assert.are.same({ "exit", 5 }, { p:wait() })
      assert.are.same({ "exit", 5 }, { process.wait(p.pid) })
      p.stdin:close()
    end)
  end)

  it("reaps a child started outside spawn (io.popen's), green", function()
    green_run(function()
      local fifo = os.tmpname()
      os.remove(fifo)
      assert(process.run { "mkfifo", fifo })
      -- The shell prints its pid, then becomes `cat fifo` (same pid).
      local f = assert(h.stock.popen("echo $$; exec cat " .. fifo
                                     .. " >/dev/null"))
      local pid = math.tointeger(f:read("n"))
      local ticks = 0
      local beat = green.spawn(function()
        while true do
          ticks = ticks + 1
          green.sleep(0.01)
        end
      end)
      local w1 = green.spawn(process.wait, pid)
      local w2 = green.spawn(process.wait, pid)
      h.until_suspended(w1, "green.process.wait")
      h.until_suspended(w2, "green.process.wait")
      assert.are.same({ nil, "timeout" }, { process.wait(pid, 0.05) })
      local doomed = green.spawn(process.wait, pid)
      h.until_suspended(doomed, "green.process.wait")
      doomed:kill()
      local seen = ticks
      h.eventually(function() return ticks > seen + 2 end) -- hub runs
      local writer = assert(io.open(fifo, "w")) -- cat may now end
      writer:close()
      assert.are.same({ "exit", 0 }, { w1:wait() })
      assert.are.same({ "exit", 0 }, { w2:wait() })
      beat:kill()
      assert.are.same({ nil, "no child processes" },
                      { process.wait(pid) }) -- reaped already
      local ok, msg = f:close() -- pclose finds nothing to wait for
      assert.is_nil(ok)
      assert.matches("No child processes", msg)
      os.remove(fifo)
    end)
  end)

  it("a signal's outcome, and a pid that is not our child", function()
    green_run(function()
      local f = assert(h.stock.popen("echo $$; exec sleep 1000"))
      local pid = math.tointeger(f:read("n"))
      assert(process.run { "kill", "-TERM", tostring(pid) })
      assert.are.same({ "signal", 15 }, { process.wait(pid) })
      pcall(f.close, f)
      assert.are.same({ nil, "no child processes" }, { process.wait(1) })
      assert.has_error(function() process.wait(0) end)
      assert.has_error(function() process.wait(-5) end)
    end)
  end)
end)

-- Children of green.fork (issue 11). Each case runs in its own greenlua
-- process (a forked child must not run the spec runner's code); the child
-- and the parent talk over a socket, and every wait has a deadline.
local FORK_PRELUDE = [[
local green = require "green"
local process = green.process
local function expect(cond, what)
  if not cond then
    io.stderr:write("FAILED: ", what, "\n")
    io.stderr:flush()
    os.exit(9)
  end
end
local function show(...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = tostring(t[i]) end
  return table.concat(t, " ", 1, t.n)
end
local back = assert(green.listen("127.0.0.1", 0))
back:settimeout(20)
local _, backport = back:getsockname()
-- the child's end: connect to the parent
local function dial()
  local c = assert(green.connect("127.0.0.1", backport))
  c:settimeout(20)
  return c
end
-- the parent's end: the child's connection
local function answer()
  local c = assert(back:accept())
  c:settimeout(20)
  return c
end
-- a forked child that exits with `code` once the parent writes "go\n"
-- (4 on anything else): its pid, and the parent's end of its connection
local function go_child(code)
  local pid = green.fork()
  if pid == 0 then
    local c = dial()
    os.exit(c:receive("*l") == "go" and code or 4)
  end
  return pid, answer()
end
-- let the threads run until each waits (bounded)
local function until_suspended(...)
  local steps = 0
  for _, t in ipairs({ ... }) do
    while t:status() ~= "suspended" and steps < 1e6 do
      steps = steps + 1
      green.sleep(0)
    end
  end
end
-- kill `w` once its wait has ended (it is ready), before it runs: true
-- if it was killed so
local function kill_when_ready(w)
  local killed, steps = false, 0
  while not w:dead() and steps < 1e7 do
    steps = steps + 1
    if w:status() == "ready" then
      w:kill()
      killed = true
    end
    green.sleep(0)
  end
  return killed
end
]]

-- LeakSanitizer's note in a forked child of a sanitized run (it knows the
-- parent's OS threads, which the child does not have): not our output.
local function unsanitized(err)
  return (err:gsub("==%d+==Running thread %d+ was not suspended%. False "
                   .. "leaks are possible%.\n", ""))
end

-- Run `src` in greenlua: it must exit 0, print `want`, write no stderr.
local function forked(src, want)
  local out, err, code = h.greenlua_run(FORK_PRELUDE .. src, nil, 60)
  err = unsanitized(err)
  assert.are.equal("", err, "stderr: " .. err)
  assert.are.equal(0, code, "exit code " .. code)
  assert.are.equal(want, out)
end

-- Can a spec set the pid the next child gets (root only:
-- /proc/sys/kernel/ns_last_pid)? Else the spec is pending.
local function can_set_last_pid()
  local probe = io.open("/proc/sys/kernel/ns_last_pid", "w")
  if not probe then
    pending("needs a writable /proc/sys/kernel/ns_last_pid (root)")
    return false
  end
  probe:close()
  return true
end

describe("green.process.wait(pid) with green.fork", function()
  it("green.process.getpid is this process's id, the child's in a child",
     function()
    forked([[
local f = assert(io.open("/proc/self/stat"))
local pid = math.tointeger(f:read("n"))
f:close()
expect(process.getpid() == pid, "getpid " .. process.getpid())
local child = green.fork()
if child == 0 then os.exit(process.getpid() ~= pid and 7 or 8) end
print(show(process.wait(child, 30)))
]], "exit 7\n")
  end)

  it("reaps a forked child that calls os.exit(3), green: the parent's "
     .. "hub runs meanwhile", function()
    forked([[
local pid, c = go_child(3) -- "go" comes while the parent waits
local ticks = 0
-- if wait blocked the hub, this thread would never run and the child
-- would never get its "go"
green.spawn(function()
  while ticks < 5 do ticks = ticks + 1; green.sleep(0.001) end
  assert(c:sendall("go\n"))
end)
print(show(process.wait(pid, 30)))
print(show(process.wait(pid, 0)))
expect(ticks == 5, "ticks " .. ticks)
]], "exit 3\nnil no child processes\n")
  end)

  it("a child killed by a signal: \"signal\", 9", function()
    forked([[
local pid = green.fork()
if pid == 0 then
  local c = dial()
  c:receive("*l") -- never comes: the parent kills us
  os.exit(0)
end
local c = answer()
assert(process.run { "kill", "-KILL", tostring(pid) })
print(show(process.wait(pid, 30)))
c:close()
]], "signal 9\n")
  end)

  it("wait(pid, timeout) times out with nil, \"timeout\" and can be "
     .. "retried; several threads wait at once", function()
    forked([[
local pid, c = go_child(0)
print(show(process.wait(pid, 0)))
print(show(process.wait(pid, 0.05)))
print(show(process.wait(pid, 0.05)))
local got = {}
local waiters = {}
for i = 1, 2 do
  waiters[i] = green.spawn(function() got[i] = show(process.wait(pid, 30)) end)
end
local doomed = green.spawn(process.wait, pid)
green.sleep(0) -- the three are waiting (they run before us)
doomed:kill()
assert(c:sendall("go\n"))
for i = 1, 2 do waiters[i]:wait() end
print(got[1], got[2], doomed:wait() == green.GreenletExit)
]], "nil timeout\nnil timeout\nnil timeout\nexit 0\texit 0\ttrue\n")
  end)

  -- A forked child that ended is reaped by the thread its end wakes, when
  -- that thread runs: until then its pid is its own (a zombie), so no
  -- other thread can signal a process that took the pid meanwhile (what
  -- prefork's master does to its workers: kill by pid, forget the pid
  -- once wait returns). The watcher thread runs in the turn the end is
  -- seen, before the waiter it woke (it was ready first).
  it("the pid stays the child's until its waiter runs: no window for a "
     .. "reused pid", function()
    forked([[
local core = require "green.core"
local pid, c = go_child(5)
local returned = false
local w = green.spawn(function()
  local how, code = process.wait(pid, 30)
  returned = true
  return how, code
end)
local gone, steps, ready = 0, 0, 0
local watcher = green.spawn(function()
  while not returned and steps < 1e7 do
    steps = steps + 1
    if w:status() == "ready" then
      ready = ready + 1
      if not core.kill_pid(pid, 0) then gone = gone + 1 end
    end
    green.sleep(0)
  end
end)
while w:status() ~= "suspended" and steps < 1e7 do green.sleep(0) end
assert(c:sendall("go\n"))
print(show(w:wait()))
watcher:wait()
expect(ready > 0, "the watcher never saw the waiter ready")
print("gone before its waiter ran:", gone)
]], "exit 5\ngone before its waiter ran:\t0\n")
  end)

  it("a waiter killed after its child ended, before it ran, leaves the "
     .. "status to the next wait", function()
    forked([[
local pid, c = go_child(5)
local w = green.spawn(function() return process.wait(pid, 30) end)
until_suspended(w)
assert(c:sendall("go\n"))
local killed = kill_when_ready(w) -- its wait ended: the child ended
print(killed, w:wait() == green.GreenletExit)
print(show(process.wait(pid, 30)))
print(show(process.wait(pid, 0)))
]], "true\ttrue\nexit 5\nnil no child processes\n")
  end)

  -- Two threads wait for one forked child: its end wakes both, and only
  -- one may reap it. Once one has, the pid is free: the kernel may give
  -- it to the next child (made to here, root only: ns_last_pid), and the
  -- other waiter, running later, reaped that child instead (its outcome
  -- lost: wait said "no child processes" for a child of ours).
  it("of two waiters of a forked child, only one reaps it: the other does "
     .. "not reap the child that got its pid next", function()
    if not can_set_last_pid() then return end
    forked([[
local pid, c = go_child(5)
local qpid, others = nil, {}
local a = green.spawn(function()
  local r = show(process.wait(pid, 30))
  -- 'pid' is reaped, free: the next child takes it and ends before the
  -- other waiter runs (nothing here yields)
  for _ = 1, 100 do
    local f = assert(io.open("/proc/sys/kernel/ns_last_pid", "w"))
    f:write(pid - 1)
    f:close()
    local q = green.fork()
    if q == 0 then os.exit(7) end
    if q == pid then qpid = q break end
    others[#others + 1] = q
  end
  expect(qpid, "no child got pid " .. pid)
  local ended = false -- a zombie with no thread left: reapable
  for _ = 1, 1e7 do
    local f = io.open("/proc/" .. qpid .. "/stat")
    local s = f and f:read("a") or ""
    if f then f:close() end
    local g = io.open("/proc/" .. qpid .. "/status")
    local st = g and g:read("a") or ""
    if g then g:close() end
    if s:match("^%d+ %b() Z") and st:match("\nThreads:%s+1\n") then
      ended = true
      break
    end
  end
  expect(ended, "the child with the reused pid never ended")
  return r
end)
local b = green.spawn(function() return show(process.wait(pid, 30)) end)
until_suspended(a, b)
assert(c:sendall("go\n"))
print(a:wait(), b:wait())
print(show(process.wait(qpid, 30)))
for _, o in ipairs(others) do process.wait(o, 30) end
]], "exit 5\texit 5\nexit 7\n")
  end)

  it("of two waiters of a forked child, the reaper killed before it ran "
     .. "still reaps it: the other returned its outcome", function()
    forked([[
local pid, c = go_child(5)
local a = green.spawn(function() return process.wait(pid, 30) end)
local b = green.spawn(function() return show(process.wait(pid, 30)) end)
until_suspended(a, b)
assert(c:sendall("go\n"))
local killed = kill_when_ready(a) -- its wait ended: the child ended
print(killed, a:wait() == green.GreenletExit, b:wait())
print(show(process.wait(pid, 0))) -- no zombie left for nobody
]], "true\ttrue\texit 5\nnil no child processes\n")
  end)

  -- A Process keeps its record (and outcome) after its child is reaped,
  -- while its pid is free for the kernel to give to the next child. The
  -- pid is made to come back at once by setting the kernel's last pid
  -- (root only: /proc/sys/kernel/ns_last_pid; another process of the
  -- machine may take it first, so each case tries a few times).
  it("a reaped Process's pid given to a later child is that child's: "
     .. "wait(pid) reaps the child, not the old outcome", function()
    if not can_set_last_pid() then return end
    forked([[
-- The next child gets pid 'want' (make() starts it): its pid, or nil.
local function next_pid_is(want, make, undo)
  for _ = 1, 100 do
    local f = assert(io.open("/proc/sys/kernel/ns_last_pid", "w"))
    f:write(want - 1)
    f:close()
    local pid, x = make()
    if pid == want then return pid, x end
    undo(pid, x)
  end
end
local old = assert(process.spawn { "true" })
print(show(old:wait()))
-- a forked child that gets the old pid
local pid = next_pid_is(old.pid, function()
  local pid = green.fork()
  if pid == 0 then os.exit(7) end
  return pid
end, function(pid) process.wait(pid, 30) end)
expect(pid, "no forked child got pid " .. old.pid)
print(show(process.wait(pid, 30)))
print(show(process.wait(pid, 0)))
print(show(old:wait()), old.pid == pid)
-- a spawned child that gets the old pid: the newest record answers
local old2 = assert(process.spawn { "true" })
print(show(old2:wait()))
local _, new = next_pid_is(old2.pid, function()
  local p = assert(process.spawn { "sh", "-c", "exit 5" })
  return p.pid, p
end, function(_, p) p:wait() end)
expect(new, "no spawned child got pid " .. old2.pid)
print(show(new:wait()))
print(show(process.wait(old2.pid, 0)))
print(show(old2:wait()))
]], "exit 0\nexit 7\nnil no child processes\nexit 0\ttrue\n"
    .. "exit 0\nexit 5\nexit 5\nexit 0\n")
  end)

  it("in the child: process.run, spawn and wait work; the parent's "
     .. "children are not the child's", function()
    forked([[
local mine = assert(process.spawn { "cat", stdin = "pipe", stdout = "pipe" })
local pid = green.fork()
if pid == 0 then
  local c = dial()
  local r = {}
  -- the parent's child: neither waited for, nor killed, here
  r[2] = show(mine:wait(0))
  r[3] = show(mine:kill("KILL"))
  r[4] = show(process.wait(mine.pid, 0))
  r[5] = tostring(mine):gsub("%d+", "N")
  r[1] = show(process.run { "sh", "-c", "echo hi; echo err >&2; exit 4" })
  -- its own children, and a grandchild it forks
  local p = assert(process.spawn { "sh", "-c", "exit 6" })
  r[6] = show(p:wait(30))
  local g = green.fork()
  if g == 0 then os.exit(7) end
  r[7] = show(process.wait(g, 30))
  do local _ <close> = mine end -- kills nothing
  assert(c:sendall(table.concat(r, "|"):gsub("\n", "/") .. "\n"))
  os.exit(0)
end
local c = answer()
print(c:receive("*l"))
print(show(process.wait(pid, 30)))
-- the parent's child is still running: it still echoes
assert(mine.stdin:sendall("still here\n"))
print(mine.stdout:receive("*l"))
mine.stdin:close()
print(show(mine:wait(30)))
]], "false hi/ err/ exit 4|nil no child processes|nil no such process|"
    .. "nil no child processes|green.Process (pid N, no status)|exit 6|"
    .. "exit 7\nexit 0\nstill here\nexit 0\n")
  end)
end)

describe("green.process.run and green.fork", function()
  it("a run in flight in another thread completes while a child forked "
     .. "meanwhile lives on (the child closes its copies of the pipes)",
     function()
    forked([[
local flag = os.tmpname()
os.remove(flag)
local input = ("q"):rep(300000) -- more than the pipe and the queue hold
local res
local gt = green.spawn(function()
  -- reads its input only once the flag is there
  res = table.pack(process.run("i=0; while [ ! -e " .. flag .. " ] && "
    .. "[ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done; exec cat",
    { input = input }))
end)
for _ = 1, 2000 do
  if gt:status() == "suspended" then break end
  green.sleep(0.001)
end
expect(gt:status() == "suspended", "the run started")
local pid = green.fork()
if pid == 0 then
  local c = dial()
  c:receive("*l") -- lives until the parent has its run's result
  os.exit(0)
end
local c = answer()
assert(io.open(flag, "w")):close()
local t = green.Timeout(20)
pcall(gt.wait, gt)
t:cancel()
os.remove(flag)
print(res and show(res[1], #res[2] == #input, res[3], res[4], res[5]))
print(show(process.wait(pid, 0))) -- the forked child is still there
assert(c:send("bye\n"))
print(show(process.wait(pid, 30)))
]], "true true  exit 0\nnil timeout\nexit 0\n")
  end)
end)

describe("green.process.run", function()
  it("runs shell strings and argv tables", function()
    green_run(function()
      assert.are.same({ true, "a b\n", "", "exit", 0 },
                      { process.run("echo a b") })
      assert.are.same({ false, "", "oops\n", "exit", 2 },
                      { process.run("echo oops >&2; exit 2") })
      assert.are.same({ true, "$HOME\n", "", "exit", 0 },
                      { process.run { "echo", "$HOME" } }) -- no shell
      assert.are.same({ true, "3\n", "", "exit", 0 },
                      { process.run("wc -l", { input = "a\nb\nc\n" }) })
      assert.are.same({ false, "", "", "signal", 9 },
                      { process.run("kill -9 $$") })
      assert.are.same({ true, "x\ny\n", nil, "exit", 0 },
        { process.run("echo x; echo y >&2", { stderr = "stdout" }) })
    end)
  end)

  it("kills a command that overstays its timeout", function()
    green_run(function()
      local ok, out, err, how, code = process.run(
        "echo partial; exec sleep 1000", { timeout = 0.3 })
      assert.is_false(ok)
      -- (on a loaded machine the shell may not have echoed yet)
      assert.is_true(out == "partial\n" or out == "", out)
      assert.are.same({ "", "timeout" }, { err, how })
      assert.is_nil(code)
    end)
  end)

  it("one spawn's descriptors are not the next one's (the spawn plan)",
     function()
    green_run(function()
      -- the same pipe numbers come back run after run; the modes change
      local cmd = "echo out; echo err >&2"
      for _ = 1, 3 do
        assert.are.same({ true, "out\n", "err\n", "exit", 0 },
                        { process.run(cmd) })
        assert.are.same({ true, nil, "err\n", "exit", 0 },
                        { process.run(cmd, { stdout = "null" }) })
        assert.are.same({ true, "out\nerr\n", nil, "exit", 0 },
                        { process.run(cmd, { stderr = "stdout" }) })
        assert.are.same({ true, "out\n", nil, "exit", 0 },
                        { process.run(cmd, { stderr = "null" }) })
        local d = tmpdir()
        assert.are.same({ true, d .. "\n", "", "exit", 0 },
                        { process.run("pwd", { cwd = d }) })
        assert(process.run { "rmdir", d })
      end
    end)
  end)

  it("a child that closes its output and lives on is waited for",
     function()
    green_run(function()
      -- end of file on both pipes long before the exit status
      assert.are.same({ false, "x\n", "", "exit", 3 },
        { process.run("echo x; exec >&- 2>&-; sleep 0.3; exit 3") })
    end)
  end)

  it("reads to the end what a grandchild writes after the child exits",
     function()
    green_run(function()
      -- the child exits at once; its background child holds both pipes
      assert.are.same({ true, "early\nlate\n", "late err\n", "exit", 0 },
        { process.run("(sleep 0.3; echo late; echo late err >&2) & "
                      .. "echo early") })
    end)
  end)

  it("a killed run kills and reaps its child: no zombie", function()
    green_run(function()
      local d = tmpdir()
      local pidfile = d .. "/pid"
      local gt = green.spawn(function()
        return process.run("echo $$ > " .. pidfile .. "; exec sleep 100")
      end)
      local pid
      h.eventually(function()
        local f = io.open(pidfile)
        pid = f and tonumber(f:read("a"))
        if f then f:close() end
        return pid ~= nil
      end, "the child started")
      h.until_suspended(gt)
      gt:kill()
      assert.are.equal(green.GreenletExit, gt:wait())
      h.eventually(function() return not alive(pid) end,
                   "the child killed and reaped")
      assert(process.run { "rm", "-r", d })
    end)
  end)

  it("a command that cannot start: nil, message, errno", function()
    green_run(function()
      assert.are.same({ nil, "green-nope: No such file or directory", 2 },
                      { process.run { "green-nope" } })
      assert.has_error(function() process.run(42) end,
        "bad argument #1 to 'run' (string or table expected, got number)")
      assert.has_error(function() process.run("true", { timout = 1 }) end,
                       "bad argument #2 to 'run' (unknown option 'timout')")
      -- in run's terms, before anything starts (they were communicate's
      -- "bad argument #1 to 'communicate'", raised once the command ran)
      assert.has_error(function() process.run("cat", { input = 5 }) end,
                       "green.process.run: input must be a string (got "
                       .. "number)")
      assert.has_error(function() process.run("true", { timeout = "1" }) end,
                       "green.process.run: timeout must be a number of "
                       .. "seconds")
      assert.has_error(function()
        process.run("cat", { input = "x", stdin = "null" })
      end, "green.process.run: input given, but stdin is 'null' (input "
           .. "needs a pipe: leave stdin out or make it \"pipe\")")
    end)
  end)

  it("a killed caller kills the command", function()
    green_run(function()
      local pidfile = os.tmpname()
      local gt = green.spawn(process.run, "echo $$ > " .. pidfile
                                          .. "; exec sleep 1000")
      local pid
      h.eventually(function()
        local f = io.open(pidfile)
        pid = f and f:read("n")
        if f then f:close() end
        return pid
      end)
      h.until_suspended(gt)
      gt:kill()
      h.eventually(function() return not alive(pid) end, "command killed")
      os.remove(pidfile)
    end)
  end)
end)

describe("green.process.popen", function()
  local CMD = [[printf 'first\nsecond\r\n  42 -0x1F .5e1 nan 3\ntail']]

  -- Every read format of a Lua file, against io.popen on the same output.
  it("reads as io.popen's files read", function()
    green_run(function()
      local scripts = {
        { "l", "L", "n", "n", "n", "n", "l", "a", "a", "l", 0 },
        { 3, 4, 0, "a", 0 },
        { "*l", "*n" },
        { "L", "L", "L", "L", "L" },
        { "a" },
        { 1000 },
      }
      for _, fmts in ipairs(scripts) do
        local g = assert(process.popen(CMD))
        local s = assert(h.stock.popen(CMD))
        for _, fmt in ipairs(fmts) do
          assert.are.same({ s:read(fmt) }, { g:read(fmt) },
                          "format " .. tostring(fmt))
        end
        assert.are.same({ s:close() }, { g:close() })
      end
      -- several formats in one call stop at the first failure
      local g = assert(process.popen(CMD))
      local s = assert(h.stock.popen(CMD))
      assert.are.same(table.pack(s:read("l", "l", "n", "l", "n", "n")),
                      table.pack(g:read("l", "l", "n", "l", "n", "n")))
      s:close()
      g:close()
    end)
  end)

  it("iterates lines; writes in mode \"w\"; close returns os.execute's "
     .. "results", function()
    green_run(function()
      local lines = {}
      for l in assert(process.popen("seq 3")):lines() do
        lines[#lines + 1] = l
      end
      assert.are.same({ "1", "2", "3" }, lines)
      local f = assert(process.popen("seq 4"))
      local pairs_ = {}
      for a, b in f:lines("n", "n") do pairs_[#pairs_ + 1] = a + b end
      assert.are.same({ 3, 7 }, pairs_)
      assert.are.same({ true, "exit", 0 }, { f:close() })
      local out = os.tmpname()
      local w = assert(process.popen("cat > " .. out .. "; exit 3", "w"))
      assert.are.equal(w, w:write("a", 1, " ", 2.5, " ", 2^63))
      assert.are.equal(w, w:flush())
      assert.is_true(w:setvbuf("no"))
      assert.are.same({ nil, "Illegal seek", 29 }, { w:seek() })
      assert.are.same({ nil, "Bad file descriptor", 9 }, { w:read() })
      assert.are.same({ nil, "exit", 3 }, { w:close() })
      local r = assert(io.open(out))
      assert.are.equal("a1 2.5 9.2233720368548e+18", r:read("a"))
      r:close()
      os.remove(out)
      local k = assert(process.popen("kill -KILL $$"))
      assert.are.same({ nil, "signal", 9 }, { k:close() })
    end)
  end)

  it("a command that stops reading: write fails with EPIPE", function()
    green_run(function()
      local w = assert(process.popen("exit 0", "w"))
      local big = string.rep("z", 1000000)
      assert.are.same({ nil, "Broken pipe", 32 }, { w:write(big) })
      assert.are.same({ true, "exit", 0 }, { w:close() })
    end)
  end)

  it("raises on misuse, as Lua's files do", function()
    green_run(function()
      local f = assert(process.popen("echo hi"))
      assert.matches("^file %(0x%x+%)$", tostring(f))
      assert.are.same({ nil, "Bad file descriptor", 9 }, { f:write("x") })
      assert.has_error(function() f:read("x") end,
                       "bad argument #1 to 'read' (invalid format)")
      -- a negative count (Lua's own files fail: "not enough memory")
      -- read nothing and stepped back: the next read gave a byte twice
      assert.are.equal("h", f:read(1))
      assert.has_error(function() f:read(-1) end,
                       "bad argument #1 to 'read' (count is negative)")
      assert.has_error(function() f:read(0, -5) end,
                       "bad argument #2 to 'read' (count is negative)")
      assert.has_error(function() f:read(math.huge) end, "bad argument #1 "
                       .. "to 'read' (number has no integer representation)")
      assert.are.equal("i", f:read(1))
      f:close()
      assert.are.equal("file (closed)", tostring(f))
      assert.has_error(function() f:read() end,
                       "attempt to use a closed file")
      assert.has_error(function() f:close() end,
                       "attempt to use a closed file")
      assert.has_error(function() process.popen("true", "rw") end,
                       "bad argument #2 to 'popen' (invalid mode)")
      -- spawn's "argument 3 contains a zero byte" named no argument of
      -- theirs, at a line of green/process.lua
      for _, fn in ipairs { "popen", "execute", "run" } do
        local ok, e = pcall(function() process[fn]("echo a\0b") end)
        assert.is_false(ok)
        assert.matches("^.-process_spec.lua:%d+: bad argument #1 to '" .. fn
                       .. "' %(command contains a zero byte%)$", e)
      end
      assert.has_error(function() process.popen({}) end)
    end)
  end)

  it("<close> closes and waits", function()
    green_run(function()
      local pid
      do
        local f <close> = assert(process.popen("echo $$; exec sleep 0.05"))
        pid = f:read("n")
      end
      assert.is_false(alive(pid))
    end)
  end)
end)

-- The start of a stock lua5.4 script in which a first execute runs (until
-- `first:kill()`) while the rest of it does.
local WHILE_EXECUTING = [[
local green = require "green"
local process = green.process
green.run(function()
  local started = false
  local first = green.spawn(function()
    started = true
    process.execute("exec sleep 60") -- runs until killed below
  end)
  repeat green.sleep(0) until started -- it waits for its command now
]]

describe("green.process.execute", function()
  it("returns os.execute's results", function()
    green_run(function()
      assert.is_true(process.execute())
      assert.are.same({ true, "exit", 0 }, { process.execute("true") })
      assert.are.same({ nil, "exit", 3 }, { process.execute("exit 3") })
      assert.are.same({ nil, "signal", 15 },
                      { process.execute("kill -TERM $$") })
      assert.are.same({ os.execute("exit 5") }, { process.execute("exit 5") })
    end)
  end)

  -- system(3) ignores SIGINT and SIGQUIT in its caller while the command
  -- runs: a Ctrl-C (sent to the terminal's process group) is the
  -- command's to handle, and os.execute returns its outcome. The green
  -- one let greenlua's Ctrl-C interrupt the script, which killed the
  -- command (an editor, a pager) under it.
  it("leaves a Ctrl-C to the command, as os.execute does", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
local process = require "green".process
local cmd = "trap 'exit 7' INT; echo ready; while :; do sleep 0.01; done"
print(process.execute(cmd))
print("after", process.execute("kill -INT $$"))
print("and", process.execute("kill -QUIT $$"))
]])
    f:close()
    local out, err, code = h.sh(string.format([[
out=$(mktemp)
setsid %s %s >"$out" & pid=$!
n=0
until grep -q '^ready$' "$out"; do
  n=$((n+1)); [ $n -gt 3000 ] && break
  sleep 0.01
done
kill -INT -$pid; wait $pid; code=$?
cat "$out"; rm -f "$out"; exit $code]], h.greenlua, script), 60)
    os.remove(script)
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("ready\nnil\texit\t7\nafter\tnil\tsignal\t2\n"
                     .. "and\tnil\tsignal\t3\n", out)
  end)

  -- The count of executes running is Lua's, and a child of green.fork
  -- inherits it while the parent's handles are cancelled there and its
  -- executes gone: the child's own execute took it as running already
  -- and caught nothing (a SIGQUIT killed the child under stock lua5.4).
  it("in a child of green.fork forked while an execute runs", function()
    local out, err, code = h.lua54_run(WHILE_EXECUTING .. [[
  local pid = green.fork()
  if pid == 0 then
    print(process.execute("kill -QUIT $PPID; echo survived"))
    io.stdout:flush()
    os.exit(0)
  end
  print(process.wait(pid, 30))
  first:kill()
end)
]], 60)
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("survived\ntrue\texit\t0\nexit\t0\n", out)
  end)

  it("a SIGQUIT this process ignores stays ignored in execute's command, "
     .. "while another execute runs", function()
    -- as from system(3): inherited ignored, not at its default as a
    -- signal execute catches is (while a first command runs). Under stock
    -- lua5.4: greenlua catches SIGINT and SIGQUIT for Ctrl-C and Ctrl-\,
    -- lua.c SIGINT, so those are not ignored there.
    local src = WHILE_EXECUTING .. [[
  print(%s("kill -QUIT $$; echo survived"))
  first:kill()
end)
]]
    local build = h.greenlua:match("^(.*)/greenlua$")
    local function lua54(code)
      return h.sh("trap '' QUIT; LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' "
                  .. "LUA_CPATH='" .. build .. "/?.so;;' exec lua5.4 -e "
                  .. h.quote(code), 30)
    end
    local out, err, code = lua54(src:format("process.execute"))
    assert.are.equal("", err)
    assert.are.equal(0, code)
    local stock = lua54(src:format("os.execute"))
    assert.are.equal("survived\ntrue\texit\t0\n", stock)
    assert.are.equal(stock, out)
  end)
end)

describe("green.patch() and subprocesses", function()
  it("installs green io.popen and os.execute: a heartbeat ticks during "
     .. "os.execute(\"sleep 0.5\")", function()
    local out, err, code = h.greenlua_run([[
      local green = require "green"
      local stock, stock_popen = os.execute, io.popen
      green.patch()
      assert(os.execute ~= stock and io.popen ~= stock_popen)
      local ticks = 0
      green.spawn(function()
        while true do ticks = ticks + 1; green.sleep(0.02) end
      end)
      local before = ticks
      print(os.execute("sleep 0.5"))
      print("ticks during os.execute", ticks - before > 0)
      before = ticks
      local f = io.popen("sleep 0.3; echo done")
      print(f:read("a"):match("%a+"), f:close())
      print("ticks during io.popen", ticks - before > 0)
      -- The command waits for a file a green thread makes: only a green
      -- os.execute lets that thread run.
      local flag = os.tmpname()
      os.remove(flag)
      green.spawn(function() green.sleep(0.05); io.open(flag, "w"):close() end)
      print(os.execute("i=0; while [ ! -e " .. flag .. " ] && [ $i -lt 2000 ];"
                       .. " do sleep 0.01; i=$((i+1)); done; test -e " .. flag))
      os.remove(flag)
      os.exit(0)
    ]])
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("true\texit\t0\nticks during os.execute\ttrue\n"
                     .. "done\ttrue\texit\t0\nticks during io.popen\ttrue\n"
                     .. "true\texit\t0\n", out)
  end)

  it("{process = false} leaves them alone; they work inside a C-call "
     .. "boundary, and in a finalizer the stock functions run", function()
    local out, err, code = h.greenlua_run([[
      local green = require "green"
      local popen, execute = io.popen, os.execute
      green.patch { process = false }
      print(io.popen == popen, os.execute == execute)
      green.patch()
      print(io.popen == popen, os.execute == execute)
      -- inside a table.sort comparator (a C-call boundary: the thread
      -- parks its C stack there) the green ones work
      local t = { 2, 1 }
      table.sort(t, function(a, b)
        assert(os.execute("true"))
        local f = io.popen("echo in-sort")
        assert(f:read("l") == "in-sort")
        f:close()
        return a < b
      end)
      print(t[1], t[2])
      -- a finalizer cannot block: there they fall back to the stock ones
      local in_gc
      setmetatable({}, { __gc = function()
        local f = io.popen("echo in-gc")
        in_gc = os.execute("true") and f:read("l")
        f:close()
      end })
      collectgarbage()
      collectgarbage()
      print(in_gc)
      print(pcall(green.patch, "x"))
    ]])
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("true\ttrue\nfalse\tfalse\n1\t2\nin-gc\nfalse\t"
                     .. "bad argument #1 to 'patch' (table expected, got "
                     .. "string)\n", out:gsub("\tfalse\t[^\n]*:%d+: ",
                                              "\tfalse\t"))
  end)

  it("under stock lua5.4: os.execute from the main thread runs the hub",
     function()
    local out, err, code = h.lua54_run([[
      local green = require "green"
      green.patch()
      local ticks = 0
      green.spawn(function()
        while true do ticks = ticks + 1; green.sleep(0.02) end
      end)
      local ok, how, code = os.execute("sleep 0.3")
      print(ok, how, code, ticks > 0)
      os.exit(0)
    ]])
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("true\texit\t0\ttrue\n", out)
  end)
end)

describe("green.process under attack", function()
  -- A finalizer Lua runs after green's own at lua_close (its object was
  -- given its __gc before green loaded): spawn's pipe and signal's watch
  -- were libuv handles made on the closed loop (a SEGV in uv_pipe_init).
  it("a finalizer that runs after lua_close closed the hub: spawn, wait "
     .. "and signal raise, nothing crashes", function()
    local out, err, code = h.lua54_run([[
local process, signal
G = setmetatable({}, { __gc = function()
  print(pcall(process.spawn, { "true", stdout = "pipe" }))
  print(pcall(process.spawn, { "true" }))
  print(pcall(signal, "USR1", function() end))
  print(pcall(signal.wait, "USR1", 0))
  print(pcall(process.wait, 1, 0))
end })
local green = require "green"
process, signal = green.process, green.signal
]], 60)
    assert.are.equal(0, code, "exit code " .. code .. ": " .. err)
    local n = 0
    for line in out:gmatch("[^\n]+") do
      n = n + 1
      assert.matches("^false\t.-green: the hub is closed %(lua_close%): a "
                     .. "finalizer that runs after it cannot use green$", line)
    end
    assert.are.equal(5, n, out)
  end)

  it("a program started with stdin, stdout or stderr closed: its children "
     .. "inherit /dev/null there, and it ends cleanly", function()
    -- libuv's epoll descriptor used to take the free number: a child
    -- inheriting "stdin" got it, and libuv aborted closing it at exit
    local src = [[
      local green = require "green"
      local process = green.process
      green.run(function()
        local f = assert(io.open(arg[1], "w"))
        for fd = 0, 2 do
          local ok, out = process.run({ "readlink", "/proc/self/fd/" .. fd },
                                      { stdout = "pipe", stderr = "null",
                                        stdin = "inherit" })
          f:write(fd, "=", tostring(ok and out:gsub("\n", "")), "\n")
        end
        f:close()
      end)
    ]]
    for _, redir in ipairs { "<&-", ">&-", "2>&-" } do
      local out = os.tmpname()
      local _, err, code = h.greenlua_run(src, out .. " " .. redir)
      assert.are.equal("", err, redir)
      assert.are.equal(0, code, redir)
      local f = assert(io.open(out))
      local got = f:read("a")
      f:close()
      os.remove(out)
      local n = tonumber(redir:match("^%d") or "0")
      assert.truthy(got:find(n .. "=/dev/null\n", 1, true),
                    redir .. ": " .. got)
    end
  end)

  it("input the child reads late is not lost: run's and popen's close "
     .. "write all of it first", function()
    -- more than the pipe holds, so some is queued in the hub when the
    -- writer closes; the child reads nothing for longer than a closed
    -- socket lingers without progress (2 s), which dropped the rest
    green_run(function()
      local input = ("0123456789abcdef"):rep(70000 // 16)
      local out = os.tmpname()
      local results = {}
      local a = green.spawn(function()
        results.run = { process.run("sleep 4; cat", { input = input }) }
      end)
      local b = green.spawn(function()
        local f = assert(process.popen("sleep 4; cat > " .. out, "w"))
        assert(f:write(input))
        results.popen = { f:close() }
      end)
      a:wait()
      b:wait()
      local ok, got_out, got_err, how, code = table.unpack(results.run)
      assert.are.same({ true, #input, "", "exit", 0 },
                      { ok, #got_out, got_err, how, code })
      assert.are.equal(input, got_out)
      assert.are.same({ true, "exit", 0 }, results.popen)
      local f = assert(io.open(out))
      local got = f:read("a")
      f:close()
      os.remove(out)
      assert.are.equal(#input, #got)
      assert.are.equal(input, got)
    end)
  end)

  it("a popen file's close killed while the command has not read all: "
     .. "the pipe is closed all the same", function()
    green_run(function()
      local d = tmpdir()
      -- reads nothing until the flag is there, then to the end of input
      local f = assert(process.popen(
        "i=0; while [ ! -e " .. d .. "/flag ] && [ $i -lt 3000 ]; do "
        .. "sleep 0.01; i=$((i+1)); done; wc -c > " .. d .. "/n; "
        .. "echo > " .. d .. "/done", "w"))
      assert(f:write(("z"):rep(100000))) -- more than the pipe holds
      local closer = green.spawn(f.close, f)
      h.until_suspended(closer, "process:drain")
      closer:kill()
      assert.are.equal(green.GreenletExit, closer:wait())
      assert(io.open(d .. "/flag", "w")):close()
      -- f is still referenced: no collection closes its pipe
      h.eventually(function()
        local g = io.open(d .. "/done")
        if g then g:close() end
        return g ~= nil
      end, "the command saw the end of its input")
      assert.has_error(function() f:close() end,
                       "attempt to use a closed file")
      h.eventually(function() return not alive(f.proc.pid) end,
                   "the command reaped")
      assert(process.run { "rm", "-r", d })
    end)
  end)
end)
