"""``python -m tegrastats_api``: the same as the ``tegrastats-api`` console script."""
import sys

from tegrastats_api.cli import main

sys.exit(main())
