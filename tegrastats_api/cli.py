"""The ``tegrastats-api`` command. The only module that prints or configures logging."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from tegrastats_api import __version__


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (placeholder until the CLI issue lands)."""
    parser = argparse.ArgumentParser(
        prog="tegrastats-api",
        description="Serve NVIDIA Jetson tegrastats over REST, WebSocket and Socket.IO.",
    )
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    parser.parse_args(sys.argv[1:] if argv is None else argv)
    parser.print_help()
    return 0
