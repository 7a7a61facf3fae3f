-- Errors in threads the toolkit spawns are reported like any other, with
-- the user's spawn site, unless the toolkit hands them to a consumer.
local green = require "green"

local function collect(fn)
  local reports = {}
  local old = green.on_error(function(gt, err)
    reports[#reports + 1] = { site = green.core.site(gt), err = err }
  end)
  local ok, err = pcall(green.run, fn)
  green.on_error(old)
  assert.is_true(ok, err)
  return reports
end

describe("error reporting through the toolkit", function()
  it("reports a GreenPool thread's error that nobody waits for", function()
    local line
    local reports = collect(function()
      local pool = green.GreenPool(2)
      line = debug.getinfo(1, "l").currentline + 1
      pool:spawn(function() error("pool thread failed") end)
      pool:waitall()
    end)
    assert.are.equal(1, #reports)
    assert.matches("pool thread failed", reports[1].err)
    assert.are.equal("spec/reporting_spec.lua:" .. line, reports[1].site)
  end)

  it("does not report a GreenPool thread's error that wait observes",
     function()
    local reports = collect(function()
      local pool = green.GreenPool(2)
      local t = pool:spawn(function() green.sleep(0); error("seen") end)
      assert.has_error(function() t:wait() end)
    end)
    assert.are.equal(0, #reports)
  end)

  it("imap and GreenPile raise errors at the item, without reporting",
     function()
    local reports = collect(function()
      local pool = green.GreenPool(2)
      local it = pool:imap(function(x)
        if x == 2 then error("item two") end
        return x
      end, { 1, 2, 3 })
      assert.are.equal(1, it())
      assert.has_error(function() it() end, nil)
      local pile = green.GreenPile(2)
      pile:spawn(function() error("pile item") end)
      assert.has_error(function() pile:next() end)
    end)
    assert.are.equal(0, #reports)
  end)
end)
