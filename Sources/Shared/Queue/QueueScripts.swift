/// The Lua scripts behind every queue transition. Each runs atomically inside Redis, so a transition is never
/// half-done, and two scripts (e.g. two workers' recoveries) never interleave.
///
/// Every script takes the key prefix in ARGV[1] and names keys only through the `key` table generated from `KeySchema`
/// (`key.job(id)`, `key.dead`, …), so the key names exist once, in Swift. The keys cannot all be declared in KEYS[]:
/// most depend on fields read inside the script (a job's agent and session). A braced prefix (`{hooks}`) still puts
/// every key in one Cluster slot.
enum QueueScripts {
    /// A script with the `key` table and `redisNowMs()` (Redis' clock in ms) prepended.
    static func script(name: String, source: String) -> RedisScript {
        RedisScript(name: name, source: KeySchema.luaKeyTable + "\n" + clock + "\n" + source)
    }

    static let clock = """
        local function redisNowMs()
          local t = redis.call('TIME')
          return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        end
        """

    /// Shared helpers, prepended to the scripts that need them.
    static let helpers =
        sessionHelpers + "\n" + """
            -- Hands the session on to its next job: drops pending entries whose record is gone, and puts the lowest
            -- pending job back at the front of its queue if it was parked as 'waiting'.
            local function wake(session)
              if not session or session == '' then return end
              local pk = key.pending(session)
              while true do
                local low = redis.call('ZRANGE', pk, 0, 0)[1]
                if not low then return end
                local st, agent = unpack(redis.call('HMGET', key.job(low), 'status', 'agent'))
                if not st then
                  redis.call('ZREM', pk, low)
                  redis.call('ZREM', key.waiting(agentOf(session)), low)
                else
                  if st == 'waiting' then
                    redis.call('ZREM', key.waiting(agent), low)
                    redis.call('HSET', key.job(low), 'status', 'queued')
                    redis.call('HDEL', key.job(low), 'waiting_for')
                    redis.call('RPUSH', key.queue(agent), low)
                  end
                  return
                end
              end
            end
            local function bury(id, session, reason, nowIso, deadTtl)
              local jk = key.job(id)
              tally(redis.call('HGET', jk, 'agent'), 'dead')
              redis.call('HSET', jk, 'status', 'dead', 'error', reason, 'finished_at', nowIso)
              redis.call('LPUSH', key.dead, id)
              feedbackDue(id)
              if tonumber(deadTtl) > 0 then
                redis.call('EXPIRE', jk, deadTtl)
                redis.call('EXPIRE', key.log(id), deadTtl)
              end
              if session then redis.call('ZREM', key.pending(session), id) end
              wake(session)
            end
            """

    /// Claims a job id that is already in this worker's processing list. Only the lowest pending job of a session may
    /// run: a later one is parked as 'waiting' (taken off the processing list; it stays in the session's pending set,
    /// so it survives any worker's death) and is put back on its queue by `wake` when its turn comes.
    static let claim = """
        local function claim(worker, id, nowIso)
          local jk = key.job(id)
          local proc = key.processing(worker)
          local session, status = unpack(redis.call('HMGET', jk, 'session', 'status'))
          if not status then
            redis.call('LREM', proc, 1, id)
            return {'missing', id}
          end
          if status ~= 'queued' then
            redis.call('LREM', proc, 1, id)
            return {'skipped', id, status}
          end
          local pk = key.pending(session)
          local low = redis.call('ZRANGE', pk, 0, 0)[1]
          if low and low ~= id and redis.call('EXISTS', key.job(low)) == 0 then
            -- The holder's record is gone (deleted by hand, lost): drop it and hand the session on, so a successor
            -- parked behind it is woken rather than left waiting for a job that will never finish.
            wake(session)
            low = redis.call('ZRANGE', pk, 0, 0)[1]
          end
          if low and low ~= id and redis.call('ZSCORE', pk, id) then
            redis.call('LREM', proc, 1, id)
            redis.call('HSET', jk, 'status', 'waiting', 'waiting_for', low)
            redis.call('ZADD', key.waiting(agentOf(session)), redis.call('ZSCORE', pk, id), id)
            return {'waiting', id, low}
          end
          redis.call('HINCRBY', jk, 'attempts', 1)
          -- 'run' names the attempt's agent run once it is set up; '' until then, so no earlier attempt's run counts.
          redis.call('HSET', jk, 'status', 'running', 'worker', worker, 'started_at', nowIso, 'run', '')
          redis.call('HDEL', jk, 'waiting_for', 'retry_at', 'finished_at')
          feedbackDue(id)
          return {'running', id, redis.call('HGETALL', jk)}
        end
        """

    /// ARGV: prefix, worker, id, nowIso → {'running', id, fields} | {'waiting', id, holder} | {'missing'|'skipped', …}
    static let claimOne = script(
        name: "claim",
        source: helpers + "\n" + claim + "\n" + """
            return claim(ARGV[2], ARGV[3], ARGV[4])
            """)

