"""`billing api serve`: uvicorn running the API, with shared metrics when it runs several worker processes."""

from __future__ import annotations

import tempfile
from pathlib import Path

from billing_core import settings


def serve(*, port: int | None = None, workers: int = 1, host: str = "127.0.0.1") -> None:
    """Serve the API until stopped (`workers` processes sharing the port, their metrics in one folder)."""
    import uvicorn

    if workers > 1 and settings.metrics_dir() is None:
        settings.use_metrics_dir(Path(tempfile.mkdtemp(prefix="billing-api-metrics-")))
    uvicorn.run(
        "api.app:create_app", factory=True, host=host, port=port or settings.api_port(), workers=workers,
        access_log=False, log_level="warning", proxy_headers=False, server_header=False,
    )
