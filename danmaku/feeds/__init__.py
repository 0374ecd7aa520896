"""Comment feeds, one module per wire protocol, chosen by ``type`` in a ``[[feeds]]`` table."""
