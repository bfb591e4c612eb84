"""Cadenza's Chalice app: HTTP routes, the supervisor schedule and the SQS workers."""

from typing import Any

from chalice.app import Chalice, CloudWatchEvent, Rate, SQSEvent

from chalicelib.config import Settings
from chalicelib.entrypoints import handlers
from chalicelib.entrypoints.http import blueprints
from chalicelib.entrypoints.http.errors import method_not_allowed
from chalicelib.entrypoints.logs import configure as configure_logs

configure_logs()  # JSON lines with the job and run ids, in Lambda only

app = Chalice(app_name="cadenza")
for blueprint, url_prefix in blueprints():
    app.register_blueprint(blueprint, url_prefix=url_prefix)
app.register_middleware(method_not_allowed, "http")

# read here, uncached: the queue names are the event sources' configuration
_settings = Settings.from_env()


@app.schedule(Rate(1, unit=Rate.MINUTES), name="supervisor")
def supervisor(event: CloudWatchEvent) -> dict[str, Any]:
    return handlers.on_tick(event.to_dict())


# starts arrive two seconds ahead of their slot: a one-second window fills batches, so fewer
# concurrent invocations wait out the same second
@app.on_sqs_message(
    queue=_settings.start_queue,
    batch_size=10,
    name="start_worker",
    maximum_batching_window_in_seconds=1,
)
def start_worker(event: SQSEvent) -> dict[str, Any]:
    return handlers.on_start_batch(event.to_dict(), event.context)


@app.on_sqs_message(queue=_settings.slice_queue, batch_size=10, name="slice_worker")
def slice_worker(event: SQSEvent) -> dict[str, Any]:
    return handlers.on_slice_batch(event.to_dict(), event.context)
