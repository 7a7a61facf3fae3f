-- Packaging (issue 15): `cmake --install` puts every file under its
-- prefix (or DESTDIR) and nothing anywhere else; the installed tree still
-- works once moved, with greenlua and with stock lua5.4 on the installed
-- paths only; and the rockspec builds and installs with LuaRocks into a
-- tree that works the same way. Everything goes into temporary directories
-- the spec removes; the LuaRocks build runs in a copy of the checkout.
local h = require "helper"

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Run `cmd`; fail the spec with its output unless it exits 0.
local function sh_ok(cmd, limit)
  local out, err, code = h.sh(cmd, limit)
  assert(code == 0, string.format("exit %s from: %s\nstdout:\n%s\nstderr:\n%s",
                                  tostring(code), cmd, out, err))
  return out
end

-- Run a tool (coreutils, cmake, luarocks...) with `sh_ok`, without the
-- sanitizer runtime that the ASan run of the suite preloads into
-- everything (.ci/run): under it, tools report their own leaks and fail.
-- What they install is run with it still in place.
local function tool(cmd, limit)
  return sh_ok("unset LD_PRELOAD; " .. cmd, limit)
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  table.sort(t)
  return t
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- The canonical path of `path` (it must exist).
local function real(path)
  return (tool("realpath " .. quote(path)):gsub("\n$", ""))
end

local root = real(".")
local build = os.getenv("GREENLUA_BUILD") or "./build"
build = real(build:sub(1, 1) == "/" and build or root .. "/" .. build)
local hello = root .. "/examples/hello.lua"

-- For what LuaRocks builds: it is not instrumented.
local plain = "env -u LD_PRELOAD "
-- Only what a command is given: no module path from the environment.
local nopaths = "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 "
                .. "-u LUA_CPATH_5_4 -u GREENLUA_BUILD "

-- A fresh temporary directory, removed when the running `it` ends.
local function tmpdir()
  local out, err, code = h.sh("unset LD_PRELOAD; mktemp -d")
  local dir = out:match("^(/[^\n]*/tmp%.%w+)\n$") -- what rm -rf gets
  if dir then
    finally(function() h.sh("unset LD_PRELOAD; rm -rf " .. quote(dir)) end)
  end
  assert(code == 0 and dir, "mktemp -d: " .. out .. err)
  return real(dir)
end

-- Every file and symlink under `dir`, sorted.
local function files_under(dir)
  return lines(tool("find " .. quote(dir) .. " ! -type d"))
end