    /// Non-blocking reserve across several queues in the given order. ARGV: prefix, worker, nowIso, agent…
    /// → the first claimable job, or {} when every queue is empty. Jobs parked as 'waiting' on the way are skipped.
    static let reserveAny = script(
        name: "reserve-any",
        source: helpers + "\n" + claim + "\n" + """
            local worker, nowIso = ARGV[2], ARGV[3]
            local proc = key.processing(worker)
            local budget = 64
            for i = 4, #ARGV do
              while budget > 0 do
                local id = redis.call('LMOVE', key.queue(ARGV[i]), proc, 'RIGHT', 'LEFT')
                if not id then break end
                budget = budget - 1
                local r = claim(worker, id, nowIso)
                if r[1] == 'running' then return r end
              end
            end
            return {}
            """)

    /// Producer: dedup the delivery, create jobs, queue them, drop sessions — one atomic round trip.
    /// ARGV: prefix, deliveryKey ('' = no dedup), dedupTtl, nowMs, jobCount, dropCount,
    ///       then per job: id, agent, session, fieldCount, field, value…; then the session keys to drop.
    /// → {'duplicate', previous ids…} | {'queued', ids…}
    static let enqueue = script(
        name: "enqueue",
        source: sessionHelpers + "\n" + """
            local dk, ttl, nowMs = ARGV[2], ARGV[3], ARGV[4]
            local jobs, drops = tonumber(ARGV[5]), tonumber(ARGV[6])
            if dk ~= '' then
              local previous = redis.call('GET', dk)
              if previous then
                -- Rewritten (same value and TTL) so the reply is a write a following WAIT covers: with replicas_ack, a
                -- redelivery is confirmed only once replicas have the first delivery's jobs too.
                redis.call('SET', dk, previous, 'KEEPTTL')
                local out = {'duplicate'}
                for id in string.gmatch(previous, '[^,]+') do out[#out + 1] = id end
                return out
              end
            end
            local i = 7
            local out = {'queued'}
            for _ = 1, jobs do
              local id, agent, session, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
              local seq = redis.call('INCR', key.sequence)
              -- The job's own fields go straight from ARGV: no table is built per job.
              redis.call('HSET', key.job(id), 'status', 'queued', 'attempts', '0', 'seq', seq, 'agent', agent,
                'session', session, unpack(ARGV, i + 4, i + 3 + 2 * n))
              redis.call('ZADD', key.pending(session), seq, id)
              redis.call('LPUSH', key.queue(agent), id)
              redis.call('ZADD', key.jobIndex, nowMs, id)
              out[#out + 1] = id
              i = i + 4 + 2 * n
            end
            for _ = 1, drops do
              dropSession(ARGV[i])
              i = i + 1
            end
            -- Last, so a failure above leaves no dedup record and a redelivery can still create the jobs.
            if dk ~= '' then
              local value = '-'
              if #out > 1 then value = table.concat(out, ',', 2) end
              redis.call('SET', dk, value, 'EX', ttl)
            end
            return out
            """)

    /// Records the end of an attempt — only if this worker still holds this attempt (a worker that lost its lease
    /// must not overwrite the result of the attempt that replaced it).
    /// ARGV: prefix, worker, id, attempt, outcome (succeeded|retry|dead), nowMs, nowIso, retentionSec, deadTtlSec,
    ///       retryDueMs, sessionId ('' = none), session key (to hand on if the record vanished), fieldCount, field, value…
    /// → {'ok', status} | {'lost', currentStatus, currentWorker, currentAttempt}
    static let finish = script(
        name: "finish",
        source: helpers + "\n" + """
            local worker, id, attempt, outcome = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
            local nowMs, nowIso, retention, deadTtl, dueMs, sid = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
            local knownSession, n = ARGV[12], tonumber(ARGV[13])
            local jk = key.job(id)
            local st, w, a, session, agent, repo = unpack(redis.call('HMGET', jk, 'status', 'worker', 'attempts', 'session', 'agent', 'repo'))
            if not st then
              -- The record vanished under the run: its session must not stay blocked behind it.
              redis.call('LREM', key.processing(worker), 1, id)
              if knownSession ~= '' then
                redis.call('ZREM', key.pending(knownSession), id)
                wake(knownSession)
              end
              return {'lost', '', '', ''}
            end
            if st ~= 'running' or w ~= worker or a ~= attempt then
              redis.call('LREM', key.processing(worker), 1, id)
              return {'lost', st or '', w or '', a or ''}
            end
            redis.call('LREM', key.processing(worker), 1, id)
            if n > 0 then
              local fields, cost = {}, nil
              for k = 0, n - 1 do
                table.insert(fields, ARGV[14 + 2 * k])
                table.insert(fields, ARGV[15 + 2 * k])
                if ARGV[14 + 2 * k] == 'cost_usd' then cost = tonumber(ARGV[15 + 2 * k]) end
              end
              redis.call('HSET', jk, unpack(fields))
              if cost and cost > 0 and cost < 1e9 then spend(agent, repo, cost, nowMs) end
            end
            if sid ~= '' then
              setSession(session, sid, nowMs)
              redis.call('HSET', jk, 'session_id', sid)
            end
            if outcome == 'succeeded' then
              tally(agent, 'succeeded')
              redis.call('HSET', jk, 'status', 'succeeded', 'finished_at', nowIso)
              redis.call('HDEL', jk, 'error')
              redis.call('EXPIRE', jk, retention)
              redis.call('EXPIRE', key.log(id), retention)
              redis.call('ZREM', key.pending(session), id)
              wake(session)
              feedbackDue(id)
              return {'ok', 'succeeded'}
            elseif outcome == 'retry' then
              tally(agent, 'failed')
              redis.call('HSET', jk, 'status', 'failed', 'finished_at', nowIso, 'retry_at', dueMs)
              redis.call('ZADD', key.delayed, dueMs, id)
              feedbackDue(id)
              return {'ok', 'failed'}
            else
              bury(id, session, redis.call('HGET', jk, 'error') or 'failed', nowIso, deadTtl)
              return {'ok', 'dead'}
            end
            """)

