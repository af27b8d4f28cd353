"""`headway export-otel`: send recorded runs as OpenTelemetry spans to an OTLP/HTTP endpoint.

Registered by `headway.cli`; OpenTelemetry is imported only when the command runs (`headway[otel]`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._errors import HeadwayError
from ._guard import DEFAULT_TRACES
from ._store import is_postgres_dsn

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from .cli import Stores

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add `export-otel` to the CLI's sub-commands (`common` carries --store)."""
    p = commands.add_parser(
        "export-otel",
        help="send recorded runs to an OpenTelemetry collector (OTLP/HTTP): Jaeger, Phoenix, Langfuse",
        parents=[common],
    )
    p.add_argument(
        "--endpoint",
        help=f"OTLP/HTTP base URL (default: $OTEL_EXPORTER_OTLP_ENDPOINT, else {DEFAULT_ENDPOINT}); "
        "headers such as credentials come from $OTEL_EXPORTER_OTLP_HEADERS",
    )
    p.add_argument("--run", action="append", dest="runs", metavar="RUN", help="only this run (repeatable)")
    p.add_argument(
        "--capture-content",
        action="store_true",
        help="also export tool arguments, results and messages (secret-looking fields redacted)",
    )
    p.add_argument("--service-name", default="headway", help="the service.name resource attribute")
    p.set_defaults(command=_export)


def traces_url(endpoint: str) -> str:
    """The traces URL of an OTLP/HTTP endpoint given as a base URL or as the traces URL itself."""
    url = endpoint.rstrip("/")
    return url if url.endswith("/v1/traces") else url + "/v1/traces"


def _export(args: argparse.Namespace) -> int:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        from .otel import export_runs
    except ImportError as e:
        raise HeadwayError(f'export-otel needs OpenTelemetry: pip install "headway[otel]" ({e})') from None

    class Counted(SpanExporter):
        """The OTLP exporter, counting what the endpoint took: it logs a refusal but never raises."""

        def __init__(self, inner: SpanExporter) -> None:
            self.inner, self.sent, self.failed = inner, 0, 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            result = self.inner.export(spans)
            if result is SpanExportResult.SUCCESS:
                self.sent += len(spans)
            else:
                self.failed += len(spans)
            return result

        def shutdown(self) -> None:
            self.inner.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return self.inner.force_flush(timeout_millis)

    target = getattr(args, "store", None) or os.environ.get("HEADWAY_TRACES") or DEFAULT_TRACES
    url = traces_url(args.endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT)
    counted = Counted(OTLPSpanExporter(endpoint=url))
    provider = TracerProvider(resource=Resource.create({"service.name": args.service_name}))
    provider.add_span_processor(BatchSpanProcessor(counted))
    stores: Stores | None = None
    try:
        if is_postgres_dsn(target):
            from .cli import open_stores

            stores = open_stores(target)
        source = target if stores is None else stores.traces  # a SQLite or JSONL file is read as it is
        n = export_runs(source, provider, run_ids=args.runs, capture_content=args.capture_content)
    finally:
        provider.shutdown()
        if stores is not None:
            stores.close()
    if counted.failed:
        raise HeadwayError(
            f"{url} refused or did not take {counted.failed} of {counted.failed + counted.sent} spans"
        )
    print(f"exported {n} run{'' if n == 1 else 's'} ({counted.sent} spans) to {url}")
    return 0
