"""The supervisor: `tick(now)` (tick.py) fires due jobs (firing.py), then sweeps stalled
runs (sweep.py); what a tick did is a TickStats (stats.py)."""

from chalicelib.services.supervisor.firing import StartSender
from chalicelib.services.supervisor.stats import TickStats
from chalicelib.services.supervisor.tick import SupervisorService

__all__ = ["StartSender", "SupervisorService", "TickStats"]
