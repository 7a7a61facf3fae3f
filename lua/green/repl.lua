--- The read-eval-print loop of `greenlua -i` and of `green.backdoor`, on
-- any line source: lines run as in lua5.4's interactive mode (an
-- expression prints its values, an incomplete statement asks for more),
-- errors are printed with a traceback and never end the loop.
-- Internal module; its API may change.
-- @module green.repl

local load, pcall, xpcall, select, tostring, type, getmetatable =
  load, pcall, xpcall, select, tostring, type, getmetatable
local pack, unpack, concat = table.pack, table.unpack, table.concat
local format = string.format

local M = {}

--- As lua.c's msghandler: a traceback for strings and objects with a
-- __tostring, and the driver's own frames hidden.
function M.msghandler(msg)
  if type(msg) ~= "string" then
    local mt = getmetatable(msg)
    local ok, s = pcall(function() return mt and mt.__tostring
                                          and tostring(msg) end)
    if not ok or type(s) ~= "string" then
      return format("(error object is a %s value)", type(msg))
    end
    msg = s
  end
  local tb = debug.traceback(msg, 2)
  return (tb:gsub("\n%s*%[C%]: in function 'xpcall'.*$", ""))
end

--- The values as print would show them, or nil and the error of a
-- __tostring that raised.
function M.format_values(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    local ok, s = pcall(tostring, (select(i, ...)))
    if not ok then return nil, s end
    parts[i] = s
  end
  return concat(parts, "\t")
end

--- Compile one input: a line, and more lines from `more()` while the
-- statement is incomplete. Returns the chunk, or nil and the message
-- (nil, nil when `more` ran out: the input ended mid-statement).
-- @tparam string line the first line
-- @tparam function more returns the next line, or nil at the end
-- @tparam string name the chunk name ("=stdin")
-- @param env the environment of the chunk (nil: the globals)
function M.compile(line, more, name, env)
  local chunk = load("return " .. line, name, "t", env)
  if chunk then return chunk end
  local err
  local buf = line
  while true do
    chunk, err = load(buf, name, "t", env)
    if chunk or not err:find("<eof>$") then break end
    local next_line = more()
    if next_line == nil then return nil, nil end
    buf = buf .. "\n" .. next_line
  end
  return chunk, err
end

--- Run a compiled chunk; returns true and its results packed, or false
-- and the error message with its traceback.
function M.run(chunk)
  local r = pack(xpcall(chunk, M.msghandler))
  if not r[1] then return false, r[2] end
  return true, r
end

--- The loop: `io` has `read(prompt)` (the next line, or nil at the end),
-- `write(s)` for results and `error(s)` for messages; `env` is the
-- chunks' environment (nil: the globals); `name` the chunk name.
-- Returns when `read` returns nil.
function M.loop(io, env, name)
  -- The prompt `_PROMPT` or `_PROMPT2` names, as a string: a value that
  -- tostring cannot turn into one (its __tostring raises or returns no
  -- string) gives the default rather than ending the loop.
  local function prompt(key, default)
    local p = env and env[key] or _G[key]
    if p == nil then return default end
    local ok, s = pcall(tostring, p)
    if ok and type(s) == "string" then return s end
    return default
  end
  local function more()
    return io.read(prompt("_PROMPT2", ">> "))
  end
  while true do
    local line = io.read(prompt("_PROMPT", "> "))
    if line == nil then return end
    local chunk, err = M.compile(line, function()
      local m = more()
      if m ~= nil then m = tostring(m) end
      return m
    end, name or "=stdin", env)
    if chunk then
      local ok, r = M.run(chunk)
      if not ok then
        io.error(r)
      elseif r.n > 1 then
        local s, ferr = M.format_values(unpack(r, 2, r.n))
        if s then
          io.write(s .. "\n")
        else
          io.error("error calling 'print' (" .. tostring(ferr) .. ")")
        end
      end
    elseif err then
      io.error(err)
    else
      return -- the input ended inside a statement
    end
  end
end

return M
