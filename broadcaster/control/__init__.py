"""Control: the moderator console (WebSocket API, dashboard, preview), /healthz, /metrics, the status line."""