    /// Gives a running job back without counting the attempt: to the front of its queue (graceful shutdown), or with
    /// a due time to the delayed set (status stays `queued`; a deferral) — the promoter moves it back when due.
    /// ARGV: prefix, worker, id, attempt, reason, session key, dueMs ('' = now), countDeferral ('0' = no) → {'ok'} | {'lost'}
    static let release = script(
        name: "release",
        source: helpers + "\n" + """
            local worker, id, attempt, reason, knownSession = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
            local jk = key.job(id)
            redis.call('LREM', key.processing(worker), 1, id)
            local st, w, a, agent = unpack(redis.call('HMGET', jk, 'status', 'worker', 'attempts', 'agent'))
            if not st and knownSession and knownSession ~= '' then
              redis.call('ZREM', key.pending(knownSession), id)
              wake(knownSession)
            end
            if st ~= 'running' or w ~= worker or a ~= attempt then return {'lost'} end
            redis.call('HINCRBY', jk, 'attempts', -1)
            redis.call('HSET', jk, 'status', 'queued', 'note', reason)
            if ARGV[7] and ARGV[7] ~= '' then
              if ARGV[8] ~= '0' then redis.call('HINCRBY', jk, 'deferrals', 1) end
              redis.call('HSET', jk, 'retry_at', ARGV[7])
              redis.call('ZADD', key.delayed, ARGV[7], id)
            else
              redis.call('RPUSH', key.queue(agent), id)
            end
            -- Queued again either way: a status comment that said "working" must not go on saying it.
            feedbackDue(id)
            return {'ok'}
            """)

    /// Moves retries whose back-off has elapsed to the front of their queue. ARGV: prefix, nowMs, limit → count
    static let promote = script(
        name: "promote",
        source: """
            local due = redis.call('ZRANGEBYSCORE', key.delayed, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
            local moved = 0
            for _, id in ipairs(due) do
              redis.call('ZREM', key.delayed, id)
              local st, agent = unpack(redis.call('HMGET', key.job(id), 'status', 'agent'))
              if st == 'failed' or st == 'queued' then
                redis.call('HSET', key.job(id), 'status', 'queued')
                redis.call('RPUSH', key.queue(agent), id)
                moved = moved + 1
              end
            end
            return moved
            """)

    /// Gives back the jobs of workers whose lease expired (or of ARGV[6], a worker restarting under the same name).
    /// A job whose attempts are used up goes to the dead list. ARGV: prefix, nowIso, nowMs, deadTtl, defaultMax,
    /// forcedWorker ('' = none) → flat list of {worker, id, outcome}
    static let recover = script(
        name: "recover",
        source: helpers + "\n" + """
            local nowIso, nowMs, deadTtl, defaultMax, forced = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
            local out = {}
            local candidates = redis.call('ZRANGE', key.workers, 0, -1)
            if forced ~= '' then table.insert(candidates, forced) end
            for _, w in ipairs(candidates) do
              if w == forced or redis.call('EXISTS', key.lease(w)) == 0 then
                local proc = key.processing(w)
                for _, id in ipairs(redis.call('LRANGE', proc, 0, -1)) do
                  local jk = key.job(id)
                  local st, owner, a, m, agent, session =
                    unpack(redis.call('HMGET', jk, 'status', 'worker', 'attempts', 'max_attempts', 'agent', 'session'))
                  if st == 'running' and owner == w then
                    local attempts, max = tonumber(a) or 0, tonumber(m) or defaultMax
                    local why = 'worker ' .. w .. ' stopped during attempt ' .. attempts .. ' (lease expired)'
                    if attempts >= max then
                      bury(id, session, why .. '; no attempts left', nowIso, deadTtl)
                      table.insert(out, w); table.insert(out, id); table.insert(out, 'dead')
                    else
                      tally(agent, 'failed')
                      redis.call('HSET', jk, 'status', 'queued', 'error', why, 'recovered_at', nowIso)
                      redis.call('RPUSH', key.queue(agent), id)
                      feedbackDue(id)
                      table.insert(out, w); table.insert(out, id); table.insert(out, 'requeued')
                    end
                  elseif st == 'queued' and agent then
                    -- taken off the queue by BLMOVE but never claimed
                    redis.call('RPUSH', key.queue(agent), id)
                    table.insert(out, w); table.insert(out, id); table.insert(out, 'requeued')
                  end
                end
                redis.call('DEL', proc)
                if w ~= forced then
                  redis.call('ZREM', key.workers, w)
                  redis.call('DEL', key.worker(w))
                end
              end
            end
            return out
            """)