-- hello.lua ran: the sleeps overlapped, the results came in spawn order.
local function assert_hello(out)
  local wakes, results = {}, {}
  for name in out:gmatch("(%a+)%s+wakes") do wakes[#wakes + 1] = name end
  for r in out:gmatch("result:\t(%u+)") do results[#results + 1] = r end
  assert.are.same({ "blue", "green", "red" }, wakes, out)
  assert.are.same({ "RED", "GREEN", "BLUE" }, results, out)
  assert.matches("all done in", out)
end

-- Where `require` finds green and green.core, then hello.lua's output.
local WHERE = "print(package.searchpath('green', package.path)); "
              .. "print(package.searchpath('green.core', package.cpath))"

-- Run hello.lua from `cwd` (a directory of nothing) with `cmd` (a
-- greenlua or lua5.4 command line); return where green came from, where
-- green.core came from (nil under greenlua, which has it built in and
-- may find no core.so) and hello's output.
local function run_hello(cwd, cmd)
  local out = sh_ok("cd " .. quote(cwd) .. " && " .. cmd .. " -e "
                    .. quote(WHERE) .. " " .. quote(hello))
  local lua, cmod, rest = out:match("^([^\n]*)\n([^\n]*)\n(.*)$")
  assert(lua, out)
  return lua, cmod, rest
end

describe("cmake --install", function()
  it("--prefix P: every file goes under P, and the tree works moved "
     .. "elsewhere, with greenlua and with lua5.4", function()
    local tmp = tmpdir()
    local prefix = tmp .. "/prefix"
    tool("cmake --install " .. quote(build) .. " --prefix " .. quote(prefix))
    local manifest = lines(read(build .. "/install_manifest.txt"))
    local bin, lmod, cmod
    for _, f in ipairs(manifest) do
      assert(f:sub(1, #prefix + 1) == prefix .. "/",
             "installed outside the prefix " .. prefix .. ": " .. f)
      local rel = f:sub(#prefix + 2)
      bin = bin or rel:match("^(.*)/greenlua$")
      lmod = lmod or rel:match("^(.*)/green/init%.lua$")
      cmod = cmod or rel:match("^(.*)/green/core%.so$")
    end
    -- What is there is exactly what the manifest lists.
    assert.are.same(manifest, files_under(prefix))
    -- The layout Lua's default paths and LuaRocks trees use.
    assert.are.equal("bin", bin)
    assert.are.equal("share/lua/5.4", lmod)
    assert.matches("^lib.*/lua/5%.4$", cmod)
    for _, m in ipairs({ "cli", "socket", "pool", "debug" }) do
      assert.is_not_nil(read(prefix .. "/" .. lmod .. "/green/" .. m
                             .. ".lua"))
    end

    -- Moved, the tree still works: nothing in it points at where it was
    -- installed, and nothing on the paths points into the build tree.
    local moved = tmp .. "/elsewhere/tree"
    tool("mkdir " .. quote(tmp .. "/elsewhere") .. " && mv "
         .. quote(prefix) .. " " .. quote(moved))
    local empty = tmp .. "/cwd"
    tool("mkdir " .. quote(empty))

    local greenlua = quote(moved .. "/bin/greenlua")
    local lua, _, out = run_hello(empty, nopaths .. greenlua)
    assert.are.equal(moved .. "/share/lua/5.4/green/init.lua", lua)
    assert_hello(out)
    -- Its C module directory comes first on package.cpath too.
    local cpath = sh_ok(nopaths .. greenlua .. " -e 'print(package.cpath)'")
    assert.are.equal(moved .. "/" .. cmod .. "/?.so;",
                     cpath:sub(1, #moved + #cmod + 7))

    local paths = string.format(
      "LUA_PATH=%s LUA_CPATH=%s ",
      quote(moved .. "/share/lua/5.4/?.lua;"
            .. moved .. "/share/lua/5.4/?/init.lua"),
      quote(moved .. "/" .. cmod .. "/?.so"))
    local core
    lua, core, out = run_hello(empty, nopaths .. paths .. "lua5.4")
    assert.are.equal(moved .. "/share/lua/5.4/green/init.lua", lua)
    assert.are.equal(moved .. "/" .. cmod .. "/green/core.so", core)
    assert_hello(out)

    -- greenlua copied alone, away from its modules, finds them through
    -- LUA_PATH.
    tool("cp " .. quote(moved .. "/bin/greenlua") .. " " .. quote(empty))
    lua, _, out = run_hello(empty, nopaths .. paths .. "./greenlua")
    assert.are.equal(moved .. "/share/lua/5.4/green/init.lua", lua)
    assert_hello(out)

    -- The installed greenlua's help.
    out = sh_ok(nopaths .. greenlua .. " --help")
    assert.matches("^usage: ", out)
  end)

  it("DESTDIR=D: every file goes under D, below the configured prefix",
     function()
    local dest = tmpdir() .. "/stage"
    tool("DESTDIR=" .. quote(dest) .. " cmake --install " .. quote(build))
    local prefix = read(build .. "/CMakeCache.txt")
      :match("\nCMAKE_INSTALL_PREFIX:[%w]+=([^\n]*)")
    assert(prefix and prefix:sub(1, 1) == "/", prefix)
    -- The manifest names the files as they will be once D is unpacked.
    local expected = {}
    for _, f in ipairs(lines(read(build .. "/install_manifest.txt"))) do
      assert(f:sub(1, #prefix + 1) == prefix .. "/",
             "installed outside the prefix " .. prefix .. ": " .. f)
      expected[#expected + 1] = dest .. f
    end
    table.sort(expected)
    assert.are.same(expected, files_under(dest))
    local function has(rel)
      for _, f in ipairs(expected) do
        if f == dest .. prefix .. "/" .. rel then return true end
      end
      return false
    end
    assert.is_true(has("bin/greenlua"))
    assert.is_true(has("share/lua/5.4/green/init.lua"))
  end)
end)

describe("luarocks make", function()
  it("builds the rockspec in a copy of the checkout and installs into a "
     .. "tree where lua5.4 and greenlua run hello.lua", function()
    local _, _, missing = h.sh("command -v luarocks")
    assert(missing == 0, "luarocks is not installed (bash .ci/setup)")
    local tmp = tmpdir()
    local src, tree = tmp .. "/src", tmp .. "/tree"
    -- A clean checkout: what git tracks plus new files it does not ignore.
    tool("mkdir " .. quote(src) .. " && cd " .. quote(root)
         .. " && git ls-files -co --exclude-standard -z"
         .. " | tar --null --ignore-failed-read -T - -cf - 2>/dev/null"
         .. " | tar -xf - -C " .. quote(src))
    assert.is_not_nil(read(src .. "/greenlua-scm-1.rockspec"))
    -- HOME: no user configuration or cache of the machine's takes part.
    local home = "HOME=" .. quote(tmp) .. " "
    tool("cd " .. quote(src) .. " && " .. home
         .. "CMAKE_BUILD_PARALLEL_LEVEL=2 luarocks --lua-version 5.4 --tree "
         .. quote(tree) .. " make greenlua-scm-1.rockspec", 170)
    for _, f in ipairs({ "bin/greenlua", "share/lua/5.4/green/init.lua",
                         "share/lua/5.4/green/cli.lua",
                         "lib/lua/5.4/green/core.so" }) do
      tool("test -f " .. quote(tree .. "/" .. f))
    end

    local empty = tmp .. "/cwd"
    tool("mkdir " .. quote(empty))
    -- Only the paths `luarocks path` gives.
    local env = "unset LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4 "
                .. "GREENLUA_BUILD LD_PRELOAD && export " .. home .. "&& "
    local lua, core, out = run_hello(empty, env .. string.format(
      "eval \"$(luarocks --lua-version 5.4 --tree %s path)\" && lua5.4",
      quote(tree)))
    assert.are.equal(tree .. "/share/lua/5.4/green/init.lua", lua)
    assert.are.equal(tree .. "/lib/lua/5.4/green/core.so", core)
    assert_hello(out)

    -- greenlua from the tree, with no paths at all.
    lua, _, out = run_hello(empty, plain .. nopaths
                            .. quote(tree .. "/bin/greenlua"))
    assert.are.equal(tree .. "/share/lua/5.4/green/init.lua", lua)
    assert_hello(out)
  end)
end)
