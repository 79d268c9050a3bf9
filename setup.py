"""Packaging for tegrastats-api.

The dashboard lives in the top-level ``static/`` folder of the source tree and is
shipped inside the package as ``tegrastats_api/static`` (see ``package_dir``), so a
wheel, an sdist and an editable install all find it through
``tegrastats_api.config.default_static_dir()``.
"""
import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"',
    (HERE / "tegrastats_api" / "__init__.py").read_text(encoding="utf-8"),
    re.M,
).group(1)

setup(
    name="tegrastats-api",
    version=VERSION,
    description="Live NVIDIA Jetson health (tegrastats) over REST, WebSocket, Socket.IO and Prometheus",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.8",
    packages=["tegrastats_api", "tegrastats_api.static"],
    package_dir={"tegrastats_api.static": "static"},
    package_data={
        "tegrastats_api": ["data/boards/*.txt", "py.typed"],
        "tegrastats_api.static": ["*", "**/*"],
    },
    # Templates for a service set up by hand (packaging/install.sh uses them): they land
    # in <prefix>/share/tegrastats-api/ (e.g. /opt/tegrastats-api/share/tegrastats-api/).
    data_files=[
        ("share/tegrastats-api", [
            "packaging/tegrastats-api.service",
            "packaging/tegrastats-api.conf",
            "packaging/tegrastats-api.default",
        ]),
    ],
    install_requires=[
        # The lowest versions `make test-stacks` runs the whole suite on: Ubuntu 22.04's
        # (tests/stacks/ubuntu-22.04.txt); packaging/debian/control says the same.
        "tornado>=6.1",
        "python-socketio>=5.0.3",
        "python-engineio>=4.0.0",
        "configargparse>=1.5.3",
        "prometheus-client>=0.9.0",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-timeout>=2",  # the per-test safety net (pyproject.toml: timeout)
            "hypothesis>=6",
            "websocket-client>=1.0",
            "requests>=2.25",
            "vermin>=1.5",
            # /api/openapi.json tests. On Python 3.8: openapi-spec-validator 0.7.1 (0.7.2
            # does not import there) and schemathesis 3.39, whose last release supports 3.8.
            "jsonschema>=4.0",
            "openapi-spec-validator>=0.7.1,!=0.7.2",
            "schemathesis>=3.39",
            "build",  # the sdist test builds with `python -m build`
            "orjson",  # so that the tests cover the optional encoder (tests/test_hub.py)
            # MQTT tests (tests/test_mqtt.py): the server's client and the test subscriber, and
            # Jinja2 to render the Home Assistant templates as Home Assistant does
            "paho-mqtt>=1.6",
            "jinja2>=3",
        ],
        # `--mqtt`: paho-mqtt 1.6 (Debian's and Ubuntu's python3-paho-mqtt) or 2.x (PyPI)
        "mqtt": ["paho-mqtt>=1.6"],
        "dev": ["ruff", "mypy"],
        # Optional: the hub encodes each sample's JSON with orjson where installed (the
        # same bytes as the standard json module; docs/PERFORMANCE.md).
        "speed": ["orjson"],
    },
    entry_points={"console_scripts": ["tegrastats-api = tegrastats_api.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.8",
        "Programming Language :: Python :: 3.12",
        "Operating System :: POSIX :: Linux",
        "Framework :: Tornado",
        "Topic :: System :: Monitoring",
    ],
)
