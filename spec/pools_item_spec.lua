-- pools.Pool:item(): a handle must not reach its item once it was put back
-- (the item may already belong to another thread).
local green = require "green"

describe("pools.Pool:item() handles", function()
  it("forward fields and methods to the item", function()
    green_run(function()
      local pool = green.pools.Pool { create = function()
        return { n = 0, bump = function(self, d) self.n = self.n + d
                                                 return self.n end }
      end, max_size = 1 }
      local conn <close>, raw = pool:item()
      assert.are.equal(2, conn:bump(2))
      conn.tag = "x"
      assert.are.equal("x", raw.tag)
      assert.are.equal(2, conn.n)
    end)
  end)

  it("raise when used after the item was put back", function()
    green_run(function()
      local pool = green.pools.Pool { create = function()
        return { ping = function() return "pong" end, field = 1 }
      end, max_size = 1 }
      local h, saved
      do
        local conn <close> = pool:item()
        assert.are.equal("pong", conn:ping())
        h, saved = conn, conn.ping
      end
      assert.are.equal(1, pool:free())
      assert.has_error(function() return h.field end,
        "green.pools: item used after it was put back into its pool")
      assert.has_error(function() return h:ping() end)
      assert.has_error(function() return saved(h) end)
      assert.has_error(function() h.field = 2 end)
      -- the next borrower has the item to itself
      local other <close> = pool:item()
      assert.are.equal(1, other.field)
    end)
  end)
end)
