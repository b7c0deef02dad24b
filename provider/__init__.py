"""provider of ediv."""
