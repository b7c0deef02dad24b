"""client of ediv."""
