"""RQ entry points: thin, take ids, reload rows, call a service."""
