--- The check of an options table's names, shared by every public function
-- written in Lua that takes one (bindings/lgreen.c's lgreen_checkopts is
-- the C functions'): a misspelt option raises instead of leaving its
-- default in place without a word, as a Python keyword argument would.
-- Internal module; its API may change.
-- @module green.opts

local type, next, error, rawget = type, next, error, rawget
local format = string.format
local getmetatable = debug.getmetatable

local M = {}

--- Raise `bad argument #arg to 'fname' (unknown option 'k')` for a key of
-- `opts` (a table) that is not a key of the set `known` (`{name = true}`),
-- `(option name expected, got number)` for one that is not a string;
-- `level` as error's, counted from the function that calls check (2: its
-- caller); `prefix` names a table nested in the argument (`"tls."`:
-- `unknown option 'tls.cafil'`). One table lookup per key. Returns opts.
function M.check(opts, known, arg, fname, level, prefix)
  for k in next, opts do
    if known[k] == nil then
      error(format("bad argument #%d to '%s' (%s)", arg, fname,
                   type(k) == "string"
                   and format("unknown option '%s%s'", prefix or "", k)
                   or "option name expected, got " .. type(k)), level + 1)
    end
  end
  return opts
end

--- The `tls` option of the HTTP client and green.http.websocket: a table
-- of TLS options (M.tls), its names checked as the function is called,
-- not at the first https:// connection; `level` as check's.
function M.check_tls(t, arg, fname, level)
  if type(t) ~= "table" then
    error(format("bad argument #%d to '%s' (tls: table expected, got %s)",
                 arg, fname, type(t)), level + 1)
  end
  M.check(t, M.tls, arg, fname, level + 1, "tls.")
end

--- Whether `fn` can be called as Lua calls it: a function, or a value
-- whose metatable has a raw `__call` (a callable table or userdata, as
-- eventlet takes any callable). The Lua modules' one check of a function
-- argument; bindings/lgreen.c's lgreen_iscallable is the C functions'.
local function callable(fn)
  if type(fn) == "function" then return true end
  local mt = getmetatable(fn)
  return type(mt) == "table" and rawget(mt, "__call") ~= nil
end
M.callable = callable

--- Raise `bad argument #arg to 'fname' (function expected, got T)` (Lua's
-- own wording: T is the value's `__name` if it has one) unless `fn` is
-- callable; nil passes too with `optional`. `field` names an option of
-- the table argument (`create: function expected, got T`); `level` as in
-- check. Returns fn.
function M.callable_arg(fn, arg, fname, level, optional, field)
  if callable(fn) or (optional and fn == nil) then return fn end
  local mt = getmetatable(fn)
  local tname = type(mt) == "table" and rawget(mt, "__name")
  if type(tname) ~= "string" then tname = type(fn) end
  error(format("bad argument #%d to '%s' (%sfunction expected, got %s)",
               arg, fname, field and field .. ": " or "", tname),
        level + 1)
end

--- The TLS options (docs/api.md "TLS") and the type each takes (a set of
-- types for server_name): lua/green/tls.lua checks them; the HTTP client
-- and green.http.websocket check the names of their `tls` table as they
-- are called, not at the first https:// connection.
M.tls = {
  mode = "string", server_name = { string = true, boolean = true },
  verify = "boolean",
  cafile = "string", capath = "string", ca = "string",
  certificate = "string", key = "string", alpn = "table",
  min_protocol = "string", max_protocol = "string", ciphers = "string",
  context = "table", handshake_timeout = "number",
}

--- The options of green.connect and green.listen (bindings/tcp.c reads
-- all but `tls`, lua/green/tls.lua that one): checked in Lua, by both
-- ways in (init.lua's plain one, tls.lua's), so the error is at the
-- caller's line either way.
M.connect = { timeout = true, family = true, tls = true }
M.listen = { timeout = true, family = true, backlog = true,
             reuseport = true, ipv6only = true, tls = true }

return M
