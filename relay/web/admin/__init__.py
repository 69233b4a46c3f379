"""The operator's side: admin API, dashboard, and the read model they share."""