    /// Operator action: a dead (or failed, waiting for its retry) job goes back on its queue with fresh attempts. A
    /// dead job takes a new place at the end of its session's order; a failed one keeps its place. ARGV: prefix, id, nowIso → {'queued', agent} | {'refused', status} | {'missing'}
    static let requeue = script(
        name: "requeue",
        source: sessionHelpers + "\n" + """
            local id, now = ARGV[2], ARGV[3]
            local jk = key.job(id)
            local st, agent, session = unpack(redis.call('HMGET', jk, 'status', 'agent', 'session'))
            if not st then return {'missing'} end
            if st ~= 'dead' and st ~= 'failed' then return {'refused', st} end
            redis.call('LREM', key.dead, 0, id)
            redis.call('ZREM', key.delayed, id)
            redis.call('PERSIST', jk)
            redis.call('PERSIST', key.log(id))
            local pk = key.pending(session)
            local seq = redis.call('ZSCORE', pk, id)
            if st == 'dead' or not seq then
              -- A dead job left its session's order (its successors ran on): it queues up again at the end.
              seq = redis.call('INCR', key.sequence)
              redis.call('ZADD', pk, seq, id)
            end
            -- A failed job keeps its place: successors parked behind it stay parked until it finishes. A new,
            -- higher place would put a parked successor first with nothing to wake it, and both would wait forever.
            redis.call('HSET', jk, 'status', 'queued', 'attempts', '0', 'requeued_at', now, 'seq', tostring(seq))
            redis.call('HDEL', jk, 'retry_at', 'finished_at', 'worker')
            redis.call('LPUSH', key.queue(agent), id)
            feedbackDue(id)
            return {'queued', agent}
            """)

    /// Hands a session on if its lowest pending job's record is gone (repair). ARGV: prefix, session → 1
    static let wakeSession = script(
        name: "wake-session",
        source: helpers + "\n" + """
            wake(ARGV[2])
            return 1
            """)

    /// Deletes finished job records and their logs, checking each one's status in the same step, so a job re-queued
    /// meanwhile is never deleted. ARGV: prefix, includeDead ('1'|'0'), id… → number deleted
    static let purge = script(
        name: "purge",
        source: helpers + "\n" + """
            local withDead = ARGV[2] == '1'
            local n = 0
            for i = 3, #ARGV do
              local id = ARGV[i]
              local st, session = unpack(redis.call('HMGET', key.job(id), 'status', 'session'))
              if not st or st == 'succeeded' or (withDead and st == 'dead') then
                redis.call('DEL', key.job(id), key.log(id))
                redis.call('ZREM', key.jobIndex, id)
                if st == 'dead' then redis.call('LREM', key.dead, 0, id) end
                if session then
                  redis.call('ZREM', key.pending(session), id)
                  wake(session)
                end
                if st then n = n + 1 end
              end
            end
            return n
            """)

    /// The check every write a run makes about its job or session starts with: the job still names this worker and
    /// this attempt, and runs. A worker that lost its lease (its job recovered and re-run elsewhere) writes nothing.
    static let fence = """
        local function holds(id, worker, attempt)
          local st, w, a = unpack(redis.call('HMGET', key.job(id), 'status', 'worker', 'attempts'))
          return st == 'running' and w == worker and a == attempt
        end
        """

    /// Whether writing `incoming` more bytes would eat into the headroom kept below `maxmemory` for the queue's own
    /// writes (leases, claims, releases, results): `headroom` is a fraction of `maxmemory` (0 = no guard; no
    /// `maxmemory` = no guard). What agents fill (logs, transcripts) is refused past it, so Redis never fills up with
    /// agent output to the point where a lease cannot be renewed.
    static let budget = """
        local function intoHeadroom(incoming, headroom)
          if not headroom or headroom <= 0 then return false end
          -- INFO may be forbidden to this Redis user: then there is no guard, rather than a failed write.
          local info = redis.pcall('INFO', 'memory')
          if type(info) ~= 'string' then return false end
          local used, max = tonumber(string.match(info, 'used_memory:(%d+)')), tonumber(string.match(info, 'maxmemory:(%d+)'))
          if not used or not max or max == 0 then return false end
          return used + incoming > max * (1 - headroom)
        end
        """

