"""mof of ediv."""
