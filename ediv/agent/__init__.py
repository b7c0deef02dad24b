"""ediv-host: the host agent that makes a (sub-)scenario real on one machine.

Invoked as ``ediv-host VERB`` (usually over SSH by the controller); see docs/agent-protocol.md.
"""

AGENT_VERSION = "0.1.0"

# Parts of the agent protocol the controller relies on (docs/agent-protocol.md), defined once
# in ediv.protocol
from ediv.protocol import EXIT_WRONG_STATE, VM_ACTIONS  # noqa: E402

__all__ = ["AGENT_VERSION", "EXIT_WRONG_STATE", "VM_ACTIONS"]
