-- Appends one batch's events to one stream, exactly once, and forgets what
-- an earlier, checkpointed batch appended. Redis runs a script atomically,
-- so the appends and the record of them happen together or not at all.
--
-- KEYS[1]  the stream (also the channel to publish on)
-- KEYS[2]  its bookkeeping hash for one relay name, in the same hash slot:
--          field "token" is the newest lease token that appended; every
--          other field is the id of an event appended but not yet known to
--          be recorded as delivered in PostgreSQL
-- ARGV     token, maxlen ("0": no trimming), publish ("", "s" SPUBLISH,
--          "c" PUBLISH), record ("1": fence and deduplicate, "0": neither),
--          n, then n event ids to forget, then (event id, event JSON) pairs
local token = ARGV[1]
local maxlen = ARGV[2]
local publish = ARGV[3]
local record = ARGV[4] == '1'
local nforget = tonumber(ARGV[5])
local first = 6 + nforget

-- unpack() has a stack limit: send long lists in slices.
local function each_slice(list, from, to, step, fn)
    for i = from, to, step do
        fn(unpack(list, i, math.min(i + step - 1, to)))
    end
end

if record then
    local held = redis.call('HGET', KEYS[2], 'token')
    if held and tonumber(held) > tonumber(token) then
        return redis.error_reply('PGRELAY_FENCED lease token ' .. token ..
            ' is older than token ' .. held .. ', which appended to ' .. KEYS[1])
    end
    if held ~= token then
        redis.call('HSET', KEYS[2], 'token', token)
    end
    if nforget > 0 then
        each_slice(ARGV, 6, first - 1, 1000, function(...)
            redis.call('HDEL', KEYS[2], ...)
        end)
    end
end

-- Only events that may have been appended before are looked up: normally
-- the hash holds just the token by now, and nothing is.
local check = record and redis.call('HLEN', KEYS[2]) > 1
local appended = {}
for i = first, #ARGV, 2 do
    local id, event = ARGV[i], ARGV[i + 1]
    if not (check and redis.call('HEXISTS', KEYS[2], id) == 1) then
        if maxlen == '0' then
            redis.call('XADD', KEYS[1], '*', 'event', event)
        else
            redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'event', event)
        end
        if publish == 's' then
            redis.call('SPUBLISH', KEYS[1], event)
        elseif publish == 'c' then
            redis.call('PUBLISH', KEYS[1], event)
        end
        appended[#appended + 1] = id
        appended[#appended + 1] = '1'
    end
end
if record and #appended > 0 then
    each_slice(appended, 1, #appended, 1000, function(...)
        redis.call('HSET', KEYS[2], ...)
    end)
end
return #appended / 2
