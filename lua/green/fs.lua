--- green.fs: files and file-system calls that do their I/O off the hub.
-- `green.fs.open` returns a file with the methods of Lua's own files;
-- the other functions act on paths. The I/O runs on libuv's thread pool
-- while the calling green thread waits (bindings/fs.c, fspath.c); failures
-- return `nil, message, errno` as `io.open` does. See docs/api.md, "Files".
-- @module green.fs

local core = require "green.core"

local cfs = core.fs
local type, tostring = type, tostring

local fs = {
  open = cfs.open,
  lines = cfs.lines,
  type = cfs.type,
  stats = cfs.stats,
  stat = cfs.stat,
  lstat = cfs.lstat,
  rename = cfs.rename,
  unlink = cfs.unlink,
  mkdir = cfs.mkdir,
  rmdir = cfs.rmdir,
  scandir = cfs.scandir,
  realpath = cfs.realpath,
}

local function checkstring(v, n, fname)
  local t = type(v)
  if t == "number" then return tostring(v) end
  if t ~= "string" then
    error(("bad argument #%d to '%s' (string expected, got %s)")
          :format(n, fname, v == nil and "no value" or t), 3)
  end
  return v
end

-- A path as the C functions check it (bindings/fs.c, lgfs_checkpath).
local function checkpath(v, n, fname)
  v = checkstring(v, n, fname)
  if v:find("\0", 1, true) then
    error(("bad argument #%d to '%s' (path contains a zero byte)")
          :format(n, fname), 3)
  end
  return v
end

--- The contents of the file at `path`, or nil, message, errno.
function fs.readfile(path)
  path = checkpath(path, 1, "readfile")
  local f, err, code = cfs.open(path, "rb")
  if not f then return nil, err, code end
  local _ <close> = f
  local data
  data, err, code = f:read("a")
  if data == nil then return nil, path .. ": " .. err, code end
  return data
end

--- Replace the contents of the file at `path` (created if need be) with
-- `data`; true, or nil, message, errno.
function fs.writefile(path, data)
  path = checkpath(path, 1, "writefile")
  data = checkstring(data, 2, "writefile")
  local f, err, code = cfs.open(path, "wb")
  if not f then return nil, err, code end
  local _ <close> = f
  local ok
  ok, err, code = f:write(data)
  if not ok then return nil, path .. ": " .. err, code end
  ok, err, code = f:close()
  if not ok then return nil, path .. ": " .. err, code end
  return true
end

return fs