    /// A script whose `body` runs only while ARGV[2..4] (worker, id, attempt) still hold the job; else it answers 0.
    static func fenced(_ name: String, _ body: String) -> RedisScript {
        script(
            name: name,
            source: sessionHelpers + "\n" + fence + "\n" + budget + "\nif not holds(ARGV[3], ARGV[2], ARGV[4]) then return 0 end\n" + body)
    }

    /// Fenced HSET of job fields. ARGV: prefix, worker, id, attempt, field, value… → 1 | 0 (not held)
    static let annotate = fenced(
        "annotate",
        """
        if #ARGV >= 6 then redis.call('HSET', key.job(ARGV[3]), unpack(ARGV, 5, #ARGV)) end
        return 1
        """)

    /// Fenced append to a job's log, capped to the last `maxLines`. ARGV: prefix, worker, id, attempt, maxLines,
    /// ttlSec, headroom, line… → 1 | 0 (not held) | 2 (not stored: Redis is near its maxmemory; counted in
    /// `log_refused` on the job)
    static let appendLog = fenced(
        "append-log",
        """
        local lk = key.log(ARGV[3])
        if #ARGV >= 8 then
          local incoming = 0
          for i = 8, #ARGV do incoming = incoming + #ARGV[i] + 16 end
          if intoHeadroom(incoming, tonumber(ARGV[7])) then
            redis.pcall('HINCRBY', key.job(ARGV[3]), 'log_refused', #ARGV - 7)
            return 2
          end
          -- In pieces: Lua's unpack fails past a few thousand values, and a failed batch would lose every line in it.
          for i = 8, #ARGV, 1000 do
            redis.call('RPUSH', lk, unpack(ARGV, i, math.min(i + 999, #ARGV)))
          end
          -- Lines ever appended: a reader following the capped log knows how many it missed.
          redis.call('HINCRBY', key.job(ARGV[3]), 'log_lines', #ARGV - 7)
        end
        redis.call('LTRIM', lk, -tonumber(ARGV[5]), -1)
        redis.call('EXPIRE', lk, ARGV[6])
        return 1
        """)

    /// Fenced drop of a stale session id (the CLI did not know it). ARGV: prefix, worker, id, attempt, session → 1 | 0
    static let dropStaleSession = fenced(
        "drop-stale-session",
        """
        dropSession(ARGV[5])
        return 1
        """)

    /// Fenced replace of a session's shipped transcript (a hash). ARGV: prefix, worker, id, attempt, session, ttlSec,
    /// headroom, field, value… → 1 | 0 (not held) | 2 (Redis is near its maxmemory: only a `skipped` record is kept,
    /// so another host starts fresh, with a warning, rather than resuming an older copy)
    static let storeTranscript = fenced(
        "store-transcript",
        """
        local tk = key.transcript(ARGV[5])
        local incoming, sid = 0, ''
        for i = 8, #ARGV, 2 do
          incoming = incoming + #ARGV[i] + #(ARGV[i + 1] or '')
          if ARGV[i] == 'session_id' then sid = ARGV[i + 1] end
        end
        if intoHeadroom(incoming, tonumber(ARGV[7])) then
          -- The older copy goes (a resume from it would miss turns); a small record says why. Near the limit a write
          -- can itself be refused: then the old copy stays and the caller still learns it was not stored.
          redis.pcall('DEL', tk)
          redis.pcall('HSET', tk, 'session_id', sid, 'bytes', incoming,
            'skipped', 'Redis was near its maxmemory (queue.redis_headroom kept for the queue): ' .. incoming .. ' bytes not stored')
          redis.pcall('EXPIRE', tk, ARGV[6])
          return 2
        end
        redis.call('DEL', tk)
        redis.call('HSET', tk, unpack(ARGV, 8, #ARGV))
        redis.call('EXPIRE', tk, ARGV[6])
        return 1
        """)

    /// Which of the given jobs no longer name this worker and attempt as running. ARGV: prefix, worker, (id, attempt)…
    /// → ids lost
    static let lostJobs = script(
        name: "lost-jobs",
        source: fence + "\n" + """
            local out = {}
            for i = 3, #ARGV, 2 do
              local st, w, a = unpack(redis.call('HMGET', key.job(ARGV[i]), 'status', 'worker', 'attempts'))
              -- Finished by this very attempt (a slot between its finish and its bookkeeping) is not lost; re-queued
              -- (recovered, same worker and attempt fields), taken by another worker or attempt, or gone, is.
              local mine = w == ARGV[2] and a == ARGV[i + 1]
              local finished = st == 'succeeded' or st == 'failed' or st == 'dead'
              if not (mine and (st == 'running' or finished)) then out[#out + 1] = ARGV[i] end
            end
            return out
            """)

