"""ediv-host: the host agent that makes a (sub-)scenario real on one machine.

Invoked as ``ediv-host VERB`` (usually over SSH by the controller); see docs/agent-protocol.md.
"""

AGENT_VERSION = "0.1.0"

# Parts of the agent protocol the controller relies on (docs/agent-protocol.md)
# ediv-host vm VM ACTION
VM_ACTIONS = ("start", "stop", "reboot", "reset", "shutdown", "pause", "resume")
EXIT_WRONG_STATE = 4  # the request does not apply to a VM's state
