"""The delivery side of dmrelay: DmTracker client, retry policy, rate limiter, worker."""
