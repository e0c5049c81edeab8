-- wrk script for bench/webhook.py: replays pre-signed Twilio webhooks (POST /twilio/sms).
--
--   wrk -t2 -c16 -d10s -s bench/wrk_signed.lua http://127.0.0.1:PORT/twilio/sms -- FILE THREADS
--
-- FILE has one request per line: "kind<TAB>X-Twilio-Signature<TAB>form body". Thread i of
-- THREADS sends lines i, i+THREADS, i+2*THREADS, ... in order, so no two threads ever send the
-- same MessageSid; a thread that runs out starts its slice again (reported as "wrapped").
-- done() prints one line, "BENCH_RESULT {json}", that bench/webhook.py parses.

local threads = {}
local created = 0

function setup(thread)
   thread:set("id", created)
   created = created + 1
   table.insert(threads, thread)
end

local requests = {}
local kinds = {}
local index = 0
-- Globals, read by done() through thread:get().
statuses = {}
sent = {}
wrapped = 0

function init(args)
   local path, count = args[1], tonumber(args[2])
   local line_number = 0
   for line in io.lines(path) do
      if line_number % count == id then
         local first = line:find("\t", 1, true)
         local second = line:find("\t", first + 1, true)
         local headers = {
            ["Host"] = wrk.headers["Host"],
            ["Content-Type"] = "application/x-www-form-urlencoded",
            ["X-Twilio-Signature"] = line:sub(first + 1, second - 1),
         }
         requests[#requests + 1] = wrk.format("POST", wrk.path, headers, line:sub(second + 1))
         kinds[#kinds + 1] = line:sub(1, first - 1)
      end
      line_number = line_number + 1
   end
   if #requests == 0 then
      error("no requests for thread " .. id .. " in " .. path)
   end
end

function request()
   index = index + 1
   if index > #requests then
      index = 1
      wrapped = wrapped + 1
   end
   local kind = kinds[index]
   sent[kind] = (sent[kind] or 0) + 1
   return requests[index]
end

function response(status, headers, body)
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
end

local function add_into(total, part)
   for key, value in pairs(part or {}) do
      total[key] = (total[key] or 0) + value
   end
end

local function json_counts(counts)
   local parts = {}
   for key, value in pairs(counts) do
      parts[#parts + 1] = string.format('"%s": %d', key, value)
   end
   return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests_summary)
   local all_statuses, all_sent, all_wrapped = {}, {}, 0
   for _, thread in ipairs(threads) do
      add_into(all_statuses, thread:get("statuses"))
      add_into(all_sent, thread:get("sent"))
      all_wrapped = all_wrapped + (thread:get("wrapped") or 0)
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
         .. '"mean_us": %.1f, "max_us": %d, "connect_errors": %d, "read_errors": %d, '
         .. '"write_errors": %d, "timeouts": %d, "statuses": %s, "sent": %s, "wrapped": %d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      latency.mean, latency.max, errors.connect, errors.read, errors.write, errors.timeout,
      json_counts(all_statuses), json_counts(all_sent), all_wrapped
   ))
end
