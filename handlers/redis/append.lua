-- Appends one batch's events to one stream, exactly once, and forgets what
-- earlier, checkpointed batches appended. Redis runs a script atomically,
-- so the appends and the record of them happen together or not at all.
--
-- KEYS[1]  the stream (also the channel to publish on)
-- KEYS[2]  its bookkeeping hash for one relay name, in the same hash slot.
--          Field "token" is the newest lease token that appended. The
--          others record events appended but not yet known to be recorded
--          as delivered in PostgreSQL: "b<id>" holds the ids of one batch
--          (comma-separated; <id> its first), listed in "batches"; "<id>"
--          is one event's id.
-- ARGV     token, maxlen ("0": no trimming), publish ("", "s" SPUBLISH,
--          "c" PUBLISH), record ("1": fence and deduplicate, "0": neither),
--          n, then n fields to delete (checkpointed), m, then m batch
--          fields this relay wrote and has not checkpointed, then the
--          events' ids, comma-separated, then the events' JSON, in step
-- Returns the batch field written ("" for none), then the ids of the
-- events skipped as appended before.
local token = ARGV[1]
local maxlen = ARGV[2]
local publish = ARGV[3]
local record = ARGV[4] == '1'
local nforget = tonumber(ARGV[5])
local nmine = tonumber(ARGV[6 + nforget])
local idlist = ARGV[7 + nforget + nmine]
local first = 8 + nforget + nmine

-- unpack() has a stack limit: send long lists in slices.
local function each_slice(list, from, to, step, fn)
    for i = from, to, step do
        fn(unpack(list, i, math.min(i + step - 1, to)))
    end
end

-- The batch fields alive, listed in the field "batches", so that finding
-- them does not mean reading every field.
local function split_list(v)
    local out = {}
    if v then
        for x in string.gmatch(v, '[^,]+') do
            out[#out + 1] = x
        end
    end
    return out
end

local seen = nil
local batches = {}
if record then
    local held = redis.call('HGET', KEYS[2], 'token')
    if held and tonumber(held) > tonumber(token) then
        return redis.error_reply('PGRELAY_FENCED lease token ' .. token ..
            ' is older than token ' .. held .. ', which appended to ' .. KEYS[1])
    end
    if held ~= token then
        redis.call('HSET', KEYS[2], 'token', token)
    end
    local forgotten = {}
    if nforget > 0 then
        for i = 6, 5 + nforget do
            forgotten[ARGV[i]] = true
        end
        each_slice(ARGV, 6, 5 + nforget, 1000, function(...)
            redis.call('HDEL', KEYS[2], ...)
        end)
    end
    local mine = {}
    for i = 7 + nforget, first - 2 do
        mine[ARGV[i]] = true
    end
    -- A batch field this relay did not write is a predecessor's (or this
    -- relay's previous session's): its events may come again in another
    -- order, over several batches, so it is split into one field per id,
    -- which this relay forgets id by id as it hands them out again.
    seen = {}
    local list = redis.call('HGET', KEYS[2], 'batches')
    for _, f in ipairs(split_list(list)) do
        if not forgotten[f] then
            local ids = split_list(redis.call('HGET', KEYS[2], f))
            if mine[f] then
                for _, id in ipairs(ids) do
                    seen[id] = true
                end
                batches[#batches + 1] = f
            else
                redis.call('HDEL', KEYS[2], f)
                local fields = {}
                for _, id in ipairs(ids) do
                    fields[#fields + 1] = id
                    fields[#fields + 1] = '1'
                end
                if #fields > 0 then
                    each_slice(fields, 1, #fields, 1000, function(...)
                        redis.call('HSET', KEYS[2], ...)
                    end)
                end
            end
        end
    end
    -- Fields beyond the token, the list and the live batches are single
    -- ids: look this batch's events up among them (normally there are none).
    if redis.call('HLEN', KEYS[2]) > 1 + (list and 1 or 0) + #batches then
        local ids = split_list(idlist)
        for from = 1, #ids, 1000 do
            local to = math.min(from + 999, #ids)
            local found = redis.call('HMGET', KEYS[2], unpack(ids, from, to))
            for j = 1, #found do
                if found[j] then
                    seen[ids[from + j - 1]] = true
                end
            end
        end
    end
end

local skipped = { '' }
local appended = 0
if seen == nil or next(seen) == nil then
    -- Nothing can come again (the normal case): append everything, and
    -- record the batch with the ids as sent.
    for i = first, #ARGV do
        redis.call('XADD', KEYS[1], '*', 'event', ARGV[i])
        if publish == 's' then
            redis.call('SPUBLISH', KEYS[1], ARGV[i])
        elseif publish == 'c' then
            redis.call('PUBLISH', KEYS[1], ARGV[i])
        end
    end
    appended = #ARGV - first + 1
    if record and appended > 0 then
        local field = 'b' .. string.match(idlist, '^[^,]+')
        local before = redis.call('HGET', KEYS[2], field)
        if before then
            idlist = before .. ',' .. idlist
        else
            batches[#batches + 1] = field
        end
        redis.call('HSET', KEYS[2], field, idlist)
        skipped[1] = field
    end
else
    local ids = split_list(idlist)
    local new = {}
    for i = first, #ARGV do
        local id = ids[i - first + 1]
        if seen[id] then
            skipped[#skipped + 1] = id
        else
            redis.call('XADD', KEYS[1], '*', 'event', ARGV[i])
            if publish == 's' then
                redis.call('SPUBLISH', KEYS[1], ARGV[i])
            elseif publish == 'c' then
                redis.call('PUBLISH', KEYS[1], ARGV[i])
            end
            new[#new + 1] = id
        end
    end
    appended = #new
    if appended > 0 then
        local field = 'b' .. new[1]
        local list = table.concat(new, ',')
        local before = redis.call('HGET', KEYS[2], field)
        if before then
            list = before .. ',' .. list
        else
            batches[#batches + 1] = field
        end
        redis.call('HSET', KEYS[2], field, list)
        skipped[1] = field
    end
end
if record then
    if #batches > 0 then
        redis.call('HSET', KEYS[2], 'batches', table.concat(batches, ','))
    else
        redis.call('HDEL', KEYS[2], 'batches')
    end
end
-- One trim per batch: at least maxlen entries stay, as with MAXLEN on
-- each XADD, at a fraction of the cost.
if maxlen ~= '0' and appended > 0 then
    redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', maxlen)
end
return skipped
