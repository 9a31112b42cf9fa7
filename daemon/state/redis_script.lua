-- The redis state backend's one script: every state op runs here, atomically,
-- in the object's hash slot. KEYS: meta hash (t type, tc typecode, v value,
-- max maxsize, u unfinished), data key (hash, list), wake lists: j (a queue
-- is joined: u is 0) and s (a bounded queue has room). A wake list holds one
-- element while its condition holds; waiters rotate it (BLMOVE L L).
-- ARGV: op, name, mode ('e': the object must exist, 'c': it may be made;
-- then the caller's uid unless it is an admin), then the parameters, each
-- '=' .. text or '' when absent. Values are JSON texts; a result is the
-- JSON text of the answer, an error `code message`. Meta fields o (a
-- private object's owner uid) and sh (a scoped object's HOST:N: it lives
-- while PREFIX{name}:l:HOST, renewed by that host, does).
local m, d, j, sp = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op, name, mode = ARGV[1], ARGV[2], ARGV[3]
-- a put or acquire also carries its ticket and lease: /HOST:N/MS
local who, ticket, tlease = string.match(string.sub(mode, 2), '^([^/]*)/?([^/]*)/?(%d*)$')
mode = string.sub(mode, 1, 1)
if ticket == '' then ticket = nil end
-- what a waiter blocked on a deleted object finds (never a JSON text)
local TOMB = '\0mpsup-deleted'
local ty = string.match(op, '^[^.]+')
local function fail(code, msg) return redis.error_reply(code .. ' ' .. name .. ': ' .. msg) end
local function arg(i)
	local a = ARGV[3 + i]
	if a == nil or a == '' then return nil end
	return string.sub(a, 2)
end
local function isint(s) return string.find(s, '^%-?%d+$') ~= nil end
local function isnum(s) return string.find(s, '^%-?%d') ~= nil end
local function real(x)
	if x ~= x or x == math.huge or x == -math.huge then return nil end
	local s = string.format('%.17g', x)
	if not string.find(s, '[.eE]') then s = s .. '.0' end
	return s
end
local function same(a, b)
	if a == b then return true end
	if isint(a) and isint(b) then return false end
	if isnum(a) and isnum(b) then return tonumber(a) == tonumber(b) end
	return false
end
local function arr(t) return '[' .. table.concat(t, ',') .. ']' end
local function bool(b) if b then return 'true' end return 'false' end
-- a + by as JSON text; nil, code, message on failure
local function add(key, field, cur, by, cmd)
	if not isnum(cur) then return nil, 'conflict', 'does not hold a number' end
	if isint(cur) and isint(by) then
		local r = redis.pcall(cmd, key, field, by)
		if type(r) == 'table' and r.err then return nil, 'out_of_range', 'the result is out of range' end
		-- Lua numbers are doubles: read the exact 64-bit sum back as text
		return redis.call('HGET', key, field)
	end
	local s = real(tonumber(cur) + tonumber(by))
	if not s then return nil, 'out_of_range', 'the result is out of range' end
	redis.call('HSET', key, field, s)
	return s
end
local function index(i, n)
	i = tonumber(i)
	if i < 0 then i = i + n end
	if i < 0 or i >= n then return nil end
	return i
end
local PIVOT = '\0mpsup-pivot'
-- remove element i of a list of n: the ends directly, else through a
-- pivot, searched for from the nearer end
local function list_remove_at(i, n)
	if i == n - 1 then redis.call('RPOP', d); return end
	if i == 0 then redis.call('LPOP', d); return end
	redis.call('LSET', d, i, PIVOT)
	if i < n / 2 then redis.call('LREM', d, 1, PIVOT) else redis.call('LREM', d, -1, PIVOT) end
end
local function list_find(v)
	local all = redis.call('LRANGE', d, 0, -1)
	for i, e in ipairs(all) do if same(e, v) then return i - 1, all end end
	return nil, all
end
-- Python slice bounds (start, stop: texts or nil) against n
local function slice(start, stop, n)
	local function fix(x, def)
		if x == nil or x == 'null' then return def end
		x = tonumber(x)
		if x < 0 then x = x + n; if x < 0 then x = 0 end end
		if x > n then x = n end
		return x
	end
	return fix(start, 0), fix(stop, n)
end
local function fits(tc, v)
	if tc == 'i' then return isint(v) end
	if tc == 'd' then return isnum(v) end
	return true
end
local function store(tc, v)
	if tc == 'd' then return real(tonumber(v)) end
	return v
end
local function whole(t)
	if t == 'dict' then
		local all, out = redis.call('HGETALL', d), {}
		for i = 1, #all, 2 do out[#out + 1] = cjson.encode(all[i]) .. ':' .. all[i + 1] end
		return '{' .. table.concat(out, ',') .. '}'
	elseif t == 'list' or t == 'queue' or t == 'array' then return arr(redis.call('LRANGE', d, 0, -1))
	elseif t == 'value' then return redis.call('HGET', m, 'v')
	elseif t == 'event' then return bool(redis.call('EXISTS', d) == 1)
	elseif t == 'barrier' then
		return '{"parties":' .. redis.call('HGET', m, 'val') .. ',"n_waiting":' ..
			redis.call('HGET', m, 'c') .. ',"broken":' .. bool(redis.call('HGET', m, 'b') == '1') .. '}'
	elseif t == 'lock' or t == 'rlock' or t == 'semaphore' or t == 'condition' then
		-- the owned section answers TYPE.state (below)
		return nil
	end
	return 'null'
end

-- Blocked putters and acquirers wait their turn: m:w lists their tickets
-- in arrival order; a ticket lives while m:t:TICKET does (renewed by its
-- host) and its waiter blocks on m:k:TICKET, which serve() pushes when
-- the head may go on.
local w = m .. ':w'
local function tk(kind, tkt) return m .. ':' .. kind .. ':' .. tkt end
-- the first live ticket (dead ones, whose host stopped renewing, go)
local function head()
	local h = redis.call('LINDEX', w, 0)
	while h and redis.call('EXISTS', tk('t', h)) == 0 do
		redis.call('LPOP', w)
		redis.call('DEL', tk('k', h))
		h = redis.call('LINDEX', w, 0)
	end
	return h
end
-- wake the head waiter (once: it takes the token), if any
local function serve()
	local h = head()
	if h and redis.call('LLEN', tk('k', h)) == 0 then
		redis.call('RPUSH', tk('k', h), '1')
		redis.call('PEXPIRE', tk('k', h), 60000)
	end
end
-- may the caller go on now (nobody before it)?
local function turn()
	local h = head()
	return not h or h == ticket
end
-- the caller went on: its ticket (if it had one at the head) is done
local function turn_done()
	if ticket and redis.call('LINDEX', w, 0) == ticket then
		redis.call('LPOP', w)
		redis.call('DEL', tk('t', ticket), tk('k', ticket))
	end
end
-- the caller waits: in line (once), its ticket alive for a lease
local function turn_wait()
	if not ticket then return end
	if redis.call('EXISTS', tk('t', ticket)) == 0 then redis.call('RPUSH', w, ticket) end
	redis.call('SET', tk('t', ticket), '1', 'PX', tlease)
	-- a wake-up it had is spent: this call looked (it blocks rotating k)
	redis.call('DEL', tk('k', ticket))
end

-- delete the object of type ty; its blocked waiters find TOMB (a getter
-- passes it on to the next, queue.gone) and answer not_found
local function remove(ty)
	local g = redis.call('HGET', m, 'g')
	redis.call('DEL', m, d, j, sp)
	local function tomb(k)
		redis.call('RPUSH', k, TOMB)
		redis.call('PEXPIRE', k, 60000)
	end
	if ty == 'queue' then tomb(d); tomb(j); tomb(sp)
	elseif ty == 'event' then tomb(d)
	elseif ty == 'lock' or ty == 'rlock' or ty == 'semaphore' or ty == 'condition' then tomb(sp)
	elseif ty == 'barrier' and g then tomb(m .. ':g:' .. g) end
	for _, h in ipairs(redis.call('LRANGE', w, 0, -1)) do
		redis.call('DEL', tk('k', h), tk('t', h))
		tomb(tk('k', h))
	end
	-- a condition's waiters in wait block on their n list
	for _, h in ipairs(redis.call('HKEYS', m .. ':cd')) do
		redis.call('DEL', tk('n', h), tk('t', h))
		tomb(tk('n', h))
	end
	redis.call('DEL', w, m .. ':cw', m .. ':cd')
end

local meta = redis.call('HMGET', m, 't', 'o', 'sh')
local t, owner, sh = meta[1], meta[2], meta[3]
-- a scoped object whose host stopped renewing its lease is gone
if t and sh and redis.call('EXISTS', m .. ':l:' .. string.match(sh, '^[^:]+')) == 0 then
	remove(t)
	t, owner, sh = false, false, false
end
-- the host's own calls: its scope ended, a getter found TOMB
if op == 'obj.unscope' then
	if t and sh == arg(1) then remove(t) end
	return 'null'
elseif op == 'obj.sweep' then
	-- another host's sweep: the check above did it
	return 'null'
elseif op == 'obj.untick' then
	-- a waiter with a ticket gave up (timeout, client gone): out of line
	redis.call('LREM', w, 0, arg(1))
	redis.call('DEL', tk('t', arg(1)), tk('k', arg(1)))
	-- or out of a condition's wait
	redis.call('LREM', m .. ':cw', 0, arg(1))
	redis.call('HDEL', m .. ':cd', arg(1))
	redis.call('DEL', tk('n', arg(1)))
	if t then serve() end
	return 'null'
elseif op == 'queue.gone' then
	if t then redis.call('DEL', arg(1))
	else
		redis.call('LMOVE', arg(1), d, 'LEFT', 'LEFT')
		redis.call('PEXPIRE', d, 60000)
	end
	return 'null'
end
-- a private object is hidden from every other uid but admins' (who '')
if t and owner and who ~= '' and owner ~= who then
	if op == 'obj.create' then return fail('not_found', 'no object named ' .. name .. ' (a private one)') end
	local what = ty
	if ty == 'obj' then what = 'object' end
	return redis.error_reply('not_found no ' .. what .. ' named ' .. name)
end
local created = false
if op == 'obj.create' then
	local ctype, tc, init, max = arg(1), arg(2), arg(3), arg(4)
	-- the tail: owner uid ('?': a bad access), scope mark, lease ms
	local cown, csh, clease = ARGV[#ARGV - 2], ARGV[#ARGV - 1], ARGV[#ARGV]
	if cown == '?' then return redis.error_reply('bad_request obj.create: access must be "private" or "shared"') end
	if t then
		if t ~= ctype then return fail('exists', 'exists as a ' .. t) end
		if (tc and redis.call('HGET', m, 'tc') ~= tc) or
		   (max and ctype == 'queue' and redis.call('HGET', m, 'max') ~= max) or
		   (max and (ctype == 'semaphore' or ctype == 'barrier') and redis.call('HGET', m, 'val') ~= max) or
		   (ctype == 'array' and (redis.call('LLEN', d) ~= tonumber(max or arg(5)))) then
			return fail('exists', 'exists with other options')
		end
		return '{"created":false}'
	end
	-- what a deleted object of this name left for its waiters goes
	redis.call('DEL', d, j, sp, w, m .. ':cw', m .. ':cd')
	redis.call('HSET', m, 't', ctype)
	if cown ~= '' then
		owner = string.sub(cown, 2) -- its create event too is its owner's
		redis.call('HSET', m, 'o', owner)
	end
	if csh ~= '' then
		csh = string.sub(csh, 2)
		redis.call('HSET', m, 'sh', csh)
		redis.call('SET', m .. ':l:' .. string.match(csh, '^[^:]+'), '1', 'PX', string.sub(clease, 2))
	end
	if ctype == 'value' then
		tc = tc or 'any'
		redis.call('HSET', m, 'tc', tc, 'v', store(tc, init or '0'))
	elseif ctype == 'queue' then
		redis.call('HSET', m, 'max', max or '0', 'u', '0')
	elseif ctype == 'semaphore' then
		redis.call('HSET', m, 'val', max or '1')
	elseif ctype == 'array' then
		redis.call('HSET', m, 'tc', tc)
	elseif ctype == 'barrier' then
		redis.call('HSET', m, 'val', max, 'g', '0', 'c', '0')
	end
	local n = tonumber(arg(5) or '0')
	if ctype == 'array' then
		for i = 1, n do redis.call('RPUSH', d, store(tc, ARGV[8 + i])) end
		local zero = store(tc, '0')
		for _ = n + 1, tonumber(max or '0') do redis.call('RPUSH', d, zero) end
	elseif ctype == 'dict' then
		for i = 1, n do redis.call('HSET', d, ARGV[7 + 2 * i], ARGV[8 + 2 * i]) end
	elseif n > 0 then
		for i = 1, n do redis.call('RPUSH', d, ARGV[8 + i]) end
		if ctype == 'queue' then redis.call('HSET', m, 'u', n) end
	end
	if ctype == 'queue' and tonumber(max) > 0 and n < tonumber(max) then redis.call('RPUSH', sp, '1') end
	if owner then return '\2' .. owner .. '\2{"created":true}' end
	return '{"created":true}'
elseif op == 'obj.get' or op == 'obj.delete' then
	if not t then return fail('not_found', 'no such object') end
	if op == 'obj.get' then
		local w = whole(t)
		if w then return w end
		op, ty = t .. '.state', t
	else
		remove(t)
		return 'null'
	end
end

if not t then
	if mode == 'e' then
		local hint = ''
		if ty == 'array' or ty == 'barrier' then hint = ' (create it with obj.create)' end
		return redis.error_reply('not_found no ' .. ty .. ' named ' .. name .. hint)
	end
	t = ty
	created = true
	redis.call('DEL', d, j, sp, w, m .. ':cw', m .. ':cd')
	redis.call('HSET', m, 't', ty)
	if ty == 'value' then redis.call('HSET', m, 'tc', 'any', 'v', '0')
	elseif ty == 'queue' then redis.call('HSET', m, 'max', '0', 'u', '0') end
elseif t ~= ty then
	return redis.error_reply('wrong_type ' .. name .. ' is a ' .. t .. ', not a ' .. ty)
end

-- the op; an answer of an op that created its object starts with \1
local function run()

-- dict: a hash of JSON texts
if ty == 'dict' then
	local k = arg(1)
	if op == 'dict.get' or op == 'dict.pop' then
		local v = redis.call('HGET', d, k)
		if not v then
			if arg(2) then return arg(2) end
			return fail('not_found', "no key '" .. string.sub(k, 1, 100) .. "'")
		end
		if op == 'dict.pop' then redis.call('HDEL', d, k) end
		return v
	elseif op == 'dict.set' then redis.call('HSET', d, k, arg(2)); return 'null'
	elseif op == 'dict.del' then
		if redis.call('HDEL', d, k) == 0 then
			return fail('not_found', "no key '" .. string.sub(k, 1, 100) .. "'")
		end
		return 'null'
	elseif op == 'dict.has' then return bool(redis.call('HEXISTS', d, k) == 1)
	elseif op == 'dict.keys' then
		local out = {}
		for _, key in ipairs(redis.call('HKEYS', d)) do out[#out + 1] = cjson.encode(key) end
		return arr(out)
	elseif op == 'dict.values' then return arr(redis.call('HVALS', d))
	elseif op == 'dict.items' then
		local all, out = redis.call('HGETALL', d), {}
		for i = 1, #all, 2 do out[#out + 1] = '[' .. cjson.encode(all[i]) .. ',' .. all[i + 1] .. ']' end
		return arr(out)
	elseif op == 'dict.len' then return tostring(redis.call('HLEN', d))
	elseif op == 'dict.update' then
		local n = tonumber(arg(1))
		for i = 1, n do redis.call('HSET', d, ARGV[3 + 2 * i], ARGV[4 + 2 * i]) end
		return 'null'
	elseif op == 'dict.setdefault' then
		local v = redis.call('HGET', d, k)
		if v then return v end
		redis.call('HSET', d, k, arg(2) or 'null')
		return arg(2) or 'null'
	elseif op == 'dict.clear' then redis.call('DEL', d); return 'null'
	elseif op == 'dict.incr' then
		local r, code, msg = add(d, k, redis.call('HGET', d, k) or '0', arg(2) or '1', 'HINCRBY')
		if not r then return fail(code, "'" .. string.sub(k, 1, 100) .. "' " .. msg) end
		return r
	elseif op == 'dict.cas' then
		local cur = redis.call('HGET', d, k)
		local swap
		if cur then swap = same(cur, arg(2)) else swap = arg(2) == 'null' end
		if swap then redis.call('HSET', d, k, arg(3)) end
		return '{"swapped":' .. bool(swap) .. '}'
	end
elseif ty == 'value' then
	local tc = redis.call('HGET', m, 'tc')
	local what = 'a number'
	if tc == 'i' then what = 'an integer' end
	if op == 'value.get' then return redis.call('HGET', m, 'v')
	elseif op == 'value.set' or op == 'value.cas' then
		local v = arg(1)
		if op == 'value.cas' then v = arg(2) end
		if not fits(tc, v) then return redis.error_reply('bad_request ' .. name .. ": 'value' must be " .. what .. ' (typecode ' .. tc .. ')') end
		if op == 'value.set' then redis.call('HSET', m, 'v', store(tc, v)); return 'null' end
		local swap = same(redis.call('HGET', m, 'v'), arg(1))
		if tc == 'i' and isint(arg(1)) == false and isnum(arg(1)) then
			swap = tonumber(arg(1)) == tonumber(redis.call('HGET', m, 'v'))
		end
		if swap then redis.call('HSET', m, 'v', store(tc, v)) end
		return '{"swapped":' .. bool(swap) .. '}'
	elseif op == 'value.add' then
		local by = arg(1) or '1'
		if tc == 'i' and not isint(by) then
			return redis.error_reply('bad_request ' .. name .. ": 'by' must be an integer (typecode i)")
		end
		local cur = redis.call('HGET', m, 'v')
		if tc == 'd' then
			local s = real(tonumber(cur) + tonumber(by))
			if not s then return fail('out_of_range', 'the result is out of range') end
			redis.call('HSET', m, 'v', s)
			return s
		end
		local r, code, msg = add(m, 'v', cur, by, 'HINCRBY')
		if not r then return fail(code, msg) end
		return r
	end
elseif ty == 'list' then
	local n = redis.call('LLEN', d)
	if op == 'list.append' then redis.call('RPUSH', d, arg(1)); return 'null'
	elseif op == 'list.extend' then
		for i = 1, tonumber(arg(1)) do redis.call('RPUSH', d, ARGV[4 + i]) end
		return 'null'
	elseif op == 'list.insert' then
		local i = tonumber(arg(1))
		if i < 0 then i = i + n; if i < 0 then i = 0 end end
		if i >= n then redis.call('RPUSH', d, arg(2))
		elseif i == 0 then redis.call('LPUSH', d, arg(2))
		else
			local old = redis.call('LINDEX', d, i)
			redis.call('LSET', d, i, PIVOT)
			redis.call('LINSERT', d, 'BEFORE', PIVOT, arg(2))
			redis.call('LSET', d, i + 1, old)
		end
		return 'null'
	elseif op == 'list.get' or op == 'list.set' or op == 'list.pop' then
		if op == 'list.pop' and n == 0 then return fail('out_of_range', 'pop from an empty list') end
		local i = index(arg(1) or '-1', n)
		if not i then return fail('out_of_range', 'index ' .. (arg(1) or '-1') .. ' out of range (length ' .. n .. ')') end
		if op == 'list.set' then redis.call('LSET', d, i, arg(2)); return 'null' end
		local v = redis.call('LINDEX', d, i)
		if op == 'list.pop' then list_remove_at(i, n) end
		return v
	elseif op == 'list.remove' or op == 'list.index' then
		local i = list_find(arg(1))
		if not i then return fail('not_found', 'value not in list') end
		if op == 'list.index' then return tostring(i) end
		list_remove_at(i, n)
		return 'null'
	elseif op == 'list.count' then
		local c = 0
		for _, e in ipairs(redis.call('LRANGE', d, 0, -1)) do if same(e, arg(1)) then c = c + 1 end end
		return tostring(c)
	elseif op == 'list.len' then return tostring(n)
	elseif op == 'list.slice' then
		local a, b = slice(arg(1), arg(2), n)
		if a >= b then return '[]' end
		return arr(redis.call('LRANGE', d, a, b - 1))
	elseif op == 'list.clear' then redis.call('DEL', d); return 'null'
	end
elseif ty == 'queue' then
	local n = redis.call('LLEN', d)
	local max = tonumber(redis.call('HGET', m, 'max'))
	-- the room list follows the length
	local function room(len)
		if max == 0 then return end
		if len < max then
			if redis.call('EXISTS', sp) == 0 then redis.call('RPUSH', sp, '1') end
		else redis.call('DEL', sp) end
	end
	if op == 'queue.put' then
		if max > 0 and (n >= max or not turn()) then
			if arg(2) and tonumber(arg(2)) == 0 then return fail('full', 'full') end
			turn_wait()
			return redis.error_reply('wait ' .. name)
		end
		redis.call('RPUSH', d, arg(1))
		redis.call('HINCRBY', m, 'u', 1)
		redis.call('DEL', j)
		room(n + 1)
		-- only a bounded queue has putters in line
		if max > 0 then
			turn_done()
			if n + 1 < max then serve() end
		end
		return 'null'
	elseif op == 'queue.taken' then
		-- a blocked getter was answered with the item it moved aside
		redis.call('DEL', arg(1))
		room(n)
		if max > 0 then serve() end
		return 'null'
	elseif op == 'queue.get' then
		local v = redis.call('LPOP', d)
		if v then
			room(n - 1)
			if max > 0 then serve() end
			return v
		end
		if arg(1) and tonumber(arg(1)) == 0 then return fail('empty', 'empty') end
		return redis.error_reply('wait ' .. name)
	elseif op == 'queue.size' then return tostring(n)
	elseif op == 'queue.empty' then return bool(n == 0)
	elseif op == 'queue.full' then return bool(max > 0 and n >= max)
	elseif op == 'queue.task_done' then
		local u = tonumber(redis.call('HGET', m, 'u'))
		if u <= 0 then return fail('conflict', 'task_done called more times than put') end
		if u == 1 then redis.call('RPUSH', j, '1') end
		redis.call('HINCRBY', m, 'u', -1)
		return 'null'
	elseif op == 'queue.join' then
		if tonumber(redis.call('HGET', m, 'u')) == 0 then return 'null' end
		if arg(1) and tonumber(arg(1)) == 0 then return fail('timeout', 'unfinished tasks') end
		return redis.error_reply('wait ' .. name)
	end
elseif ty == 'event' then
	if op == 'event.set' then
		if redis.call('EXISTS', d) == 0 then redis.call('RPUSH', d, '1') end
		return 'null'
	elseif op == 'event.clear' then redis.call('DEL', d); return 'null'
	elseif op == 'event.is_set' then return bool(redis.call('EXISTS', d) == 1)
	elseif op == 'event.wait' then
		if redis.call('EXISTS', d) == 1 then return '{"set":true}' end
		if arg(1) and tonumber(arg(1)) == 0 then return '{"set":false}' end
		return redis.error_reply('wait ' .. name)
	end
end
if ty == 'array' then
	local tc, n = redis.call('HGET', m, 'tc'), redis.call('LLEN', d)
	if op == 'array.len' then return tostring(n) end
	if op == 'array.slice' then
		local a, b = slice(arg(1), arg(2), n)
		if a >= b then return '[]' end
		return arr(redis.call('LRANGE', d, a, b - 1))
	end
	local i = index(arg(1), n)
	if not i then return fail('out_of_range', 'index ' .. arg(1) .. ' out of range (length ' .. n .. ')') end
	if op == 'array.get' then return redis.call('LINDEX', d, i) end
	local v = arg(2)
	if op == 'array.add' then v = v or '1' end
	if tc == 'i' and not isint(v) then
		local what = 'value'
		if op == 'array.add' then what = 'by' end
		return redis.error_reply('bad_request ' .. name .. ": '" .. what .. "' must be an integer (typecode i)")
	end
	if op == 'array.set' then redis.call('LSET', d, i, store(tc, v)); return 'null' end
	local cur = redis.call('LINDEX', d, i)
	local s
	if tc == 'i' then
		-- exact 64-bit: HINCRBY on a scratch field (Lua numbers are doubles)
		redis.call('HSET', m, 'x', cur)
		local r = redis.pcall('HINCRBY', m, 'x', v)
		if type(r) == 'table' and r.err then
			redis.call('HDEL', m, 'x')
			return fail('out_of_range', 'the result is out of range')
		end
		s = redis.call('HGET', m, 'x')
		redis.call('HDEL', m, 'x')
	else
		s = real(tonumber(cur) + tonumber(v))
		if not s then return fail('out_of_range', 'the result overflows a double') end
	end
	redis.call('LSET', d, i, s)
	return s
end
if ty == 'barrier' then
	-- c waiters have arrived in generation g; a generation's waiters block
	-- on PREFIX{name}:g:G, which gets 'ok' when the last arrives or
	-- 'broken' when it breaks (timeout, abort, reset)
	local parties, g, c = tonumber(redis.call('HGET', m, 'val')), redis.call('HGET', m, 'g'), tonumber(redis.call('HGET', m, 'c'))
	local function release(token)
		local gl = m .. ':g:' .. g
		redis.call('RPUSH', gl, token)
		redis.call('PEXPIRE', gl, 600000)
		redis.call('HSET', m, 'g', tonumber(g) + 1, 'c', '0')
	end
	local function brk()
		redis.call('HSET', m, 'b', '1')
		release('broken')
	end
	if op == 'barrier.wait' then
		if redis.call('HGET', m, 'b') == '1' then return fail('broken', 'barrier broken') end
		if c + 1 >= parties then
			release('ok')
			return '{"index":' .. (parties - 1) .. '}'
		end
		if arg(1) and tonumber(arg(1)) == 0 then
			brk()
			return fail('broken', 'barrier broken (timeout)')
		end
		redis.call('HSET', m, 'c', c + 1)
		return redis.error_reply('wait ' .. name .. ' ' .. g .. ' ' .. c)
	elseif op == 'barrier.break' then
		-- a waiter of generation arg(2) timed out: unless it passed meanwhile
		if g ~= arg(2) then return '{"index":' .. arg(3) .. '}' end
		brk()
		return fail('broken', 'barrier broken (timeout)')
	elseif op == 'barrier.reset' then
		redis.call('HDEL', m, 'b')
		release('broken')
		return 'null'
	elseif op == 'barrier.abort' then
		brk()
		return 'null'
	end
end
if ty == 'lock' or ty == 'rlock' or ty == 'semaphore' or ty == 'condition' then
	-- owned units: d maps owner tokens (HOST:CONNECTION) to counts; a host
	-- keeps PREFIX{name}:l:HOST alive (PX lease) while it holds any, and the
	-- holds of a host whose key expired are dropped (abandoned). A
	-- condition is a re-entrant lock like an rlock.
	local re = ty == 'rlock' or ty == 'condition'
	local na = #ARGV
	local token, host, lease = string.sub(ARGV[na - 2], 2), string.sub(ARGV[na - 1], 2), string.sub(ARGV[na], 2)
	local val = tonumber(redis.call('HGET', m, 'val') or '1')
	local function lk(h) return m .. ':l:' .. h end
	local all, held, owners = redis.call('HGETALL', d), 0, {}
	for i = 1, #all, 2 do
		local h = string.match(all[i], '^([^:]+):')
		if redis.call('EXISTS', lk(h)) == 0 then
			redis.call('HDEL', d, all[i])
			redis.call('HSET', m, 'ab', '1')
		else
			if re then held = held + 1 else held = held + tonumber(all[i + 1]) end
			owners[#owners + 1] = '{"owner":' .. cjson.encode(all[i]) .. ',"count":' .. all[i + 1] .. '}'
		end
	end
	local mine = tonumber(redis.call('HGET', d, token) or '0')
	local function wake()
		if redis.call('EXISTS', sp) == 0 then redis.call('RPUSH', sp, '1') end
		serve()
	end
	if held < val then wake() end
	local function abandoned()
		if redis.call('HGET', m, 'ab') then
			redis.call('HDEL', m, 'ab')
			return ',"abandoned":true'
		end
		return ''
	end
	-- wait for a release, or until the first lease of another host may end
	local function wait_release()
		turn_wait()
		local soonest = -1
		for i = 1, #all, 2 do
			local h = string.match(all[i], '^([^:]+):')
			local ttl = redis.call('PTTL', lk(h))
			if h ~= host and ttl > 0 and (soonest < 0 or ttl < soonest) then soonest = ttl end
		end
		return redis.error_reply('wait ' .. name .. ' ' .. soonest)
	end
	local not_held = 'conflict ' .. name .. ' is not held by this connection'
	local what = string.match(op, '%.(.*)$')
	if what == 'acquire' then
		local ok
		if re then ok = held == 0 or mine > 0 else ok = held < val end
		-- in arrival order (an rlock's owner re-enters at once)
		if ok and not (re and mine > 0) then ok = turn() end
		if ok then
			turn_done()
			redis.call('HINCRBY', d, token, 1)
			redis.call('SET', lk(host), '1', 'PX', lease)
			if re or held + 1 >= val then redis.call('DEL', sp) else serve() end
			return '{"acquired":true' .. abandoned() .. '}'
		end
		if arg(1) and tonumber(arg(1)) == 0 then return '{"acquired":false}' end
		return wait_release()
	elseif what == 'release' or what == 'drop' then
		if mine == 0 then
			if what == 'drop' then return 'null' end
			return redis.error_reply(not_held)
		end
		if mine == 1 or what == 'drop' then redis.call('HDEL', d, token) else redis.call('HINCRBY', d, token, -1) end
		if what == 'drop' then redis.call('HSET', m, 'ab', '1') end
		-- a re-entrant lock still held by its owner frees nothing
		if not re or mine == 1 or what == 'drop' then wake() end
		return 'null'
	elseif what == 'locked' then return bool(held > 0)
	elseif what == 'get_value' then return tostring(val - held)
	end
	-- a condition's waiters in wait: cw lists their tickets in order, cd
	-- maps each to the depth it held ('DEPTH' while in wait, 'DEPTH N' once
	-- notified (N 1) or timed out (N 0)); each blocks on m:n:TICKET and
	-- lives while m:t:TICKET does (renewed by its host). A notify moves
	-- the ticket to the lock's line w (as locally to the lock's queue) and
	-- pushes its n list; a timeout puts it at the end of w.
	local cw, cd = m .. ':cw', m .. ':cd'
	if what == 'wait' then
		local st = ticket and redis.call('HGET', cd, ticket)
		local news = arg(1) -- 'w' woken, 't' timed out, else its timeout
		if not st then
			if mine == 0 then return redis.error_reply(not_held) end
			if not ticket then return fail('internal', 'a wait without a ticket') end
			-- give up every level and wait for a notify
			redis.call('HSET', cd, ticket, tostring(mine))
			redis.call('HDEL', d, token)
			wake()
			redis.call('RPUSH', cw, ticket)
			redis.call('SET', tk('t', ticket), '1', 'PX', tlease)
			redis.call('DEL', tk('n', ticket))
			return redis.error_reply('wait ' .. name .. ' notify')
		end
		local depth, notified = string.match(st, '^(%d+) ?(%d?)$')
		if notified == '' then
			local inq = redis.call('LPOS', cw, ticket)
			if inq and news ~= 'w' and news ~= 't' then
				-- armed again after Redis was lost: wait on
				redis.call('SET', tk('t', ticket), '1', 'PX', tlease)
				return redis.error_reply('wait ' .. name .. ' notify')
			end
			-- out of cw with its n list pushed: a notify took it (also
			-- when its timeout came at the same time) and put it in line
			if news == 'w' or (not inq and redis.call('EXISTS', tk('n', ticket)) == 1) then
				notified = '1'
			else
				notified = '0'
			end
			if inq then
				redis.call('LREM', cw, 0, ticket)
				redis.call('RPUSH', w, ticket)
			end
			redis.call('HSET', cd, ticket, depth .. ' ' .. notified)
			redis.call('DEL', tk('n', ticket))
		end
		-- take the lock back at its old depth, in line with the acquirers
		if held == 0 and turn() then
			turn_done()
			redis.call('HDEL', cd, ticket)
			redis.call('DEL', tk('t', ticket), tk('k', ticket))
			redis.call('HSET', d, token, depth)
			redis.call('SET', lk(host), '1', 'PX', lease)
			redis.call('DEL', sp)
			return '{"notified":' .. bool(notified == '1') .. abandoned() .. '}'
		end
		return wait_release()
	elseif what == 'notify' or what == 'notify_all' then
		if mine == 0 then return redis.error_reply(not_held) end
		local n = -1
		if what == 'notify' then
			n = tonumber(arg(1) or '1')
			if not isint(arg(1) or '1') or n < 0 then
				return redis.error_reply('bad_request ' .. name .. ': n must be an integer >= 0')
			end
		end
		-- the first n live waiters in order (those of a dead host go)
		local woken = 0
		while n < 0 or woken < n do
			local h = redis.call('LPOP', cw)
			if not h then break end
			if redis.call('EXISTS', tk('t', h)) == 1 then
				redis.call('RPUSH', w, h)
				redis.call('RPUSH', tk('n', h), '1')
				redis.call('PEXPIRE', tk('n', h), 600000)
				woken = woken + 1
			else
				redis.call('HDEL', cd, h)
			end
		end
		return '{"woken":' .. woken .. '}'
	elseif what == 'state' then
		if ty == 'semaphore' then
			return '{"value":' .. val .. ',"available":' .. (val - held) .. ',"owners":' .. arr(owners) .. '}'
		end
		if ty ~= 'condition' then
			return '{"locked":' .. bool(held > 0) .. ',"owners":' .. arr(owners) .. '}'
		end
		-- waiting: live tickets in wait; waiters: live tickets in the
		-- lock's line (acquirers, waiters notified or timed out)
		local waiting, waiters = 0, 0
		for _, h in ipairs(redis.call('LRANGE', cw, 0, -1)) do
			if redis.call('EXISTS', tk('t', h)) == 1 then waiting = waiting + 1 end
		end
		for _, h in ipairs(redis.call('LRANGE', w, 0, -1)) do
			if redis.call('EXISTS', tk('t', h)) == 1 then waiters = waiters + 1 end
		end
		return '{"locked":' .. bool(held > 0) .. ',"owners":' .. arr(owners) ..
			',"waiters":' .. waiters .. ',"waiting":' .. waiting .. '}'
	end
end
return redis.error_reply('bad_request ' .. op .. ': not served by the redis state backend')
end
local r = run()
if created and type(r) == 'string' then r = '\1' .. r end
-- a private object's answers (and waits) start with \2 owner \2: its
-- events reach its owner's uid and admins only
if owner and type(r) == 'string' then r = '\2' .. owner .. '\2' .. r end
if owner and type(r) == 'table' and r.err and string.sub(r.err, 1, 5) == 'wait ' then
	r = redis.error_reply('\2' .. owner .. '\2' .. r.err)
end
return r
