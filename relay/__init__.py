"""dmrelay: a webhook relay between ManyChat and the DmTracker API."""
