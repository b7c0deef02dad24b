"""A root/ediv + interop dispatcher in-process (no HTTP, no indication or job threads) over a
state store of its own: for tests that compare the dispatcher's writers and look-ups with
their object-model references."""

from __future__ import annotations

from pathlib import Path

from ediv import state as st
from ediv.provider.associations import Associations
from ediv.provider.config import load_config
from ediv.provider.engine import Engine
from ediv.provider.engine_plugin import VM_STATE_CHANGES
from ediv.provider.engine_providers import EngineModel
from ediv.provider.interop import InteropModel
from ediv.provider.operations import Dispatcher
from ediv.provider.providers import ProviderRegistry
from ediv.provider.schema import EDIV_NAMESPACE, INTEROP_NAMESPACE, load_schema

REPO = Path(__file__).resolve().parents[2]
SIMPLE6 = (REPO / "examples" / "simple6.xml").read_text()
HOST = "server.example:5989"
VMS = ("h1", "h2", "r1", "r2", "h3", "h4")


def populate(state_path: Path) -> None:
    """A deployed scenario (lab, with a failed job), one only defined (draft)."""
    store = st.StateStore(state_path)
    spec = SIMPLE6.replace("<simulation_name>simple6<", "<simulation_name>lab<")
    store.create_scenario("lab", spec, basedir="/nonexistent", algorithm="RoundRobin",
                          state=st.DEPLOYING)
    store.set_vms("lab", [(vm, "alpha" if i % 2 else "beta", "container", "running")
                          for i, vm in enumerate(VMS)])
    store.allocate_segments("lab", "vxlan", 1000, 1999, [("Net0", ["alpha", "beta"])])
    store.set_scenario_state("lab", st.DEPLOYED)
    store.unlock("lab")
    store.create_scenario("draft", spec.replace(">lab<", ">draft<"), basedir="/nonexistent",
                          algorithm="RoundRobin")
    store.unlock("draft")
    job = store.start_job("deploy", "lab")
    store.job_progress(job, 40, "placing <VMs> & nets")
    store.finish_job(job, False, error="host \"beta\" unreachable")
    store.close()


def make_dispatcher(base: Path, **kwargs) -> Dispatcher:
    cfg = load_config(base / "server.toml", state=base / "state.db")
    cfg.cluster_file = REPO / "examples" / "cluster.conf"
    if not (base / "state.db").exists():
        populate(cfg.state_path)
    registry = ProviderRegistry()
    disp = Dispatcher(load_schema(base / "cache"), registry, host=HOST, **kwargs)
    InteropModel(registry, [INTEROP_NAMESPACE, EDIV_NAMESPACE]).register()
    model = EngineModel(Engine(cfg), HOST, VM_STATE_CHANGES)
    model.register(registry)
    Associations(model).register(registry)
    return disp
