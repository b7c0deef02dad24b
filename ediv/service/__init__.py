"""The engine service: the one API of the scenario lifecycle that every front end calls.

    from ediv.service import Service
    with Service(store, cluster, progress=print) as svc:
        plan = svc.deploy(spec_text, basedir=".", source_name="lab.xml")
        for r in svc.exec("lab", "start"):
            print(r.to_json())
        svc.release("lab")

See :mod:`ediv.service.core` (the state machine and the claim), :mod:`ediv.service.deploy`
(the deploy's stages) and :mod:`ediv.service.exec` (the exec's stages and per-VM results).
Errors are those of :mod:`ediv.errors`; ``ediv.errors.CODES`` maps them to exit codes and
CIM status codes.
"""

from ediv.errors import AlreadyExists, Busy, EdivError, InputError, NotFound, WrongState
from ediv.service.core import Service, scenario_status
from ediv.service.exec import ExecResult
from ediv.state import Claim

__all__ = ["AlreadyExists", "Busy", "Claim", "EdivError", "ExecResult", "InputError",
           "NotFound", "Service", "WrongState", "scenario_status"]