    /// Gives back ids listed in a live worker's processing list that it does not run (a reply lost after Redis ran a
    /// BLMOVE/claim, a finish that gave up). A job still marked running by this worker is re-queued with the attempt
    /// counted (dead when none are left); a queued one goes back on its queue; anything else is just unlisted.
    /// ARGV: prefix, worker, nowIso, deadTtl, defaultMax, id… → flat list of {id, outcome}
    static let releaseStranded = script(
        name: "release-stranded",
        source: helpers + "\n" + """
            local worker, nowIso, deadTtl, defaultMax = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
            local proc = key.processing(worker)
            local out = {}
            for i = 6, #ARGV do
              local id = ARGV[i]
              if redis.call('LREM', proc, 0, id) > 0 then
                local jk = key.job(id)
                local st, owner, a, m, agent, session =
                  unpack(redis.call('HMGET', jk, 'status', 'worker', 'attempts', 'max_attempts', 'agent', 'session'))
                local outcome = 'unlisted'
                if st == 'running' and owner == worker then
                  local attempts, max = tonumber(a) or 0, tonumber(m) or defaultMax
                  local why = 'worker ' .. worker .. ' lost track of attempt ' .. attempts
                  if attempts >= max then
                    bury(id, session, why .. '; no attempts left', nowIso, deadTtl)
                    outcome = 'dead'
                  else
                    tally(agent, 'failed')
                    redis.call('HSET', jk, 'status', 'queued', 'error', why, 'recovered_at', nowIso)
                    redis.call('RPUSH', key.queue(agent), id)
                    feedbackDue(id)
                    outcome = 'requeued'
                  end
                elseif st == 'queued' and agent then
                  redis.call('RPUSH', key.queue(agent), id)
                  outcome = 'requeued'
                end
                out[#out + 1] = id
                out[#out + 1] = outcome
              end
            end
            return out
            """)

    /// Session bookkeeping and the dashboard's counters, shared by every script that touches them.
    static let sessionHelpers = """
        -- Session keys are 'agent:owner/repo:number'.
        local function agentOf(session) return string.match(session, '^([^:]*)') end
        local function setSession(session, sid, nowMs)
          if redis.call('HSET', key.sessions, session, sid) == 1 then redis.call('HINCRBY', key.sessionCounts, agentOf(session), 1) end
          redis.call('ZADD', key.sessionsUsed, nowMs, session)
        end
        local function dropSession(session)
          local dropped = redis.call('HDEL', key.sessions, session)
          if dropped == 1 then redis.call('HINCRBY', key.sessionCounts, agentOf(session), -1) end
          redis.call('ZREM', key.sessionsUsed, session)
          redis.call('DEL', key.transcript(session))
          return dropped
        end
        -- Counts an ended attempt in this minute's and this hour's stats (the dashboard's charts).
        local function tally(agent, outcome)
          if not agent then return end
          local now = tonumber(redis.call('TIME')[1])
          local m, h = key.statsMinute(math.floor(now / 60)), key.statsHour(math.floor(now / 3600))
          redis.call('HINCRBY', m, agent .. ':' .. outcome, 1)
          redis.call('EXPIRE', m, 7200)
          redis.call('HINCRBY', h, agent .. ':' .. outcome, 1)
          redis.call('EXPIRE', h, 8 * 86400)
        end
        -- Adds a run's own cost to its day's spend (UTC, by the finishing worker's clock) per agent and repository
        -- (an agent's total is the sum of its repositories': not kept twice), and counts the run.
        local function spend(agent, repo, cost, nowMs)
          if not agent then return end
          local dk = key.spendDay(math.floor(tonumber(nowMs) / 86400000))
          -- Integer micro-dollars: exact sums, and HINCRBY costs less than HINCRBYFLOAT on every finish.
          redis.call('HINCRBY', dk, 'repo:' .. agent .. ':' .. (repo or ''), math.floor(cost * 1000000 + 0.5))
          redis.call('HINCRBY', dk, 'runs:' .. agent, 1)
          redis.call('EXPIRE', dk, 400 * 86400)
        end
        -- Marks a job's forge feedback due (jobs the producer gave a 'feedback' field): a worker's feedback loop
        -- renders the job's new state into its status comment. 'feedback_v' counts the states, so a loop that
        -- rendered an older one knows to come back.
        local function feedbackDue(id)
          local jk = key.job(id)
          local fb, agent = unpack(redis.call('HMGET', jk, 'feedback', 'agent'))
          if not fb or fb == '' or not agent then return end
          redis.call('HINCRBY', jk, 'feedback_v', 1)
          redis.call('HDEL', jk, 'feedback_tries')
          redis.call('ZADD', key.feedback(agent), redisNowMs(), id)
        end
        """

