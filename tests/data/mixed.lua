-- wrk: a mixed lighttpd workload over keep-alive connections, every response checked.
-- Paths cycle; each response's status and body length must be one of the paths' (mvx.lighttpd.FILES). done() prints "mixed: total=N bad=M" for the test to read.
local paths = {
  {"/1k.txt", 200, 1024}, {"/index.html", 200, -1}, {"/64k.txt", 200, 65536}, {"/1k.txt", 200, 1024},
  {"/nope.txt", 404, -1}, {"/dir/a.txt", 200, 7}, {"/secret.deny", 403, -1}, {"/1k.txt", 200, 1024},
  {"/dir/", 200, -1}, {"/1m.txt", 200, 1048576},
}
local counters = {}
local i = 0
local sent = {}

function setup(thread)
  table.insert(counters, thread)
end

function init(args)
  ok, bad = 0, 0
end

function request()
  i = i % #paths + 1
  table.insert(sent, i)
  return wrk.format("GET", paths[i][1])
end

-- responses of different connections interleave: each must be one the paths can give, with a
-- body as long as its Content-Length says
function response(status, headers, body)
  table.remove(sent, 1)
  local good = false
  local length = tonumber(headers["Content-Length"] or "-1")
  if length == #body then
    for _, p in ipairs(paths) do
      if status == p[2] and (p[3] < 0 or #body == p[3]) then
        good = true
        break
      end
    end
  end
  if good then ok = ok + 1 else bad = bad + 1 end
end

function done(summary, latency, requests)
  local t_ok, t_bad = 0, 0
  for _, thread in ipairs(counters) do
    t_ok = t_ok + thread:get("ok")
    t_bad = t_bad + thread:get("bad")
  end
  io.write(string.format("mixed: total=%d bad=%d errors=%d\n", t_ok + t_bad, t_bad,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
