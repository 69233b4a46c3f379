"""The operator dashboard: server-rendered pages over the storage layer."""
