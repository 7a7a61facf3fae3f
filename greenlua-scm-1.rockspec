-- The greenlua rock: the `green` module (lua/green/*.lua and the C module
-- green/core.so) and the `greenlua` executable, built by CMakeLists.txt
-- (the build of record). From a checkout:
--
--   luarocks --lua-version 5.4 --tree /tmp/tree make
--   eval "$(luarocks --lua-version 5.4 --tree /tmp/tree path)"
--   lua5.4 -e 'require "green"'     or     greenlua script.lua
--
-- libuv and c-ares are system libraries (Debian: libuv1-dev,
-- libc-ares-dev, pkg-config), found through pkg-config; nothing is fetched.
rockspec_format = "3.0"
package = "greenlua"
version = "scm-1"

-- `luarocks make` builds the checkout it runs in and never fetches this.
-- The project has no published repository yet: `luarocks build` and
-- `luarocks pack` need the real address here once it has one.
source = {
  url = "git+file:///dev/null/greenlua-unpublished",
}

description = {
  summary = "Green threads for Lua 5.4 on libuv (eventlet's model)",
  detailed = [[
A C hub on libuv runs Lua coroutines as green threads: sockets, timers,
DNS (c-ares), events, queues, pools and a LuaSocket-compatible layer, for
stock lua5.4 (require "green") and the greenlua executable, whose main
chunk runs as a green thread.]],
}

dependencies = {
  "lua >= 5.4, < 5.5",
}

-- Checked by LuaRocks before building (a clear "could not find" instead of
-- a compiler error); LIBUV_DIR=... or LIBCARES_DIR=... on the luarocks
-- command line point it, and CMake's pkg-config search, elsewhere.
external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
  LIBCARES = { header = "ares.h", library = "cares" },
}

build = {
  type = "cmake",
  variables = {
    CMAKE_C_FLAGS = "$(CFLAGS)",
    CMAKE_PREFIX_PATH = "$(LIBUV_DIR);$(LIBCARES_DIR)",
    -- LuaRocks installs into the rock's directory (lua/, lib/, bin/) and
    -- then moves the files into the tree: share/lua/5.4, lib/lua/5.4, bin.
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CMAKE_INSTALL_BINDIR = "$(BINDIR)",
    GREENLUA_INSTALL_LMOD_DIR = "$(LUADIR)",
    GREENLUA_INSTALL_CMOD_DIR = "$(LIBDIR)",
    -- ...so greenlua looks for its modules where they end up in the tree.
    GREENLUA_EXE_LMOD_DIR = "../share/lua/5.4",
    GREENLUA_EXE_CMOD_DIR = "../lib/lua/5.4",
    GREENLUA_TESTS = "OFF",
  },
}