    /// Drops sessions (operator, idle sweep). With a cutoff, only those last used at or before it: a session a run
    /// used since the sweep listed it stays. ARGV: prefix, cutoffMs ('' = any), session… → the sessions dropped
    static let dropSessions = script(
        name: "drop-sessions",
        source: sessionHelpers + "\n" + """
            local out = {}
            for i = 3, #ARGV do
              local used = tonumber(redis.call('ZSCORE', key.sessionsUsed, ARGV[i]))
              if ARGV[2] == '' or not used or used <= tonumber(ARGV[2]) then
                if dropSession(ARGV[i]) == 1 then out[#out + 1] = ARGV[i] end
              end
            end
            return out
            """)

    /// Recounts sessions per agent from `sessions` (after an upgrade from a version without the counter, or repair).
    /// ARGV: prefix → number of sessions
    static let recountSessions = script(
        name: "recount-sessions",
        source: sessionHelpers + "\n" + """
            redis.call('DEL', key.sessionCounts)
            local all = redis.call('HKEYS', key.sessions)
            for _, session in ipairs(all) do redis.call('HINCRBY', key.sessionCounts, agentOf(session), 1) end
            return #all
            """)

    /// The dashboard overview's counts in one read-only step: per agent (ARGV[3…]) queued, waiting, running (what the
    /// registered workers hold), delayed and dead (those two from the newest ARGV[2] entries), sessions, feedback not
    /// posted yet; then the totals: delayed, dead, sessions, and 1 if delayed or dead were sampled. Counting inside
    /// Redis keeps a few thousand small replies off the wire. ARGV: prefix, sampleLimit, agent…
    static let overviewColumns = 7
    static let overviewCounts = script(
        name: "overview-counts",
        source: """
            local n = tonumber(ARGV[2])
            local index, out = {}, {}
            for i = 3, #ARGV do
              index[ARGV[i]] = i - 2
              local base = (i - 3) * \(overviewColumns)
              out[base + 1] = redis.call('LLEN', key.queue(ARGV[i]))
              out[base + 2] = redis.call('ZCARD', key.waiting(ARGV[i]))
              out[base + 3], out[base + 4], out[base + 5] = 0, 0, 0
              out[base + 6] = tonumber(redis.call('HGET', key.sessionCounts, ARGV[i]) or '0') or 0
              out[base + 7] = redis.call('ZCARD', key.feedback(ARGV[i]))
            end
            local function add(id, column, wanted)
              local agent, status = unpack(redis.call('HMGET', key.job(id), 'agent', 'status'))
              local at = agent and index[agent]
              if at and (not wanted or status == wanted) then
                local slot = (at - 1) * \(overviewColumns) + column
                out[slot] = out[slot] + 1
              end
            end
            for _, w in ipairs(redis.call('ZRANGE', key.workers, 0, -1)) do
              for _, id in ipairs(redis.call('LRANGE', key.processing(w), 0, -1)) do add(id, 3, 'running') end
            end
            for _, id in ipairs(redis.call('ZREVRANGE', key.delayed, 0, n - 1)) do add(id, 4, nil) end
            for _, id in ipairs(redis.call('LRANGE', key.dead, 0, n - 1)) do add(id, 5, 'dead') end
            local delayed, dead = redis.call('ZCARD', key.delayed), redis.call('LLEN', key.dead)
            out[#out + 1] = delayed
            out[#out + 1] = dead
            out[#out + 1] = redis.call('HLEN', key.sessions)
            out[#out + 1] = (delayed > n or dead > n) and 1 or 0
            return out
            """)
}

/// Forge feedback: the due list per agent (`feedback:<agent>`), claimed by one worker at a time.
extension QueueScripts {
    /// Claims up to ARGV[5] jobs whose feedback is due: each is held by this worker for ARGV[4] ms (listed again at
    /// that time, so a worker that dies while posting is replaced). A job another live worker holds is skipped until
    /// its hold ends; one held by a worker whose lease is gone (it died) is taken over at once; a job whose record is
    /// gone is unlisted. `feedback_until` is the claim's token for `settleFeedback`.
    /// ARGV: prefix, agent, worker, holdMs, limit → flat {id, fields (HGETALL)}…
    static let claimFeedback = script(
        name: "feedback-claim",
        source: """
            local agent, worker, hold, limit = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
            local now = redisNowMs()
            local fk = key.feedback(agent)
            local out = {}
            for _, id in ipairs(redis.call('ZRANGEBYSCORE', fk, '-inf', now, 'LIMIT', 0, limit)) do
              local jk = key.job(id)
              if redis.call('EXISTS', jk) == 0 then
                redis.call('ZREM', fk, id)
              else
                local holder, untilMs = unpack(redis.call('HMGET', jk, 'feedback_holder', 'feedback_until'))
                local heldUntil = tonumber(untilMs or '') or 0
                if holder and holder ~= '' and holder ~= worker and heldUntil > now and redis.call('EXISTS', key.lease(holder)) == 1 then
                  -- Looked at again within 5 s: if the holder dies meanwhile, its claim is taken over then.
                  redis.call('ZADD', fk, math.min(heldUntil, now + 5000), id)
                else
                  redis.call('HSET', jk, 'feedback_holder', worker, 'feedback_until', tostring(now + hold))
                  redis.call('ZADD', fk, now + hold, id)
                  out[#out + 1] = id
                  out[#out + 1] = redis.call('HGETALL', jk)
                end
              end
            end
            return out
            """)

