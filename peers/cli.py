"""The ``peers`` command line (typer)."""

from __future__ import annotations

import typer

from peers.config import load_settings
from peers.errors import PeersError
from peers.log import configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    name="peers",
    help="Let AI coding-agent sessions find each other, message each other and coordinate.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def serve() -> None:
    """Run the stdio MCP server for one agent session (launched by the agent client)."""
    try:
        settings = load_settings()
    except PeersError as exc:
        typer.echo(f"peers serve: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    from peers.server import serve as run

    run(settings)


@app.command()
def demo() -> None:
    """Start three real sessions in a temporary store and show them talking."""
    from peers.demo import run_demo

    try:
        run_demo()
    except Exception as exc:
        typer.echo(f"peers demo failed: {exc}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    app()
