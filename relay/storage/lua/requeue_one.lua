-- Give back one delivery of our own processing list that no thread works on; only if it is
-- still listed, so a thread that just finished it does not see it queued again.
-- KEYS[1]: the processing list. ARGV[1..4]: as requeue_if_lost.lua; ARGV[5]: the id.
-- Returns 1 if requeued.
if redis.call('LREM', KEYS[1], 1, ARGV[5]) == 0 then return 0 end
return requeue_if_lost(ARGV[5])
