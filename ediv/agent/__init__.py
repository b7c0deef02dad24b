"""ediv-host: the host agent that makes a (sub-)scenario real on one machine.

Invoked as ``ediv-host VERB`` (usually over SSH by the controller); see docs/agent-protocol.md.
"""

AGENT_VERSION = "0.1.0"
