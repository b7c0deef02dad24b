"""Plugs the engine into the WBEM server: root/ediv providers, methods, jobs, indications.

    plugin = EnginePlugin()
    handle = serve(config, plugins=[plugin])   # plugin.engine, plugin.jobs are then set
"""

from __future__ import annotations

from ediv.provider.associations import Associations
from ediv.provider.cim_paths import VM_REQUESTS
from ediv.provider.config import ServerConfig
from ediv.provider.engine import Engine
from ediv.provider.engine_providers import EngineModel
from ediv.provider.indications import IndicationHub
from ediv.provider.jobs import JobRunner
from ediv.provider.methods import EngineMethods
from ediv.provider.operations import Dispatcher
from ediv.provider.providers import ProviderRegistry
from ediv.provider.store_watch import StoreWatch

# RequestStateChange values EDIV_VirtualSystem accepts (start, stop, reboot, reset)
VM_STATE_CHANGES: list[int] = sorted(VM_REQUESTS)


class EnginePlugin:
    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.jobs: JobRunner | None = None
        self.model: EngineModel | None = None
        self.indications: IndicationHub | None = None

    def __call__(self, registry: ProviderRegistry, dispatcher: Dispatcher,
                 config: ServerConfig) -> None:
        engine = Engine(config)
        engine.store().fail_orphaned_jobs()  # jobs of a previous server process end as failed
        model = EngineModel(engine, dispatcher.host, VM_STATE_CHANGES)
        model.register(registry)
        Associations(model).register(registry)
        jobs = JobRunner(engine)
        EngineMethods(engine, jobs, dispatcher).register(dispatcher)
        hub = IndicationHub(dispatcher.schema, dispatcher.host, StoreWatch(engine),
                            store=engine.store, listeners=config.indication_listeners)
        hub.register(registry)
        hub.load()  # the subscriptions kept in the state store, before clients can connect
        hub.start()
        self.engine, self.jobs, self.model, self.indications = engine, jobs, model, hub

    def stop(self) -> None:
        """Stop the indication threads and wait for running jobs (tests)."""
        self.stop_indications()
        if self.jobs is not None:
            self.jobs.wait_all(120)

    def stop_indications(self, timeout: float = 10) -> None:
        """No more change detection or deliveries from this process."""
        if self.indications is not None:
            self.indications.stop(timeout)
