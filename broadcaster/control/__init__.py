"""Control: the status line now; the moderator API, health and metrics later."""
