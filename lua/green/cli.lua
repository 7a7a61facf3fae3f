--- The `greenlua` command line (called by runtime/main.c): lua5.4's
-- options and REPL, with the main chunk running as a green thread.
-- @module green.cli

local green = require "green"
local core = green.core

local cli = {}

local progname = "greenlua"

local function message(msg)
  io.stderr:write(progname, ": ", msg, "\n")
  io.stderr:flush()
end

-- As lua.c's msghandler: a traceback for strings and __tostring objects.
local function msghandler(msg)
  if type(msg) ~= "string" then
    local mt = getmetatable(msg)
    local s = mt and mt.__tostring and tostring(msg)
    if type(s) ~= "string" then
      return string.format("(error object is a %s value)", type(msg))
    end
    msg = s
  end
  -- The frames below the chunk are this driver's: hide them, as lua.c
  -- has none to show.
  local tb = debug.traceback(msg, 2)
  return (tb:gsub("\n%s*%[C%]: in function 'xpcall'.*$", ""))
end

local function docall(fn, ...)
  local r = table.pack(xpcall(fn, msghandler, ...))
  if not r[1] then
    message(r[2])
    return false
  end
  return true, r
end

local function dochunk(chunk, err)
  if not chunk then
    message(err)
    return false
  end
  return (docall(chunk))
end

local function version()
  io.stdout:write("greenlua ", green.version, " (", _VERSION, ") ",
                  "-- green threads on libuv\n")
  io.stdout:flush()
end

local function dolibrary(spec)
  local name, mod = spec:match("^([^=]+)=(.+)$")
  if not name then
    name, mod = spec, spec
  end
  return docall(function()
    _G[name] = require(mod)
  end)
end

-- One line of the prompt; an interrupted read just shows a new prompt.
local function readline(prompt)
  local ok, line = pcall(core.readline, prompt)
  if not ok then
    io.stdout:write("\n")
    message(tostring(line))
    return false
  end
  return line
end

local function repl()
  while true do
    local line = readline(_G._PROMPT and tostring(_G._PROMPT) or "> ")
    if line == nil then
      io.stdout:write("\n")
      return
    end
    if line then
      local chunk, err = load("return " .. line, "=stdin")
      if not chunk then
        local buf = line
        while true do
          chunk, err = load(buf, "=stdin")
          if chunk or not err:find("<eof>$") then break end
          local more = readline(_G._PROMPT2 and tostring(_G._PROMPT2) or ">> ")
          if not more then break end
          buf = buf .. "\n" .. more
        end
      end
      if not chunk then
        message(err)
      else
        local ok, r = docall(chunk)
        if ok and r.n > 1 then
          local printok, perr = pcall(print, table.unpack(r, 2, r.n))
          if not printok then
            message("error calling 'print' (" .. tostring(perr) .. ")")
          end
        end
      end
    end
  end
end

-- The main chunk: everything lua.c's pmain does after option parsing.
local function run(argv, script, interactive, showversion, has_e, warnings)
  local argc = #argv + 1
  if warnings then warn("@on") end
  if showversion then version() end
  local noenv = false
  for i = 1, script - 1 do
    if argv[i] == "-E" then noenv = true end
  end
  if not noenv then
    local init = os.getenv("LUA_INIT_5_4") or os.getenv("LUA_INIT")
    if init then
      local ok
      if init:sub(1, 1) == "@" then
        ok = dochunk(loadfile(init:sub(2)))
      else
        ok = dochunk(load(init, "=LUA_INIT"))
      end
      if not ok then return 1 end
    end
  end
  local i = 1
  while i < script do
    local opt = argv[i]
    local o = opt:sub(2, 2)
    if o == "e" or o == "l" then
      local extra = opt:sub(3)
      if extra == "" then
        i = i + 1
        extra = argv[i]
      end
      local ok
      if o == "e" then
        ok = dochunk(load(extra, "=(command line)"))
      else
        ok = dolibrary(extra)
      end
      if not ok then return 1 end
    end
    i = i + 1
  end
  if script < argc then
    local fname = argv[script]
    if fname == "-" and argv[script - 1] ~= "--" then fname = nil end
    local chunk, err = loadfile(fname)
    if not chunk then
      message(err)
      return 1
    end
    if not docall(chunk, table.unpack(argv, script + 1, argc - 1)) then
      return 1
    end
  end
  if interactive then
    repl()
  elseif script == argc and not has_e and not showversion then
    if core.isatty(0) then
      version()
      repl()
    else
      if not dochunk(loadfile(nil)) then return 1 end
    end
  end
  return 0
end

--- Entry point: run the command line, then the hub until it is idle.
-- @treturn integer the process exit status
function cli.main(argv, script, interactive, showversion, has_e, warnings)
  progname = argv[0] or progname
  local main = green.spawn(run, argv, script, interactive, showversion,
                           has_e, warnings)
  main.name = "main"
  core.observe(main)
  core.interrupt_target(main)
  local ok, status = pcall(main.wait, main)
  if not ok then
    message(tostring(status))
    return 1
  end
  if status ~= 0 then return status end
  ok, status = pcall(green.run)
  if not ok then
    message(tostring(status))
    return 1
  end
  return 0
end

return cli
