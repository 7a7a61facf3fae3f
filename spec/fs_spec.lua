-- green.fs: files with Lua's file methods and calls on paths, their I/O
-- on libuv's thread pool. Results are compared with the real io library
-- on the same inputs; kills and Timeouts mid-read and mid-write use FIFOs
-- (a read or write that stays in the pool until the other end acts).
local green = require "green"
local h = require "helper"
local fs = green.fs

local S = require "fs_support"

local dir -- a fresh temporary directory per spec file (S.setup)
local sh, tmp, mkfifo, nfds = S.sh, S.tmp, S.mkfifo, S.nfds

local function put(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function get(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end


-- pcall's results with file objects and error positions normalized, for
-- comparing a call on an io file with the same call on a green.fs file.
local function outcome(files, ok, ...)
  local r = table.pack(ok, ...)
  for i = 1, r.n do
    if files[r[i]] then r[i] = "<file>" end
  end
  if not ok then r[2] = tostring(r[2]):gsub("^[^:]*:%d+: ", "") end
  return r
end

local function call(files, f, name, ...)
  return outcome(files, pcall(f[name], f, ...))
end

local function show(v)
  if type(v) == "table" then
    local t = {}
    for i = 1, v.n or #v do t[#t + 1] = show(v[i]) end
    return "{" .. table.concat(t, ", ") .. "}"
  elseif type(v) == "string" then
    return ("%q"):format(#v > 40 and v:sub(1, 40) .. "..." or v)
  end
  return tostring(v)
end

setup(function() dir = S.setup() end)

teardown(S.teardown)

describe("green.fs files read as io's do", function()
  local CONTENTS = {
    "", "a", "abc\n", "abc\ndef", "\n\n\n", "line1\r\nline2\n",
    "12 0x1F -3.5e2 abc\n", "0x", " 0x1p4 0x.8 1e 1e+ 1e+5x 0X1P-1",
    "- 3 +7 --1 +-2", ".5 5. . 0.5e-3 1.5.5",
    "99999999999999999999 9223372036854775807 9223372036854775808",
    string.rep("1", 250) .. " 7", string.rep("0", 199) .. "12 8",
    "\t\n  42\n\v\f 7", "inf nan 0xg 0x", "a\0b\nc\0", "1e5\n2\n",
    string.rep("x", 70000) .. "\nend", string.rep(" ", 70000) .. "5",
  }
  local FORMATS = {
    {}, { "l" }, { "L" }, { "n" }, { "a" }, { 1 }, { 0 }, { 5 },
    { "*l" }, { "*a" }, { "*n" }, { "*L" }, { "l", "l", "l" },
    { "n", "n", "n", "n" }, { "L", "n", "a" }, { 0, "l", 0 },
    { 3, "n", "l" }, { "n", "l" }, { 100000 }, { "a", "a" },
    { "n", 1, "n" }, { 2, 0, "a", 0, "a", "l" }, { "n", "L" },
  }

  it("read, with every format and several at once, and seek after", function()
    green_run(function()
      local compared = 0
      for ci, content in ipairs(CONTENTS) do
        local p = tmp("read")
        put(p, content)
        for _, fmts in ipairs(FORMATS) do
          local fi, fg = assert(io.open(p, "rb")), assert(fs.open(p, "rb"))
          local files = { [fi] = true, [fg] = true }
          local nils = 0
          for step = 1, 8 do
            local a = call(files, fi, "read", table.unpack(fmts))
            local b = call(files, fg, "read", table.unpack(fmts))
            local what = ("content %d, read(%s), step %d"):format(
              ci, show(fmts):sub(2, -2), step)
            assert.same(a, b, what)
            assert.same(call(files, fi, "seek"), call(files, fg, "seek"),
                        what .. ", then seek()")
            compared = compared + 1
            if a[2] == nil then nils = nils + 1 end
            if nils == 2 then break end
          end
          fi:close()
          assert.is_true(fg:close())
        end
      end
      assert.is_true(compared > #CONTENTS * #FORMATS)
    end)
  end)

  it("lines(formats) on an open file", function()
    green_run(function()
      for ci, content in ipairs(CONTENTS) do
        local p = tmp("lines")
        put(p, content)
        for _, fmts in ipairs(FORMATS) do
          local fi, fg = assert(io.open(p, "rb")), assert(fs.open(p, "rb"))
          local files = { [fi] = true, [fg] = true }
          local ii = fi:lines(table.unpack(fmts))
          local ig = fg:lines(table.unpack(fmts))
          for step = 1, 6 do -- "a" never ends: a bounded number of calls
            local a, b = outcome(files, pcall(ii)), outcome(files, pcall(ig))
            assert.same(a, b, ("content %d, lines(%s), call %d"):format(
              ci, show(fmts):sub(2, -2), step))
            if a[2] == nil then break end
          end
          fi:close()
          fg:close()
        end
      end
    end)
  end)

  it("raises for bad formats as io does, consuming what io consumes", function()
    local BAD = {
      { "x" }, { "l", "x" }, { {} }, { "l", {} }, { 1.5 }, { "l", 2.5 },
      { "n", "?" }, { true }, { "" },
    }
    green_run(function()
      local p = tmp("bad")
      put(p, "12 line one\nline two\nthree\n")
      for _, fmts in ipairs(BAD) do
        local fi, fg = assert(io.open(p, "rb")), assert(fs.open(p, "rb"))
        local files = { [fi] = true, [fg] = true }
        local a = call(files, fi, "read", table.unpack(fmts))
        local b = call(files, fg, "read", table.unpack(fmts))
        assert.is_false(a[1])
        assert.same(a, b, "read(" .. show(fmts):sub(2, -2) .. ")")
        assert.same(call(files, fi, "read", "a"), call(files, fg, "read", "a"))
        fi:close()
        fg:close()
      end
      -- a negative count: io's read takes it as a huge size and fails to
      -- allocate it ("not enough memory"; under ASan, an abort); green's
      -- says what is wrong, after consuming what the formats before it
      -- consume, as for the other bad arguments
      local f = assert(fs.open(p))
      local ok, err = pcall(f.read, f, -1)
      assert.is_false(ok)
      assert.matches("bad argument #2 to '%?' %(negative count%)", err)
      ok, err = pcall(function() return f:read("l", math.mininteger) end)
      assert.is_false(ok)
      assert.matches("bad argument #2 to 'read' %(negative count%)", err)
      assert.equal("line two", f:read("l"))
      f:close()
      -- as methods, the argument numbers are the method's
      f = assert(fs.open(p))
      ok, err = pcall(function() return f:read("l", "x") end)
      assert.is_false(ok)
      assert.matches("bad argument #2 to 'read' %(invalid format%)", err)
      f:close()
    end)
  end)

  it("a read of a file opened for writing fails as io's does", function()
    green_run(function()
      local p = tmp("wo")
      for _, fmts in ipairs { { "l" }, { 0 }, { "a" }, { "n" }, { 4 } } do
        local fi, fg = assert(io.open(p, "wb")), assert(fs.open(p, "wb"))
        local files = { [fi] = true, [fg] = true }
        local a = call(files, fi, "read", table.unpack(fmts))
        assert.same({ n = 4, true, nil, "Bad file descriptor", 9 }, a)
        assert.same(a, call(files, fg, "read", table.unpack(fmts)))
        fi:close()
        fg:close()
      end
    end)
  end)
end)

describe("green.fs files write and seek as io's do", function()
  -- Each script runs on an io file and a green.fs file over two copies of
  -- the same content; every step's results, then the files, must agree.
  local SCRIPTS = {
    { "w", "", { "write", "abc", 1, " ", 2.5, " ", -0.0, " ", 1 / 0, " ",
                 math.mininteger, " ", 2 ^ 63, " ", 0.1, " ", 1e300 },
      { "seek" }, { "seek", "set", 1 }, { "write", "Z" }, { "seek", "end" },
      { "read", "a" }, { "seek", "cur", -3 }, { "write", "!" } },
    { "r", "hello\nworld\n", { "write", "x" }, { "read", "l" },
      { "write", "x", "y" }, { "flush" }, { "seek", "set", 2 },
      { "read", "a" } },
    { "r+", "hello\nworld\n", { "read", 2 }, { "write", "ZZ" }, { "seek" },
      { "read", "l" }, { "write", "!!" }, { "seek", "set" }, { "read", "a" } },
    { "r+b", "0123456789", { "seek", "end", -2 }, { "write", "ab" },
      { "seek", "set", 0 }, { "read", 3 }, { "seek", "cur", 2 },
      { "write", "X" }, { "read", 1 }, { "seek", "end" } },
    { "w+", "old", { "read", "a" }, { "write", "one\ntwo\n" }, { "seek" },
      { "seek", "set" }, { "read", "l", "l", "l" }, { "write", "three" },
      { "seek", "set", 4 }, { "read", "L" } },
    { "a", "start\n", { "seek" }, { "write", "more\n" }, { "seek" },
      { "seek", "set", 0 }, { "write", "end\n" }, { "seek" },
      { "read", "l" } },
    { "a+", "start\n", { "seek" }, { "read", "l" }, { "write", "X" },
      { "seek" }, { "read", "a" }, { "seek", "set", 0 }, { "read", "a" } },
    { "ab", "", { "write", "x" }, { "seek", "cur" }, { "seek", "end", 5 },
      { "seek" } },
    { "r", "abc", { "seek", "set", -1 }, { "seek", "cur", -10 },
      { "seek", "bad" }, { "seek", "set", 1.5 }, { "seek", "end", -1 },
      { "read", "a" }, { "seek", "set", 100 }, { "read", "a" },
      { "read", 0 } },
    { "w", "", { "write", "a", {}, "b" }, { "write", true },
      { "write", "c" }, { "write" }, { "seek" } },
    { "w", "", { "setvbuf", "no" }, { "write", "a" }, { "setvbuf", "line" },
      { "write", "b\nc" }, { "setvbuf", "full", 3 }, { "write", "defg" },
      { "setvbuf", "bad" }, { "setvbuf" }, { "flush" }, { "seek" } },
  }

  it("every step and the file afterwards", function()
    green_run(function()
      for si, script in ipairs(SCRIPTS) do
        local mode, content = script[1], script[2]
        local pi, pg = tmp("io"), tmp("fs")
        put(pi, content)
        put(pg, content)
        local fi, fg = assert(io.open(pi, mode)), assert(fs.open(pg, mode))
        local files = { [fi] = true, [fg] = true }
        for k = 3, #script do
          local step = script[k]
          local what = ("script %d (%q), step %d: %s"):format(si, mode, k - 2,
                                                              show(step))
          local a = call(files, fi, table.unpack(step))
          local b = call(files, fg, table.unpack(step))
          assert.same(a, b, what)
        end
        assert.same(call(files, fi, "close"), call(files, fg, "close"))
        assert.equal(get(pi), get(pg), "script " .. si .. ": the files")
      end
    end)
  end)

  it("write returns the file, so calls chain", function()
    green_run(function()
      local p = tmp()
      local f = assert(fs.open(p, "w"))
      assert.equal(f, f:write("a"):write("b", 3))
      assert.is_true(f:close())
      assert.equal("ab3", get(p))
    end)
  end)

  it("seek on a FIFO fails as on a pipe (Illegal seek)", function()
    green_run(function()
      local p = mkfifo()
      local w
      local t = green.spawn(function() w = assert(fs.open(p, "w")) end)
      local r = assert(fs.open(p, "r"))
      t:wait()
      assert.same({ nil, "Illegal seek", 29 }, { r:seek() })
      assert.same({ nil, "Illegal seek", 29 }, { r:seek("end") })
      w:close()
      assert.is_nil(r:read("l"))
      r:close()
    end)
  end)
end)

describe("green.fs.open", function()
  it("fails as io.open does: missing, directory, not a directory", function()
    green_run(function()
      local p = tmp()
      put(p, "x")
      local cases = {
        { dir .. "/missing", "r" }, { dir .. "/no/such/dir", "w" },
        { dir, "w" }, { dir, "a" }, { dir, "r+" }, { p .. "/x", "r" },
        { p .. "/x", "w" }, { "", "r" },
      }
      for _, c in ipairs(cases) do
        local a = table.pack(io.open(c[1], c[2]))
        local b = table.pack(fs.open(c[1], c[2]))
        assert.is_nil(a[1], c[1])
        assert.same(a, b, c[1] .. " " .. c[2])
      end
      assert.same({ nil, dir .. "/missing: No such file or directory", 2 },
                  { fs.open(dir .. "/missing") })
      assert.same({ nil, dir .. ": Is a directory", 21 },
                  { fs.open(dir, "w") })
      assert.same({ nil, p .. "/x: Not a directory", 20 },
                  { fs.open(p .. "/x") })
    end)
  end)

  it("opens a directory for reading; reading it fails as io's does", function()
    green_run(function()
      local fi, fg = assert(io.open(dir)), assert(fs.open(dir))
      local files = { [fi] = true, [fg] = true }
      for _, fmt in ipairs { "l", "a", 0, "n" } do
        local a = call(files, fi, "read", fmt)
        assert.same({ n = 4, true, nil, "Is a directory", 21 }, a)
        assert.same(a, call(files, fg, "read", fmt))
      end
      fi:close()
      assert.is_true(fg:close())
      assert.same({ nil, dir .. ": Is a directory", 21 },
                  { fs.readfile(dir) })
    end)
  end)

  it("checks the mode as io.open does (invalid modes raise)", function()
    green_run(function()
      local p = tmp()
      put(p, "x")
      for _, m in ipairs { "", "x", "rw", "rb+", "+r", "r+x", "wa", "r b" } do
        local ok, err = pcall(fs.open, p, m)
        assert.is_false(ok, m)
        assert.matches("bad argument #2 to '[%w.]*open' %(invalid mode%)", err)
        assert.is_false((pcall(io.open, p, m)))
      end
      for _, m in ipairs { "r", "rb", "r+", "r+b", "rbb", "w", "wb", "w+",
                           "a", "a+b" } do
        local f = assert(fs.open(p, m), m)
        assert.equal("file", fs.type(f))
        f:close()
      end
      assert.has_error(function() fs.open() end)
      assert.has_error(function() fs.open({}) end)
    end)
  end)

  it("fails with EACCES on files it may not read or write", function()
    local src = [[
      local green = require "green"
      local p = arg and arg[1] or os.getenv("FS_SPEC_FILE")
      green.run(function()
        print(select(2, io.open(p, "r")), select(3, io.open(p, "r")))
        local fs = green.fs
        print(select(2, fs.open(p, "r")), select(3, fs.open(p, "r")))
        print(select(2, fs.open(p, "w")), select(3, fs.open(p, "w")))
        print(select(2, fs.readfile(p)))
        print(select(2, fs.writefile(p, "x")))
      end)
    ]]
    local p = tmp("secret")
    put(p, "secret")
    sh("chmod 000 " .. p)
    local script = tmp("eacces.lua")
    put(script, src)
    local runner = ""
    local out = io.popen("id -u"):read("l")
    if out == "0" then
      -- Root reads and writes whatever the permissions say: run the
      -- check as nobody when setpriv can, else skip it.
      if not os.execute("setpriv --reuid=65534 --regid=65534 "
                        .. "--clear-groups true 2>/dev/null") then
        pending("running as root without setpriv: permissions do not stop "
                .. "root, so EACCES cannot be produced (EISDIR, ENOTDIR and "
                .. "EEXIST, which do not depend on the uid, are tested)")
        return
      end
      sh("chmod 755 " .. dir .. " && chmod 644 " .. script)
      runner = "setpriv --reuid=65534 --regid=65534 --clear-groups "
    end
    local stdout, stderr, code = h.sh(
      runner .. "env FS_SPEC_FILE=" .. p .. " LUA_PATH='./lua/?.lua;"
      .. "./lua/?/init.lua;;' LUA_CPATH='" .. (os.getenv("GREENLUA_BUILD")
      or "./build") .. "/?.so;;' lua5.4 " .. script)
    sh("chmod 700 " .. dir)
    assert.equal(0, code, stderr)
    local msg = p .. ": Permission denied"
    assert.equal(string.rep(msg .. "\t13\n", 5), stdout)
  end)

  it("opens with close-on-exec", function()
    green_run(function()
      local p = tmp()
      put(p, "x")
      local f = assert(fs.open(p))
      local fd
      for _, name in ipairs(assert(fs.scandir("/proc/self/fd"))) do
        local target = fs.realpath("/proc/self/fd/" .. name)
        if target == fs.realpath(p) then fd = name end
      end
      assert.is_not_nil(fd)
      local info = get("/proc/self/fdinfo/" .. fd)
      local flags = tonumber(info:match("flags:%s*(%d+)"), 8)
      assert.equal(tonumber("2000000", 8), flags & tonumber("2000000", 8))
      f:close()
    end)
  end)
end)

describe("green.fs calls on paths", function()
  it("stat and lstat: LuaFileSystem's fields", function()
    green_run(function()
      local p = tmp("st")
      put(p, "12345")
      sh("chmod 640 " .. p)
      local before = os.time()
      local s = assert(fs.stat(p))
      assert.equal("file", s.mode)
      assert.equal(5, s.size)
      assert.equal("rw-r-----", s.permissions)
      assert.equal(1, s.nlink)
      for _, k in ipairs { "dev", "ino", "uid", "gid", "rdev", "blocks",
                           "blksize" } do
        assert.equal("integer", math.type(s[k]), k)
      end
      for _, k in ipairs { "access", "modification", "change" } do
        assert.is_number(s[k])
        assert.is_true(math.abs(s[k] - before) < 3600, k)
      end
      assert.equal("directory", fs.stat(dir).mode)
      local link = tmp("link")
      sh("ln -s " .. p .. " " .. link)
      assert.equal("file", fs.stat(link).mode)
      assert.equal("link", fs.lstat(link).mode)
      assert.equal(s.ino, fs.stat(link).ino)
      assert.equal("char device", fs.stat("/dev/null").mode)
      local fifo = mkfifo()
      assert.equal("named pipe", fs.stat(fifo).mode)
      assert.same({ nil, dir .. "/nope: No such file or directory", 2 },
                  { fs.stat(dir .. "/nope") })
      assert.same({ nil, p .. "/x: Not a directory", 20 },
                  { fs.lstat(p .. "/x") })
      local ok, err = pcall(fs.stat)
      assert.is_false(ok)
      assert.matches("bad argument #1 to '[%w.]*stat' %(string expected, "
                     .. "got no value%)", err)
    end)
  end)

  it("rename, unlink, mkdir, rmdir and their failures", function()
    green_run(function()
      local a, b, d = tmp("a"), tmp("b"), tmp("d")
      put(a, "A")
      assert.is_true(fs.rename(a, b))
      assert.is_nil(get(a))
      assert.equal("A", get(b))
      assert.same({ nil, a .. ": No such file or directory", 2 },
                  { fs.rename(a, b) })
      assert.is_true(fs.mkdir(d))
      assert.equal("rwxr-xr-x", (fs.stat(d).permissions:gsub("w", "w", 1)))
      assert.same({ nil, d .. ": File exists", 17 }, { fs.mkdir(d) })
      assert.same({ nil, b .. "/sub: Not a directory", 20 },
                  { fs.mkdir(b .. "/sub") })
      assert.same({ nil, d .. "/x/y: No such file or directory", 2 },
                  { fs.mkdir(d .. "/x/y") })
      local private = tmp("private")
      assert.is_true(fs.mkdir(private, tonumber("700", 8)))
      assert.equal("rwx------", fs.stat(private).permissions)
      assert.has_error(function() fs.mkdir(tmp(), -1) end)
      put(d .. "/inside", "")
      assert.same({ nil, d .. ": Directory not empty", 39 }, { fs.rmdir(d) })
      assert.same({ nil, b .. ": Not a directory", 20 }, { fs.rmdir(b) })
      assert.same({ nil, d .. ": Is a directory", 21 }, { fs.unlink(d) })
      assert.is_true(fs.unlink(d .. "/inside"))
      assert.is_true(fs.rmdir(d))
      assert.is_true(fs.unlink(b))
      assert.same({ nil, b .. ": No such file or directory", 2 },
                  { fs.unlink(b) })
      assert.is_true(fs.rename(private, d)) -- directories too
      assert.equal("directory", fs.stat(d).mode)
    end)
  end)

  it("scandir: sorted names and their types", function()
    green_run(function()
      local d = tmp("scan")
      assert(fs.mkdir(d))
      for _, n in ipairs { "b", "a", "C", "dir", "z.txt" } do
        if n == "dir" then assert(fs.mkdir(d .. "/dir"))
        else put(d .. "/" .. n, n) end
      end
      sh("ln -s a " .. d .. "/link && mkfifo " .. d .. "/pipe")
      local names, types = fs.scandir(d)
      assert.same({ "C", "a", "b", "dir", "link", "pipe", "z.txt" }, names)
      assert.same({ C = "file", a = "file", b = "file", dir = "directory",
                    link = "link", pipe = "named pipe", ["z.txt"] = "file" },
                  types)
      local empty = tmp("empty")
      assert(fs.mkdir(empty))
      assert.same({}, (fs.scandir(empty)))
      assert.same({ nil, d .. "/a: Not a directory", 20 },
                  { fs.scandir(d .. "/a") })
      assert.same({ nil, d .. "/nope: No such file or directory", 2 },
                  { fs.scandir(d .. "/nope") })
    end)
  end)

  it("realpath resolves links, '.' and '..'", function()
    green_run(function()
      local real = assert(fs.realpath(dir))
      local d = tmp("rp")
      assert(fs.mkdir(d))
      put(d .. "/f", "")
      sh("ln -s " .. d .. " " .. d .. "-link")
      local base = real .. d:sub(#dir + 1)
      assert.equal(base .. "/f", fs.realpath(d .. "-link/./f"))
      assert.equal(base, fs.realpath(d .. "/../" .. d:match("[^/]+$")))
      assert.same({ nil, d .. "/nope: No such file or directory", 2 },
                  { fs.realpath(d .. "/nope") })
    end)
  end)

  it("readfile and writefile: any bytes, and their failures", function()
    green_run(function()
      local p = tmp("rw")
      local data = {}
      for i = 0, 255 do data[#data + 1] = string.char(i) end
      data = table.concat(data):rep(300) -- 76,800 bytes, NULs and all
      assert.is_true(fs.writefile(p, data))
      assert.equal(data, get(p))
      assert.equal(data, fs.readfile(p))
      assert.is_true(fs.writefile(p, "short"))
      assert.equal("short", fs.readfile(p)) -- truncated
      assert.is_true(fs.writefile(p, 42))
      assert.equal("42", fs.readfile(p))
      assert.is_true(fs.writefile(p, ""))
      assert.equal("", fs.readfile(p))
      assert.same({ nil, dir .. "/no/f: No such file or directory", 2 },
                  { fs.writefile(dir .. "/no/f", "x") })
      assert.same({ nil, dir .. "/nope: No such file or directory", 2 },
                  { fs.readfile(dir .. "/nope") })
      assert.same({ nil, dir .. ": Is a directory", 21 },
                  { fs.writefile(dir, "x") })
      assert.has_error(function() fs.readfile() end,
                       "bad argument #1 to 'readfile' (string expected, "
                       .. "got no value)")
      assert.has_error(function() fs.writefile(p, {}) end,
                       "bad argument #2 to 'writefile' (string expected, "
                       .. "got table)")
    end)
  end)

  it("refuse a path with a zero byte, touching nothing", function()
    green_run(function()
      -- the system would take "keep\0.tmp" for "keep": a write or an
      -- unlink meant for a temporary file would hit the one kept
      local keep = tmp("keep")
      put(keep, "precious")
      local bad = keep .. "\0.tmp"
      local function refused(fname, arg, f, ...)
        local ok, err = pcall(f, ...)
        assert.is_false(ok, fname)
        assert.equal(("bad argument #%d to '%s' (path contains a zero byte)")
                     :format(arg, fname), (err:gsub("^[^:]*:%d+: ", "")))
      end
      refused("green.fs.open", 1, fs.open, bad, "w")
      refused("green.fs.open", 1, fs.open, bad, "a")
      refused("green.fs.lines", 1, fs.lines, bad)
      refused("green.fs.stat", 1, fs.stat, bad)
      refused("green.fs.lstat", 1, fs.lstat, bad)
      refused("green.fs.unlink", 1, fs.unlink, bad)
      refused("green.fs.rename", 1, fs.rename, bad, keep .. ".2")
      refused("green.fs.rename", 2, fs.rename, dir .. "/none", bad)
      refused("green.fs.mkdir", 1, fs.mkdir, keep .. "\0/d")
      refused("green.fs.rmdir", 1, fs.rmdir, bad)
      refused("green.fs.scandir", 1, fs.scandir, dir .. "\0/x")
      refused("green.fs.realpath", 1, fs.realpath, bad)
      refused("writefile", 1, fs.writefile, bad, "junk")
      refused("readfile", 1, fs.readfile, bad)
      assert.equal("precious", get(keep))
      assert.is_nil(get(keep .. ".2"))
    end)
  end)

  it("refuse a path with a zero byte where io.open's stock function "
     .. "stands in (a finalizer, under patch{fs = true})", function()
    -- the stock io.open took "keep\0.tmp" for "keep" there
    local keep = os.tmpname()
    os.remove(keep)
    local out, err, code = h.greenlua_run(([[
local green = require "green"
green.patch { fs = true }
local r
setmetatable({}, { __gc = function()
  r = table.pack(pcall(io.open, %q .. "\0.tmp", "w"))
  r[3] = pcall(io.lines, %q .. "\0.tmp")
end })
collectgarbage()
collectgarbage()
print(r[1], r[2], r[3])
]]):format(keep, keep))
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.matches("^false\t.-bad argument #1 to '[^']+' %(path contains a "
                   .. "zero byte%)\tfalse\n$", out)
    assert.is_nil(io.open(keep)) -- (nothing made)
  end)

  it("type and stats", function()
    green_run(function()
      local p = tmp()
      put(p, "x")
      local base = fs.stats()
      local f = assert(fs.open(p))
      assert.equal("file", fs.type(f))
      assert.equal(base.files + 1, fs.stats().files)
      f:close()
      assert.equal("closed file", fs.type(f))
      assert.is_nil(fs.type(io.stdout))
      assert.is_nil(fs.type("x"))
      assert.has_error(function() fs.type() end)
      local s = fs.stats()
      assert.equal(base.files, s.files)
      assert.equal(0, s.inflight)
      assert.is_true(s.requests >= base.requests + 2) -- open, close
    end)
  end)
end)

describe("green.fs files", function()
  it("methods of a closed file raise as io's do", function()
    green_run(function()
      local p = tmp()
      put(p, "a\nb\n")
      local fi, fg = assert(io.open(p)), assert(fs.open(p))
      local it_i, it_g = fi:lines(), fg:lines()
      fi:close()
      assert.is_true(fg:close())
      local files = { [fi] = true, [fg] = true }
      for _, m in ipairs { { "read" }, { "write", "x" }, { "lines" },
                           { "seek" }, { "flush" }, { "close" },
                           { "setvbuf", "no" } } do
        local a, b = call(files, fi, table.unpack(m)), call(files, fg,
                                                           table.unpack(m))
        assert.same({ n = 2, false, "attempt to use a closed file" }, a)
        assert.same(a, b, m[1])
      end
      assert.same(outcome(files, pcall(it_i)), outcome(files, pcall(it_g)))
      assert.equal("green.fs.File (closed)", tostring(fg))
      assert.matches("^green%.fs%.File %(0x%x+%)$",
                     tostring(assert(fs.open(p))))
      -- <close> and the collector leave a closed file alone
      getmetatable(fg).__close(fg)
      getmetatable(fg).__gc(fg)
    end)
  end)

  it("lines(filename): io.lines's four values, closed at the end", function()
    green_run(function()
      local p = tmp()
      put(p, "1 2\n3 4\n")
      local a = table.pack(io.lines(p, "n"))
      local b = table.pack(fs.lines(p, "n"))
      assert.equal(4, b.n)
      assert.equal("function", type(b[1]))
      assert.is_nil(b[2])
      assert.is_nil(b[3])
      assert.equal("file", fs.type(b[4]))
      local got = {}
      for n in b[1] do got[#got + 1] = n end
      assert.same({ 1, 2, 3, 4 }, got)
      assert.equal("closed file", fs.type(b[4]))
      assert.has_error(b[1], "file is already closed")
      a[4]:close()
      local sum = 0
      for x, y in fs.lines(p, "n", "n") do sum = sum + x * y end
      assert.equal(14, sum)
      -- a loop left early closes the file (its fourth value)
      local iter, s, c, file = fs.lines(p, "l")
      local first
      for l in iter, s, c, file do
        first = first or l
        if first then break end
      end
      assert.equal("1 2", first)
      assert.equal("closed file", fs.type(file))
      assert.equal(select(2, pcall(io.lines, dir .. "/nope")),
                   select(2, pcall(fs.lines, dir .. "/nope")))
      assert.equal(
        (select(2, pcall(io.lines, p, table.unpack({}, 1, 251)))
           :gsub("'io.lines'", "'green.fs.lines'")),
        select(2, pcall(fs.lines, p, table.unpack({}, 1, 251))))
      assert.has_error(function() fs.lines() end)
      assert.has_error(function() for _ in fs.lines(dir) do end end,
                       "Is a directory")
    end)
  end)

  it("<close> waits for the writes; a kept file is closed by __gc", function()
    green_run(function()
      local p = tmp()
      do
        local f <close> = assert(fs.open(p, "w"))
        f:write("written")
      end
      assert.equal("written", get(p))
      -- files of earlier specs that are garbage go first
      collectgarbage()
      collectgarbage()
      h.eventually(function() return fs.stats().inflight == 0 end)
      local base, fds = fs.stats().files, nfds()
      local q = tmp()
      local function keep() -- no reference left on this thread's stack
        local f = fs.open(q, "w") -- (busted's assert keeps its arguments)
        f:write("collected")
        assert.equal("", get(q)) -- still in the buffer
      end
      keep()
      collectgarbage()
      collectgarbage()
      h.eventually(function() return fs.stats().files == base end,
                   "the collected file's record freed")
      assert.equal("collected", get(q))
      assert.equal(fds, nfds())
    end)
  end)

  it("flush and setvbuf decide when another reader sees the data", function()
    green_run(function()
      local p = tmp()
      local f = assert(fs.open(p, "w"))
      f:write("full")
      assert.equal("", get(p))
      assert.is_true(f:flush())
      assert.equal("full", get(p))
      assert.is_true(f:setvbuf("line"))
      f:write(" no newline")
      assert.equal("full", get(p))
      f:write(" and\n")
      assert.equal("full no newline and\n", get(p))
      f:setvbuf("no")
      f:write("x")
      assert.equal("full no newline and\nx", get(p))
      f:setvbuf("full", 4)
      f:write("abc")
      assert.equal("full no newline and\nx", get(p))
      f:write("d")
      assert.equal("full no newline and\nxabcd", get(p))
      assert.is_true(f:close())
    end)
  end)

  it("a loop of read('l') costs few pool requests, not one a line", function()
    green_run(function()
      local p = tmp()
      local lines = {}
      for i = 1, 20000 do lines[i] = "line " .. i end
      put(p, table.concat(lines, "\n") .. "\n")
      local f = assert(fs.open(p))
      local r0, n = fs.stats().requests, 0
      while true do
        local l = f:read("l")
        if not l then break end
        n = n + 1
        assert.equal(lines[n], l)
      end
      local used = fs.stats().requests - r0
      f:close()
      assert.equal(20000, n)
      assert.is_true(used <= 8, used .. " requests for 20000 lines ("
                     .. #table.concat(lines) .. " bytes)")
    end)
  end)

  it("seek('end') counts what another thread wrote while it asked the size",
     function()
    green_run(function()
      -- a's seek asks the pool for the size; b writes meanwhile (b waits
      -- for a's request, then runs first): a's seek must land after b's
      -- bytes, or a's next write overwrites them
      for _, data in ipairs({ "xyz", ("y"):rep(100000) }) do
        local p = tmp()
        put(p, "abc")
        local f = assert(fs.open(p, "r+"))
        f:setvbuf("full", 1024) -- "xyz" stays in the buffer, 100000 not
        assert.equal(3, f:seek("set", 3))
        local a = green.spawn(function()
          local pos = f:seek("end")
          f:write("Q")
          return pos
        end)
        local b = green.spawn(function() return f:write(data) end)
        assert.equal(3 + #data, a:wait())
        assert.equal(f, b:wait())
        assert.is_true(f:close())
        assert.equal("abc" .. data .. "Q", get(p))
      end
    end)
  end)

  it("threads sharing a file take turns, each read whole", function()
    green_run(function()
      local p = tmp()
      local lines = {}
      for i = 1, 5000 do lines[i] = ("%05d"):format(i) .. ("x"):rep(i % 50) end
      put(p, table.concat(lines, "\n") .. "\n")
      local f = assert(fs.open(p))
      f:setvbuf("full", 512) -- many refills, so the threads interleave
      local seen, per = {}, {}
      local threads = {}
      for k = 1, 3 do
        per[k] = 0
        threads[k] = green.spawn(function()
          for l in f:lines() do
            seen[#seen + 1] = l
            per[k] = per[k] + 1
          end
        end)
      end
      for _, t in ipairs(threads) do t:wait() end
      f:close()
      table.sort(seen)
      assert.same(lines, seen)
      for k = 1, 3 do assert.is_true(per[k] > 0, "thread " .. k) end
    end)
  end)

  it("works from the host's main thread (stock lua5.4)", function()
    local p = tmp()
    local out, err, code = h.lua54_run(([[
      local green = require "green"
      local fs = green.fs
      local f = assert(fs.open(%q, "w+"))
      f:write("one\ntwo\n")
      f:seek("set")
      print(f:read("l", "l"))
      print(f:close(), fs.readfile(%q))
    ]]):format(p, p))
    assert.equal(0, code, err)
    assert.equal("one\ttwo\ntrue\tone\ntwo\n\n", out)
  end)

  it("works inside a C-call boundary (native stacks)", function()
    green_run(function()
      local p = tmp()
      put(p, "x")
      local opened
      table.sort({ 1, 2, 3 }, function(a, b)
        opened = opened or assert(fs.open(p))
        return a < b
      end)
      assert.equal("x", opened:read("a"))
      opened:close()
      local f = assert(fs.open(p))
      local got = {}
      local s = ("ab"):gsub("%w", function(c)
        got[#got + 1] = f:read(1) or "-"
        return c:upper()
      end)
      assert.equal("AB", s)
      assert.same({ "x", "-" }, got)
      f:close()
    end)
  end)
end)

describe("green.fs kills and Timeouts", function()
  -- Both ends of a new FIFO: each open waits (in the pool) for the other.
  local fifo_pair, settled = S.fifo_pair, S.settled

  -- Occupy every worker of libuv's pool with an open of a FIFO (which
  -- waits for a writer), so that the next request waits in the pool's
  -- queue. release() opens the write ends with io.open (a reader is
  -- there: it does not block) and closes both ends.
  local function hold_pool()
    local n = tonumber(os.getenv("UV_THREADPOOL_SIZE")) or 4
    local base = fs.stats().inflight
    local fifos, openers = {}, {}
    for i = 1, n do
      fifos[i] = mkfifo("hold")
      openers[i] = green.spawn(function()
        return assert(fs.open(fifos[i], "r"))
      end)
    end
    h.eventually(function() return fs.stats().inflight == base + n end,
                 "the pool held")
    return function()
      local ws = {}
      for i = 1, n do ws[i] = assert(io.open(fifos[i], "w")) end
      for i = 1, n do
        assert(openers[i]:wait():close())
        ws[i]:close()
      end
    end
  end

  it("a reader killed mid-read loses nothing: the next read gets it", function()
    green_run(function()
      local r, w = fifo_pair()
      local reader = green.spawn(function() return r:read("l") end)
      h.until_suspended(reader, "file:read") -- its request waits for bytes
      assert.equal(1, fs.stats().inflight)
      reader:kill()
      assert.equal(green.GreenletExit, reader:wait())
      w:write("hello\nworld\n"):flush() -- the killed read gets these
      assert.equal("hello", r:read("l"))
      assert.equal("world", r:read("l"))
      w:close()
      assert.is_nil(r:read("l"))
      r:close()
      settled()
    end)
  end)

  it("a read of several formats killed half-way consumes nothing", function()
    green_run(function()
      local r, w = fifo_pair()
      local reader = green.spawn(function() return r:read("l", "l") end)
      h.until_suspended(reader, "file:read")
      local r0 = fs.stats().requests
      w:write("one\n"):flush()
      -- the first line is in; the read asks for more
      h.eventually(function()
        return fs.stats().requests > r0 + 1 and h.suspended(reader)
      end, "the second refill")
      reader:kill()
      w:write("two\n"):flush()
      assert.same({ "one", "two" }, { r:read("l", "l") })
      w:close()
      r:close()
      settled()
    end)
  end)

  it("a Timeout mid-read raises; the bytes wait for the next read", function()
    green_run(function()
      local r, w = fifo_pair()
      local ok, err = pcall(function()
        local _ <close> = green.Timeout(0.05)
        return r:read("a")
      end)
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
      w:write("late\n"):flush()
      assert.equal("late", r:read("l"))
      -- the same with a count and a timeout error of one's own
      ok, err = pcall(green.with_timeout, 0.05, r.read, r, 10)
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
      w:write("0123456789tail"):close()
      assert.equal("0123456789", r:read(10))
      assert.equal("tail", r:read("a"))
      r:close()
      settled()
    end)
  end)

  it("a thread killed while it waits for its turn leaves the file usable",
     function()
    green_run(function()
      local r, w = fifo_pair()
      local a = green.spawn(function() return r:read("l") end)
      h.until_suspended(a, "file:read")
      local b = green.spawn(function() return r:read("l") end)
      h.until_suspended(b, "file:read") -- queued behind a's request
      b:kill()
      w:write("x\ny\n"):flush()
      assert.equal("x", a:wait())
      assert.equal("y", r:read("l"))
      w:close()
      r:close()
      settled()
    end)
  end)

  it("a writer killed mid-write: its bytes still go, in order", function()
    green_run(function()
      local r, w = fifo_pair()
      local big = ("0123456789abcdef"):rep(65536) -- 1 MiB: more than a pipe
      local writer = green.spawn(function() w:write("start:", big) end)
      h.until_suspended(writer, "file:write") -- the pipe is full
      writer:kill()
      assert.equal(green.GreenletExit, writer:wait())
      local closer = green.spawn(function()
        w:write(":end") -- after the killed write
        assert(w:close()) -- waits for both
      end)
      local got = r:read("a") -- until the write end is closed
      closer:wait()
      assert.equal(#("start:" .. big .. ":end"), #got)
      assert.is_true(got == "start:" .. big .. ":end")
      r:close()
      settled()
    end)
  end)

  it("a Timeout mid-write raises; the write still completes", function()
    green_run(function()
      local r, w = fifo_pair()
      local big = ("x"):rep(1 << 20)
      local ok, err = pcall(green.with_timeout, 0.05, w.write, w, big)
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
      local reader = green.spawn(function() return r:read("a") end)
      assert.is_true(w:close())
      assert.equal(1 << 20, #reader:wait())
      r:close()
      settled()
    end)
  end)

  it("an open killed while it waits closes what it opens", function()
    green_run(function()
      collectgarbage()
      collectgarbage()
      settled()
      local p = mkfifo()
      local base, fds = fs.stats().files, nfds()
      local opener = green.spawn(function() return fs.open(p, "r") end)
      h.until_suspended(opener, "green.fs.open")
      opener:kill()
      assert.equal(base + 1, fs.stats().files) -- the open still waits
      local w = assert(fs.open(p, "w")) -- the killed open completes now
      h.eventually(function() return fs.stats().files == base + 1 end,
                   "the orphaned read end closed")
      w:close()
      settled()
      assert.equal(base, fs.stats().files)
      assert.equal(fds, nfds())
    end)
  end)

  it("a killed thread's <close> file is closed in the background", function()
    green_run(function()
      collectgarbage()
      settled()
      local p = tmp()
      local base = fs.stats().files
      local ev = green.Event()
      local t = green.spawn(function()
        local f <close> = assert(fs.open(p, "w"))
        f:write("kept")
        ev:wait()
      end)
      h.until_suspended(t, "Event:wait")
      t:kill()
      h.eventually(function() return fs.stats().files == base end,
                   "the file closed")
      assert.equal("kept", get(p))
      -- an explicit close in a killed thread's cleanup closes it too
      local f
      t = green.spawn(function()
        f = assert(fs.open(p, "a"))
        f:write(" too")
        local _, e = pcall(ev.wait, ev)
        assert.is_true(f:close()) -- cannot wait: in the background
        error(e, 0)
      end)
      h.until_suspended(t, "Event:wait")
      t:kill()
      assert.equal("closed file", fs.type(f))
      settled()
      assert.equal("kept too", get(p))
    end)
  end)

  it("a heartbeat keeps running while a 64 MB file is read", function()
    green_run(function()
      local p = tmp("big")
      local f = assert(io.open(p, "wb"))
      local block = (("y"):rep(1023) .. "\n"):rep(1024)
      for _ = 1, 64 do f:write(block) end
      f:close()
      local beats, reading = 0, true
      local hb = green.spawn(function()
        while reading do
          beats = beats + 1
          green.sleep(0)
        end
      end)
      local g = assert(fs.open(p, "rb"))
      local n, r0 = 0, fs.stats().requests
      local start = beats
      while true do
        local s = g:read(1 << 20)
        if not s then break end
        n = n + #s
      end
      local refills = fs.stats().requests - r0
      local during = beats - start
      reading = false
      hb:wait()
      g:close()
      os.remove(p)
      assert.equal(64 << 20, n)
      -- every wait for the pool let the heartbeat run
      assert.is_true(refills >= 64, refills .. " refills")
      assert.is_true(during >= refills, during .. " beats, " .. refills
                     .. " refills")
    end)
  end)
  it("a reader of a regular file killed mid-request consumes nothing",
     function()
    green_run(function()
      local p = tmp("killed")
      local data = {}
      for i = 1, 20000 do data[i] = ("%07d\n"):format(i) end
      put(p, table.concat(data))
      local f = assert(fs.open(p, "rb"))
      assert.equal("0000001", f:read("l"))
      local release = hold_pool()
      local reader = green.spawn(function() return f:read(1 << 20) end)
      h.until_suspended(reader, "file:read") -- the refill is in the pool
      reader:kill()
      release()
      assert.equal(8, f:seek("cur")) -- waits for the request; nothing taken
      assert.equal("0000002", f:read("l"))
      assert.equal(20000 * 8 - 16, #f:read("a"))
      assert.is_true(f:close())
      settled()
    end)
  end)

  it("a close while another thread reads waits for the request", function()
    green_run(function()
      local r, w = fifo_pair()
      local base = fs.stats().files
      local reader = green.spawn(function() return pcall(r.read, r, "l") end)
      h.until_suspended(reader, "file:read")
      local closer = green.spawn(function() return r:close() end)
      h.until_suspended(closer, "file:close") -- its turn comes after it
      assert.equal("file", fs.type(r))
      w:write("x\n"):flush()
      -- the closer ran first: the reader finds the file closed
      assert.is_true(closer:wait())
      local ok, err = reader:wait()
      assert.is_false(ok)
      assert.matches("attempt to use a closed file", err)
      assert.equal("closed file", fs.type(r))
      assert.equal(base - 1, fs.stats().files)
      w:close()
      settled()
    end)
  end)

  it("__gc of a file with a read in flight frees it after the request",
     function()
    green_run(function()
      collectgarbage()
      settled()
      local r, w = fifo_pair()
      local base, fds = fs.stats().files, nfds()
      local reader = green.spawn(function() return r:read("l") end)
      h.until_suspended(reader, "file:read")
      reader:kill()
      reader, r = nil, nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      -- collected, but the pool still reads into its buffer
      assert.equal(base, fs.stats().files)
      assert.equal(1, fs.stats().inflight)
      w:write("lost with the file\n"):flush()
      S.one_freed(base, fds)
      w:close()
      settled()
    end)
  end)

  it("huge counts read what there is; an endless 'a' can be killed",
     function()
    green_run(function()
      local p = tmp("small")
      put(p, "small")
      local f = assert(fs.open(p))
      assert.equal("small", f:read(math.maxinteger)) -- io raises here
      assert.is_nil(f:read(1 << 40))
      f:seek("set", 2)
      assert.same({ "all", n = 1 }, table.pack(f:read(1 << 40)))
      f:close()
      -- /dev/zero never ends: read("a") grows until memory runs out (as
      -- io's does). Each refill is one request, so the reader can be
      -- killed (or a Timeout ends it); the file stays usable.
      local z = assert(fs.open("/dev/zero", "rb"))
      local r0 = fs.stats().requests
      local t = green.spawn(function() return z:read("a") end)
      while fs.stats().requests < r0 + 4 do green.sleep(0) end
      t:kill()
      assert.equal(green.GreenletExit, t:wait())
      assert.equal(("\0"):rep(1000), z:read(1000))
      assert.equal(0, z:seek("cur")) -- not negative
      local ok, err = pcall(green.with_timeout, 0.05, z.read, z, "a")
      assert.is_false(ok)
      assert.is_true(green.is_timeout(err))
      assert.equal(("\0"):rep(3), z:read(3))
      assert.is_true(z:close())
      settled()
    end)
  end)
end)

-- Run script 'src' under greenlua or stock lua5.4 (30 s at most): its
-- stdout, stderr and exit code.
local function run_on(host, src)
  if host == "lua54" then
    return h.lua54_run(src, 30)
  end
  return h.greenlua_run(src, nil, 30)
end

describe("green.fs at exit", function()
  -- A read of a FIFO nobody writes, or an open of a FIFO nobody opens,
  -- stays in libuv's pool: os.exit ends the process all the same (libuv
  -- joined its workers at exit, forever), its status and stdout kept, and
  -- a write under way is written first.
  local script = [[
    local green = require "green"
    local fs = green.fs
    local fifo, out, case = %q, %q, %q
    if case == "reading" then
      local f = assert(fs.open(fifo, "r+"))
      green.spawn(function() f:read("l") end)
    elseif case == "read killed" then
      local f = assert(fs.open(fifo, "r+"))
      assert(not pcall(green.with_timeout, 0.01, f.read, f, "l"))
    else -- "opening", with a write under way
      green.spawn(function() fs.open(fifo, "r") end)
      local w = assert(fs.open(out, "w"))
      green.spawn(function() w:write(("w"):rep(8 << 20)):flush() end)
    end
    green.sleep(0)
    io.write("bye")
    os.exit(3)
  ]]

  for _, case in ipairs({ "reading", "read killed", "opening" }) do
    for _, host in ipairs({ "greenlua", "lua54" }) do
      it(("os.exit ends the process with a FIFO %s in the pool (%s)")
         :format(case, host), function()
        local fifo, out = mkfifo(), tmp("out")
        local o, err, code = run_on(host, script:format(fifo, out, case))
        assert.equal(3, code, err)
        assert.equal("bye", o)
        if case == "opening" then
          assert.equal(8 << 20, #get(out))
        end
      end)
    end
  end
end)

describe("green.fs at exit, a write over 1 GiB", function()
  -- A write of more than 1 GiB goes as 1 GiB requests, the next from the
  -- previous one's callback: exit() runs no callback, and only the
  -- request in the pool was written. The rest is written now, all of it.
  -- (into a pipe, counted by wc: no GiB on the disk nor in this process)
  it("os.exit writes every byte of a write under way", function()
    local o, err = h.greenlua_run([[
      local green = require "green"
      -- (copying 1 GiB keeps the hub over a second under ASan: no report)
      green.debug.hub_blocking_detection(false)
      local w = assert(green.fs.open("/dev/fd/3", "w"))
      local big = ("w"):rep(1 << 30)
      green.spawn(function() w:write(big, "tail") end)
      green.sleep(0) -- its first 1 GiB in the pool
      io.stderr:write("bye")
      os.exit(3)
    ]], "3>&1 >/dev/null | wc -c", 120)
    assert.equal("bye", err)
    assert.equal(tostring((1 << 30) + 4), o:match("%d+"))
  end)
end)

describe("green.fs and signals", function()
  -- libuv starts its pool's threads at the first request, with the mask
  -- of the thread that submits it: they took none blocked, and a Ctrl-C
  -- or a SIGQUIT could run its handler there (it sets a hook on the
  -- hub's coroutine from another OS thread). Every thread but the hub's
  -- blocks them, in a forked child too (its pool starts anew).
  local script = [[
    local green = require "green"
    local function blocked_elsewhere()
      local me = green.process.getpid()
      local bad = {}
      for _, tid in ipairs(assert(green.fs.scandir("/proc/self/task"))) do
        local st = assert(green.fs.readfile("/proc/self/task/" .. tid
                                            .. "/status"))
        local blk = tonumber(st:match("SigBlk:%s*(%x+)"), 16)
        -- SIGINT is bit 1, SIGQUIT bit 2
        if tonumber(tid) ~= me and blk & 6 ~= 6 then bad[#bad + 1] = tid end
      end
      return #bad == 0, #assert(green.fs.scandir("/proc/self/task"))
    end
    assert(green.fs.stat("/")) -- the pool's first request
    local ok, n = blocked_elsewhere()
    print(ok, n > 1)
    local pid = green.fork()
    if pid == 0 then
      assert(green.fs.stat("/")) -- the child's pool's first request
      local cok, cn = blocked_elsewhere()
      os.exit(cok and cn > 1 and 0 or 5)
    end
    print(green.process.wait(pid, 30))
  ]]
  for _, host in ipairs({ "greenlua", "lua54" }) do
    it(("libuv's pool threads block Ctrl-C and SIGQUIT (%s)"):format(host),
       function()
      local o, err, code = run_on(host, script)
      assert.equal(0, code, err)
      assert.equal("true\ttrue\nexit\t0\n", o)
    end)
  end
end)

describe("green.fs at exit, bytes still buffered", function()
  -- A write under the buffer's size stays in the file's buffer until a
  -- flush or a close: exit() writes it, as it flushes C's stdio (a stock
  -- io file's bytes written before os.exit are in the file). In a child
  -- of green.fork, the bytes the parent had buffered are the parent's to
  -- write: the child writes only its own (C's stdio would write them
  -- twice).
  for _, host in ipairs({ "greenlua", "lua54" }) do
    it(("os.exit writes what green files and a patched io.open buffered "
        .. "(%s)"):format(host), function()
      local a, b, c = tmp("buf-a"), tmp("buf-b"), tmp("buf-c")
      local o, err, code = run_on(host, ([[
        local green = require "green"
        local f = assert(green.fs.open(%q, "w"))
        f:write("green ", 42, "\n")
        local g = assert(green.fs.open(%q, "w"))
        g:setvbuf("line")
        g:write("whole line\n", "no newline yet") -- the rest buffered
        green.patch { fs = true }
        local p = assert(io.open(%q, "w"))
        p:write("patched")
        io.write("bye")
        os.exit(3)
      ]]):format(a, b, c))
      assert.equal(3, code, err)
      assert.equal("bye", o)
      assert.equal("green 42\n", get(a))
      assert.equal("whole line\nno newline yet", get(b))
      assert.equal("patched", get(c))
    end)
  end

  it("a child of green.fork writes its own buffered bytes at exit, not "
     .. "the parent's", function()
    local path = tmp("buf-fork")
    local o, err, code = h.greenlua_run(([[
      local green = require "green"
      local f = assert(green.fs.open(%q, "w"))
      f:write("parent ")
      local pid = green.fork()
      if pid == 0 then
        f:write("child ")
        os.exit(0)
      end
      print(green.process.wait(pid, 30))
      f:write("end")
      f:close()
    ]]):format(path), nil, 30)
    assert.equal(0, code, err)
    assert.equal("exit\t0\n", o)
    assert.equal("child parent end", get(path))
  end)

  -- A child's exit skips the parent's exit handlers (fork.c, child_exit),
  -- fs_exit's wait for the writes in the pool among them: a write of the
  -- child's own under way when it called os.exit must be written all the
  -- same. The write goes to a FIFO the parent reads, so it cannot have
  -- ended before os.exit.
  it("a child of green.fork writes its own write under way at exit",
     function()
    local fifo = mkfifo()
    local n = 1024 * 1024
    local o, err, code = h.greenlua_run(([[
      local green = require "green"
      local pid = green.fork()
      if pid == 0 then
        local f = assert(green.fs.open(%q, "w"))
        local w = green.spawn(function() f:write(("x"):rep(%d)) end)
        local steps = 0
        while w:status() ~= "suspended" and steps < 1e6 do
          steps = steps + 1
          green.sleep(0)
        end
        assert(w:status() == "suspended", "the write never started")
        os.exit(0)
      end
      local r = assert(green.fs.open(%q, "r"))
      local got = assert(r:read("a"))
      r:close()
      print(#got, green.process.wait(pid, 30))
    ]]):format(fifo, n, fifo), nil, 30)
    assert.equal(0, code, err)
    assert.equal(n .. "\texit\t0\n", o)
  end)
end)

describe("green.fs at exit, every worker held", function()
  -- Reads of FIFOs nobody writes in every worker of libuv's pool, and a
  -- stat queued behind them: it never starts, and os.exit waited for it
  -- for ever (it took a queued request for one under way).
  for _, host in ipairs({ "greenlua", "lua54" }) do
    it(("os.exit ends the process with a request queued behind them (%s)")
       :format(host), function()
      local fifos = {}
      for i = 1, 4 do fifos[i] = mkfifo() end
      local o, err, code = run_on(host, ([[
        local green = require "green"
        local fs = green.fs
        for _, p in ipairs { %q, %q, %q, %q } do
          local f = assert(fs.open(p, "r+"))
          green.spawn(function() f:read(1) end)
        end
        green.sleep(0) -- the reads in the pool (libuv's 4 workers)
        green.spawn(function() fs.stat(".") end)
        green.sleep(0) -- the stat queued behind them
        io.write("bye")
        os.exit(3)
      ]]):format(table.unpack(fifos)))
      assert.equal(3, code, err)
      assert.equal("bye", o)
    end)
  end
end)

describe("green.fs at the end of the program and of the state", function()
  -- A read of a FIFO (or an open of one) whose thread was killed or timed
  -- out stays in libuv's pool: greenlua's end of the program waited for
  -- it (the hub was never idle), and so did the close of the state
  -- (lua_close, os.exit(c, true), the end of a lua5.4 script: the hub's
  -- last uv_run). The program ends now; the read's bytes have nobody to
  -- go to. Under the sanitizers: nothing leaks, nothing freed is touched.
  local script = [[
    local green = require "green"
    local fs = green.fs
    local fifo, case = %q, %q
    if case == "read" then
      local f = assert(fs.open(fifo, "r+"))
      assert(not pcall(green.with_timeout, 0.01, f.read, f, "l"))
    elseif case == "read collected" then
      local f = assert(fs.open(fifo, "r+"))
      assert(not pcall(green.with_timeout, 0.01, f.read, f, "l"))
      f = nil -- luacheck: ignore
      collectgarbage()
    elseif case == "read killed" then
      local f = assert(fs.open(fifo, "r+"))
      local gt = green.spawn(function() f:read("l") end)
      green.sleep(0)
      gt:kill()
    else -- "open": an open of a FIFO nobody opens
      assert(not pcall(green.with_timeout, 0.01, fs.open, fifo, "r"))
    end
    -- what the hub still does is done first
    local done = false
    green.spawn(function() green.sleep(0.01); done = true end)
    io.write("bye")
    %s
  ]]
  local ends = {
    ["the script's end"] = "",
    ["os.exit(3, true)"] = "os.exit(3, true)",
  }

  for _, case in ipairs({ "read", "read collected", "read killed",
                          "open" }) do
    for how, tail in pairs(ends) do
      for _, host in ipairs({ "greenlua", "lua54" }) do
        it(("ends with a FIFO %s abandoned in the pool: %s (%s)")
           :format(case, how, host), function()
          local o, err, code = run_on(host,
                                      script:format(mkfifo(), case, tail))
          assert.equal(tail == "" and 0 or 3, code, err)
          assert.equal("bye", o)
        end)
      end
    end
  end

  it("a thread still reading a FIFO holds greenlua's end, as a socket "
     .. "read does", function()
    local fifo = mkfifo()
    local _, _, code = h.greenlua_run(([[
      local green = require "green"
      local f = assert(green.fs.open(%q, "r+"))
      green.spawn(function() f:read("l") end)
    ]]):format(fifo), nil, 2)
    assert.equal(124, code)
  end)

  -- The loop and the file's record are kept for the request (green.c,
  -- fs.c): a read that ends after the state closed (a finalizer that runs
  -- after the hub's writes the line it waits for) writes into its buffer
  -- and posts to the loop, memory that is still there (the sanitizers
  -- would see it freed), and the process then exits as usual.
  it("a read that ends after lua_close closed the hub writes into memory "
     .. "that is still there", function()
    local o, err, code = h.lua54_run(([[
      local fifo = %q
      G = setmetatable({}, { __gc = function()
        local w = assert(io.open(fifo, "w"))
        w:write("late\n")
        w:close()
        os.execute("sleep 0.2") -- the worker's turn, if it comes
        io.write("closed")
      end })
      local green = require "green"
      local f = assert(green.fs.open(fifo, "r+"))
      assert(not pcall(green.with_timeout, 0.01, f.read, f, "l"))
    ]]):format(mkfifo()), 30)
    assert.equal(0, code, err)
    assert.equal("closed", o)
  end)
end)

describe("green.fs large writes", function()
  -- Needs 9 GB of memory and 4 GB in the temporary directory, and a
  -- minute: run with GREENLUA_SPEC_BIG=1.
  it("a write of more than 4 GiB at once is written whole", function()
    if os.getenv("GREENLUA_SPEC_BIG") ~= "1" then
      return pending("set GREENLUA_SPEC_BIG=1 (needs 9 GB of memory)")
    end
    green_run({ deadline = 600 }, function()
      local p = tmp("big")
      local s = ("x"):rep((1 << 31) - 1)
      local f = assert(fs.open(p, "w"))
      -- one buffer of 2^32 + 1 bytes: its length does not fit 32 bits
      assert.equal(f, f:write(s, s, "abc"))
      s = nil -- luacheck: ignore 311
      collectgarbage()
      assert.is_true(f:close())
      assert.equal(2 * ((1 << 31) - 1) + 3, fs.stat(p).size)
      f = assert(fs.open(p))
      f:seek("end", -5)
      assert.equal("xxabc", f:read("a"))
      f:close()
      assert.is_true(fs.unlink(p))
    end)
  end)
end)

describe("green.patch{fs = true}", function()
  it("routes io.open, io.lines, io.close and io.type through green.fs",
     function()
    local out, err, code = h.lua54_run([[
      local green = require "green"
      local std_open, std_lines = io.open, io.lines
      green.patch()
      print(io.open == std_open, io.lines == std_lines)
      green.patch{ fs = true }
      print(io.open == std_open, io.lines == std_lines)
      local p = os.tmpname()
      green.run(function()
        local f = assert(io.open(p, "w"))
        print(green.fs.type(f), io.type(f))
        f:write("a\nb\n")
        print(io.close(f), io.type(f))
        for l in io.lines(p) do io.write(l, ";") end
        print()
        print(select("#", io.lines(p)), green.fs.type(select(4, io.lines(p))))
        print(pcall(io.open, p, "rw"))
        print(io.open("/nonexistent"))
        print(pcall(io.lines, "/nonexistent"))
        print(pcall(io.close, f))
        print(pcall(io.type))
        print(pcall(io.close, 42))
        -- inside a C-call boundary a green thread waits too (native
        -- stacks): the green functions
        table.sort({ 1, 2 }, function(a, b)
          local g = io.open(p)
          print(io.type(g), green.fs.type(g), g:read("l"))
          g:close()
          for l in io.lines(p) do io.write(l, "+") end
          print()
          return a < b
        end)
        io.input(p) -- io.lines() reads the default input
        for l in io.lines() do io.write(l, ",") end
        print()
        print(io.type(io.stdout), io.type(42))
      end)
      os.remove(p)
    ]])
    assert.equal(0, code, err)
    assert.equal(table.concat({
      "true\ttrue", "false\tfalse", "file\tfile", "true\tclosed file",
      "a;b;", "4\tfile",
      "false\tbad argument #2 to 'io.open' (invalid mode)",
      "nil\t/nonexistent: No such file or directory\t2",
      "false\tcannot open file '/nonexistent' (No such file or directory)",
      "false\tattempt to use a closed file",
      "false\tbad argument #1 to 'io.type' (value expected)",
      "false\tbad argument #1 to 'io.close' (FILE* expected, got number)",
      "file\tfile\ta", "a+b+", "a,b,", "file\tnil", "" }, "\n"), out)
  end)
end)

describe("green.fs across green.fork", function()
  -- The parent has a read and a write in the thread pool (FIFOs nobody
  -- else feeds or drains) when a green thread forks. The pool's workers
  -- are not copied: in the child those requests are the parent's. The
  -- child must not wait for them -- its files work, the files they were
  -- on close, and it exits once its threads are done (an orphaned child:
  -- a request counted alive forever would keep it running) -- and the
  -- parent's requests complete in the parent, their bytes read and
  -- written once.
  it("the child's requests run; the parent's stay the parent's", function()
    local out, err, code = h.greenlua_run([[
      local green = require "green"
      local fs = green.fs
      local dir = ...
      local function expect(cond, what)
        if not cond then
          io.stderr:write("FAILED: ", what, "\n")
          os.exit(3)
        end
      end
      local function within(cond, what) -- a bounded poll
        local deadline = green.now() + 20
        while not cond() do
          expect(green.now() < deadline, what)
          green.sleep(0.005)
        end
      end
      local function pair(p)
        assert(os.execute("mkfifo " .. p))
        local w
        local t = green.spawn(function() w = assert(fs.open(p, "w")) end)
        local r = assert(fs.open(p, "r"))
        t:wait()
        return r, w
      end
      local r1, w1 = pair(dir .. "/fork-fifo1")
      local r2, w2 = pair(dir .. "/fork-fifo2")
      local big = ("W"):rep(1 << 20) -- more than a pipe holds
      local reader = green.spawn(function() return r1:read("l") end)
      local writer = green.spawn(function() return w2:write(big) end)
      within(function() return fs.stats().inflight == 2 end, "in flight")
      local status = dir .. "/fork-status"
      local forked = green.Event()
      green.spawn(function()
        local pid = green.fork()
        if pid ~= 0 then forked:send(pid) return end
        -- the child: its own requests, and the parent's files close
        local s = { fs.stats().inflight }
        assert(fs.writefile(dir .. "/fork-child", "child's"))
        s[#s + 1] = assert(fs.readfile(dir .. "/fork-child"))
        s[#s + 1] = tostring(r1:close()) -- its read was the parent's
        s[#s + 1] = tostring(w2:close()) -- its write too: not written again
        s[#s + 1] = fs.stats().inflight
        assert(fs.writefile(status .. ".tmp", table.concat(s, " ")))
        assert(fs.rename(status .. ".tmp", status))
      end)
      local pid = forked:wait()
      within(function() return fs.stat(status) end, "the child's report")
      print(fs.readfile(status))
      -- the child exits: its threads are done, nothing left in flight
      within(function()
        local st = fs.readfile("/proc/" .. pid .. "/stat")
        return not st or st:match("^%d+ %b() (%a)") == "Z"
      end, "the child's exit")
      -- the parent's requests complete here, once
      w1:write("parent's line\n"):flush()
      print(reader:wait())
      local got = r2:read(#big)
      print(writer:wait() == w2, got == big)
      w2:close()
      print(r2:read("a") == "", fs.stats().inflight)
      r1:close(); w1:close(); r2:close()
    ]], dir, 60)
    assert.equal(0, code, err)
    assert.equal("", err)
    assert.equal("2 child's true true 0\nparent's line\ntrue\ttrue\ntrue\t0\n",
                 out)
  end)
end)

describe("green.fs across green.fork: a completed read", function()
  -- The fork comes after a worker completed a read but before the hub
  -- called it back: the parent delivers those bytes, so the child must
  -- not see them too. Made deterministic by holding all workers but one:
  -- the free one does the read, then takes a queued FIFO open, which the
  -- forking thread completes with a blocking io.open -- by then the read
  -- is posted, and the hub has not turned. A scandir completed so too is
  -- the parent's: the child frees its entries as what they are (libuv's
  -- cleanup counts them with the request's result, which the child must
  -- not have made an error code first: it crashed).
  it("is the parent's: the child does not see its bytes", function()
    local list = tmp("many")
    sh("mkdir " .. list)
    for i = 1, 64 do put(("%s/entry-%03d"):format(list, i), "") end
    local out, err, code = h.greenlua_run([[
      local green = require "green"
      local fs = green.fs
      local dir, list = ...
      local n = tonumber(os.getenv("UV_THREADPOOL_SIZE")) or 4
      local seq = 0
      local function fifo()
        seq = seq + 1
        local p = dir .. "/cfork-" .. seq
        assert(os.execute("mkfifo " .. p))
        return p
      end
      local p1 = fifo()
      local w1
      local t = green.spawn(function() w1 = assert(fs.open(p1, "w")) end)
      local r1 = assert(fs.open(p1, "r"))
      t:wait()
      local holds, held = {}, {}
      for i = 1, n - 1 do
        holds[i] = fifo()
        held[i] = green.spawn(function() return fs.open(holds[i], "r") end)
      end
      local until_t = green.now() + 20 -- a bounded wait
      while fs.stats().inflight < n - 1 do
        assert(green.now() < until_t, "the FIFO opens never all started")
        green.sleep(0.001)
      end
      local reader = green.spawn(function() return r1:read("l") end)
      local lister = green.spawn(function() return fs.scandir(list) end)
      local p2 = fifo()
      local opener = green.spawn(function() return fs.open(p2, "r") end)
      green.sleep(0) -- all submitted: the read and scandir run, the open waits
      assert(fs.stats().inflight == n + 2)
      local feed = assert(io.open(p1, "w"))
      feed:write("parent's\n")
      feed:flush()
      local w2 = assert(io.open(p2, "w")) -- the worker is past the read
      local pid = green.fork()
      if pid == 0 then
        w1:write("child's\n"):flush()
        io.stdout:write("child read ", tostring(r1:read("l")), "\n")
        io.stdout:write("child listed ", #assert(fs.scandir(list)), "\n")
        io.stdout:flush()
        return
      end
      print("parent read " .. reader:wait())
      print("parent listed " .. #lister:wait())
      local ws = {}
      for i = 1, n - 1 do ws[i] = assert(io.open(holds[i], "w")) end
      for i = 1, n - 1 do assert(held[i]:wait()):close(); ws[i]:close() end
      assert(opener:wait()):close()
      w2:close(); feed:close(); w1:close(); r1:close()
      local deadline = green.now() + 20
      while true do -- the child's exit
        local st = fs.readfile("/proc/" .. pid .. "/stat")
        if not st or st:match("^%d+ %b() (%a)") == "Z" then break end
        assert(green.now() < deadline, "the child did not exit")
        green.sleep(0.005)
      end
    ]], dir .. " " .. list, 60)
    assert.equal(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    table.sort(lines)
    assert.same({ "child listed 64", "child read child's", "parent listed 64",
                  "parent read parent's" }, lines)
  end)
end)

describe("examples/fs_copy.lua", function()
  it("copies a file while the heartbeat beats", function()
    local out, err, code = h.greenlua_run(
      assert(io.open("examples/fs_copy.lua")):read("a"))
    assert.equal(0, code, err)
    local bytes, pieces, beats = out:match(
      "^copied (%d+) bytes in (%d+) pieces; the heartbeat beat (%d+) times")
    assert.equal("33554432", bytes, out)
    assert.equal("32", pieces)
    -- each piece waited for a read and a write: the heartbeat ran then
    assert.is_true(tonumber(beats) >= 2 * 32, out)
    -- a given file of an odd size, under stock lua5.4
    local src, dst = os.tmpname(), os.tmpname()
    local data = {}
    for i = 1, 100000 do data[i] = ("%05d\n"):format(i % 99991) end
    data = table.concat(data) .. "tail"
    put(src, data)
    out, err, code = h.sh(
      "LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='"
      .. (os.getenv("GREENLUA_BUILD") or "./build") .. "/?.so;;' "
      .. "lua5.4 examples/fs_copy.lua " .. src .. " " .. dst)
    assert.equal(0, code, err)
    assert.matches("^copied " .. #data .. " bytes in 1 pieces", out)
    assert.is_true(get(dst) == data)
    os.remove(src)
    os.remove(dst)
  end)
end)
