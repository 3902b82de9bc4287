"""The admin API (keys, audit log, usage), reached only with the admin key."""
