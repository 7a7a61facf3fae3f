local green = require "green"

describe("green_run", function()
  it("runs a green thread and returns its results", function()
    local a, b = green_run(function(x)
      green.sleep(0)
      return x, "b"
    end, 1)
    assert.are.equal(1, a)
    assert.are.equal("b", b)
  end)
end)
