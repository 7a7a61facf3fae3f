-- A blocking C library off the hub: SQLite through Debian's lua-dbi-sqlite3,
-- queried with green.tpool.execute while a heartbeat keeps its cadence.
--
-- Every call into the driver blocks its OS thread until SQLite is done. On
-- the hub that would stop every green thread; on a worker it stops only
-- that worker. The functions below run in the workers' own Lua states:
-- they may have no upvalues, get what they need as arguments, and require
-- the driver there (the host's package.path and cpath). Each worker keeps
-- its connection in its state's globals, so it connects once; two queries
-- at once run on two workers.
--
-- Run: ./build/greenlua examples/tpool_sqlite.lua [rows]
local green = require "green"
local tpool = green.tpool

local ROWS = tonumber(arg and arg[1]) or 10000
local INTERVAL = 0.1

-- Runs on a worker. A function run in the pool is copied into the
-- worker's Lua state, so it may have no upvalues: this one does it all.
-- It connects once per worker (the connection stays in that state's
-- globals), then creates the table (`what` is "create") or runs the query
-- `what` with its parameters and returns the rows as tables.
local function on_worker(path, what, ...)
  local DBI = require "DBI"
  local conns = rawget(_G, "dbi_connections")
  if not conns then
    conns = {}
    rawset(_G, "dbi_connections", conns)
  end
  local dbh = conns[path]
  if not dbh then
    dbh = assert(DBI.Connect("SQLite3", path))
    conns[path] = dbh
  end
  if what == "create" then
    local rows = ...
    dbh:autocommit(false)
    assert(DBI.Do(dbh, "CREATE TABLE instances (id INTEGER PRIMARY KEY, "
                       .. "host TEXT, vcpus INTEGER, state TEXT)"))
    local insert = assert(dbh:prepare("INSERT INTO instances (host, "
                                      .. "vcpus, state) VALUES (?, ?, ?)"))
    for i = 1, rows do
      assert(insert:execute(string.format("compute-%02d", i % 20),
                            i % 8 + 1, i % 11 == 0 and "error" or "active"))
    end
    insert:close()
    assert(dbh:commit())
    return rows
  end
  local sth = assert(dbh:prepare(what))
  assert(sth:execute(...))
  local rows = {}
  for row in sth:rows(true) do
    local copy = {}
    for k, v in pairs(row) do copy[k] = v end
    rows[#rows + 1] = copy
  end
  sth:close()
  return rows
end

local db = os.tmpname() -- a temporary file for the database
local beats, gap, stop = 0, 0, false
local hb = green.spawn(function()
  local last = green.now()
  while not stop do
    green.sleep(INTERVAL)
    local now = green.now()
    gap = math.max(gap, now - last)
    beats = beats + 1
    last = now
  end
end)
hb.name = "heartbeat"
green.sleep(INTERVAL * 1.5)

local t0 = green.now()
tpool.execute(on_worker, db, "create", ROWS)
print(string.format("created %d instances in %s (%.2f s, on a worker)",
                    ROWS, db, green.now() - t0))

-- Two reports at once, each on its own worker; the heartbeat goes on.
local before = beats
t0 = green.now()
local pile = green.GreenPile()
pile:spawn(tpool.execute, on_worker, db,
           "SELECT count(*) AS pairs FROM instances a JOIN instances b "
           .. "ON a.vcpus = b.vcpus AND a.host < b.host")
pile:spawn(tpool.execute, on_worker, db,
           "SELECT host, count(*) AS n, sum(vcpus) AS vcpus FROM instances "
           .. "WHERE state = ? GROUP BY host ORDER BY vcpus DESC, host "
           .. "LIMIT 3", "active")
local pairs_rows, busiest = pile:next(), pile:next()
local elapsed, during = green.now() - t0, beats - before
print(string.format("same-flavour pairs across hosts: %d", pairs_rows[1].pairs))
for _, r in ipairs(busiest) do
  print(string.format("busiest: %s, %d active instances, %d vcpus", r.host,
                      r.n, r.vcpus))
end
stop = true
hb:wait()
print(string.format("heartbeat: %d beats while the queries ran (%.2f s), "
                    .. "largest gap %.2f s (interval %.2f s)", during,
                    elapsed, gap, INTERVAL))
os.remove(db)