    /// Ends this worker's hold on a job's feedback — only if it still holds that claim (holder ARGV[4], token ARGV[10]).
    /// A worker whose hold ended and was taken over answers `lost`: it changes nothing but a `feedback_comment` or
    /// `feedback_reacted` not recorded yet, so a late post never replaces the comment the new holder uses.
    /// Writes the given fields (`feedback_comment`, …); `ok` = the state rendered (version ARGV[5]) was posted:
    /// unlisted unless a newer state came meanwhile (then due at once).
    /// Otherwise `retry` (due again in ARGV[7] ms, unless ARGV[8] tries are used up), `wait` (due again in ARGV[7] ms,
    /// no try counted: a rate limit) or `give_up`, with the error in `feedback_error`.
    /// `release` gives the claim back unattempted.
    /// ARGV: prefix, id, agent, worker, version, outcome (ok|retry|wait|give_up|release), delayMs, maxTries, error, claimToken,
    /// fieldCount, field, value… → 'done' | 'again' | 'later' | 'gave_up' | 'gone' | 'lost'
    static let settleFeedback = script(
        name: "feedback-settle",
        source: """
            local id, agent, worker, version, outcome = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
            local delay, maxTries, err, token, n = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], ARGV[10], tonumber(ARGV[11])
            local jk, fk = key.job(id), key.feedback(agent)
            if redis.call('EXISTS', jk) == 0 then
              redis.call('ZREM', fk, id)
              return 'gone'
            end
            local holder, untilMs = unpack(redis.call('HMGET', jk, 'feedback_holder', 'feedback_until'))
            if holder ~= worker or untilMs ~= token then
              for k = 0, n - 1 do
                local f = ARGV[12 + 2 * k]
                if f == 'feedback_comment' or f == 'feedback_reacted' then redis.call('HSETNX', jk, f, ARGV[13 + 2 * k]) end
              end
              if outcome == 'ok' then
                -- It may have posted an older state over the new holder's: post the current one again.
                redis.call('ZADD', fk, redisNowMs(), id)
              end
              return 'lost'
            end
            if n > 0 then
              local fields = {}
              for k = 0, n - 1 do
                table.insert(fields, ARGV[12 + 2 * k])
                table.insert(fields, ARGV[13 + 2 * k])
              end
              redis.call('HSET', jk, unpack(fields))
            end
            redis.call('HDEL', jk, 'feedback_holder', 'feedback_until')
            local now = redisNowMs()
            local current = redis.call('HGET', jk, 'feedback_v') or ''
            if outcome == 'release' then
              -- Not attempted (its hold was nearly over): due again now, for any worker.
              redis.call('ZADD', fk, now, id)
              return 'later'
            end
            if outcome == 'ok' then
              redis.call('HDEL', jk, 'feedback_error', 'feedback_tries')
              if current == version then
                redis.call('ZREM', fk, id)
                return 'done'
              end
              redis.call('ZADD', fk, now, id)
              return 'again'
            end
            redis.call('HSET', jk, 'feedback_error', err)
            if current ~= version then
              -- A newer state came while this one failed: try that one now, its tries fresh.
              redis.call('ZADD', fk, now, id)
              return 'again'
            end
            if outcome == 'wait' then
              -- Rate limited: not the post's fault, so no try is counted.
              redis.call('ZADD', fk, now + delay, id)
              return 'later'
            end
            local tries = redis.call('HINCRBY', jk, 'feedback_tries', 1)
            if outcome == 'retry' and tries < maxTries then
              redis.call('ZADD', fk, now + delay, id)
              return 'later'
            end
            redis.call('ZREM', fk, id)
            return 'gave_up'
            """)

    /// Unlists jobs whose record is gone (expired, purged) from each agent's feedback list, up to ARGV[2] entries per
    /// agent a call: entries of agents no worker can post for are never claimed, and would otherwise stay.
    /// ARGV: prefix, limit, agent… → number unlisted
    static let pruneFeedback = script(
        name: "feedback-prune",
        source: """
            local limit, removed = tonumber(ARGV[2]), 0
            for i = 3, #ARGV do
              local fk = key.feedback(ARGV[i])
              for _, id in ipairs(redis.call('ZRANGE', fk, 0, limit - 1)) do
                if redis.call('EXISTS', key.job(id)) == 0 then
                  redis.call('ZREM', fk, id)
                  removed = removed + 1
                end
              end
            end
            return removed
            """)
}
