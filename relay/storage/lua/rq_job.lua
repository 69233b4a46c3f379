-- Shared by the scripts that show a delivery's state to RQ (prepended to them, not run alone).
-- RQ_JOB_PREFIX: what a delivery id is added to, to name its RQ job hash (relay/storage/rqjobs.py;
-- a test holds it equal to RQ's own).
local RQ_JOB_PREFIX = 'rq:job:'
