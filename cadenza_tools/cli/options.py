"""Options several command groups take (Teraslice's paging, following an execution)."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

From = Annotated[int | None, typer.Option("--from", min=0, help="Skip this many documents.")]
Size = Annotated[int | None, typer.Option(min=0, help="At most this many documents.")]
Sort = Annotated[
    str | None, typer.Option(help="_updated or _created, then :asc or :desc (_updated:desc).")
]
Follow = Annotated[
    bool,
    typer.Option("--follow", "-f", help="Follow the execution to its end."),
]
Interval = Annotated[float, typer.Option(min=0.05, help="Seconds between polls when following.")]


class CleanupType(enum.StrEnum):
    all = "all"
    errors = "errors"
    pending = "pending"


Cleanup = Annotated[
    CleanupType | None,
    typer.Option(help="Reprocess only: all (error and started slices), errors, or pending."),
]
Add = Annotated[int | None, typer.Option(min=0, help="Workers to add.")]
Remove = Annotated[int | None, typer.Option(min=0, help="Workers to remove.")]
Total = Annotated[int | None, typer.Option(min=0, help="Set the number of workers.")]
StopTimeout = Annotated[
    float | None,
    typer.Option("--timeout", min=0, help="Seconds the stop may wait."),
]
Blocking = Annotated[
    bool, typer.Option("--blocking/--no-blocking", help="Wait until the execution has stopped.")
]
