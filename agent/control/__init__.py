"""The control link: the agent reports to a control plane over ZeroMQ (issue 12).

`codec.py` frames the wire, `protocol.py` is the sans-io state machine (reliability rules), `link.py` the
thin pyzmq shell, `capability.py` wires it into the agent (off unless `Config.control_url` is set).
"""

from ..services import Key
from .service import ControlService

CONTROL_KEY = Key("control", ControlService)

__all__ = ["CONTROL_KEY", "ControlService"]
