"""ovf of ediv."""
