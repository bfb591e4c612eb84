"""Cadenza's Chalice app: HTTP routes, the supervisor schedule and the SQS workers."""

import os
from typing import Any

from chalice.app import Chalice, CloudWatchEvent, Rate, SQSEvent

from chalicelib import handlers
from chalicelib.api.admin import admin
from chalicelib.api.assets import make_blueprint as make_assets_blueprint
from chalicelib.api.scheduled_jobs import make_blueprint as make_scheduled_jobs_blueprint
from chalicelib.api.v1 import make_blueprint

app = Chalice(app_name="cadenza")
app.register_blueprint(make_blueprint("cadenza_v1"), url_prefix="/v1")
app.register_blueprint(make_blueprint("cadenza_root"))
app.register_blueprint(make_assets_blueprint("cadenza_assets_v1"), url_prefix="/v1")
app.register_blueprint(make_assets_blueprint("cadenza_assets_root"))
app.register_blueprint(make_scheduled_jobs_blueprint("cadenza_scheduled_jobs"))
app.register_blueprint(admin)

_stage = os.environ.get("CADENZA_STAGE", "dev")
_stage_prefix = os.environ.get("CADENZA_PREFIX", f"cadenza-{_stage}")
START_QUEUE = os.environ.get("CADENZA_START_QUEUE", f"{_stage_prefix}-start")
SLICE_QUEUE = os.environ.get("CADENZA_SLICE_QUEUE", f"{_stage_prefix}-slices")


@app.schedule(Rate(1, unit=Rate.MINUTES), name="supervisor")
def supervisor(event: CloudWatchEvent) -> dict[str, Any]:
    return handlers.on_tick(event.to_dict())


# starts arrive two seconds ahead of their slot: a one-second window fills batches, so fewer
# concurrent invocations wait out the same second
@app.on_sqs_message(
    queue=START_QUEUE, batch_size=10, name="start_worker", maximum_batching_window_in_seconds=1
)
def start_worker(event: SQSEvent) -> dict[str, Any]:
    return handlers.on_start_batch(event.to_dict(), event.context)


@app.on_sqs_message(queue=SLICE_QUEUE, batch_size=10, name="slice_worker")
def slice_worker(event: SQSEvent) -> dict[str, Any]:
    return handlers.on_slice_batch(event.to_dict(), event.context)
