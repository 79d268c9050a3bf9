"""Home Assistant's MQTT discovery schema, as tables a test can check a config against.

Taken from Home Assistant's documentation (integrations/mqtt, "MQTT Discovery": the topic
``<discovery_prefix>/<component>/[<node_id>/]<object_id>/config``, ids of ``[a-zA-Z0-9_-]``,
an empty retained payload removes) and its source, home-assistant/core:
``homeassistant/components/sensor/const.py`` (SensorDeviceClass, DEVICE_CLASS_UNITS,
DEVICE_CLASS_STATE_CLASSES, SensorStateClass), ``homeassistant/components/binary_sensor``
(BinarySensorDeviceClass), ``homeassistant/components/mqtt/schemas.py``
(MQTT_ENTITY_DEVICE_INFO_SCHEMA, MQTT_ORIGIN_INFO_SCHEMA, availability) and
``homeassistant/components/mqtt/sensor.py`` / ``binary_sensor.py`` (the platform options).
Only the device classes this project could use have their units listed; the others are
named so that a typo is caught. Full key names only (no abbreviations).

What it does not: run Home Assistant, or know options a config of ours never uses.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Mapping

ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
TOPIC_RE = re.compile(r"^(?P<prefix>.+)/(?P<component>[a-z_]+)/(?P<node_id>[^/]+)/(?P<object_id>[^/]+)/config$")

SENSOR_DEVICE_CLASSES = {
    "date", "enum", "timestamp", "apparent_power", "aqi", "area", "atmospheric_pressure", "battery",
    "blood_glucose_concentration", "carbon_monoxide", "carbon_dioxide", "conductivity", "current", "data_rate",
    "data_size", "distance", "duration", "energy", "energy_distance", "energy_storage", "frequency", "gas",
    "humidity", "illuminance", "irradiance", "moisture", "monetary", "nitrogen_dioxide", "nitrogen_monoxide",
    "nitrous_oxide", "ozone", "ph", "pm1", "pm10", "pm25", "power_factor", "power", "precipitation",
    "precipitation_intensity", "pressure", "reactive_power", "signal_strength", "sound_pressure", "speed",
    "sulphur_dioxide", "temperature", "temperature_delta", "volatile_organic_compounds",
    "volatile_organic_compounds_parts", "voltage", "volume", "volume_storage", "volume_flow_rate", "water",
    "weight", "wind_direction", "wind_speed",
}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
# DEVICE_CLASS_UNITS for the classes a Jetson's readings fit (UnitOfTemperature, UnitOfPower,
# UnitOfInformation, UnitOfFrequency, UnitOfElectricPotential/Current).
DEVICE_CLASS_UNITS = {
    "temperature": {"°C", "°F", "K"},
    "power": {"W", "kW", "MW", "GW", "TW"},
    "data_size": {"bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB",
                  "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"},
    "frequency": {"Hz", "kHz", "MHz", "GHz"},
    "voltage": {"µV", "mV", "V", "kV", "MV"},
    "current": {"mA", "A"},
}
DEVICE_CLASS_STATE_CLASSES = {
    "temperature": {"measurement"},
    "power": {"measurement"},
    "data_size": STATE_CLASSES,
    "frequency": {"measurement"},
    "voltage": {"measurement"},
    "current": {"measurement"},
}
BINARY_SENSOR_DEVICE_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas",
    "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power",
    "presence", "problem", "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
}
COMMON_OPTIONS = {
    "name", "unique_id", "object_id", "default_entity_id", "icon", "entity_category", "entity_picture",
    "enabled_by_default", "device", "origin", "availability", "availability_mode", "availability_template",
    "availability_topic", "payload_available", "payload_not_available", "json_attributes_topic",
    "json_attributes_template", "encoding", "qos", "state_topic", "value_template",
}
OPTIONS = {
    "sensor": COMMON_OPTIONS | {"device_class", "expire_after", "force_update", "last_reset_value_template",
                                "options", "state_class", "suggested_display_precision", "unit_of_measurement"},
    "binary_sensor": COMMON_OPTIONS | {"device_class", "expire_after", "force_update", "off_delay",
                                       "payload_off", "payload_on"},
}
DEVICE_OPTIONS = {"identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version",
                  "serial_number", "sw_version", "via_device", "suggested_area", "configuration_url"}
ORIGIN_OPTIONS = {"name", "sw_version", "support_url"}


def _string(value: Any, what: str) -> None:
    assert isinstance(value, str) and value, "%s must be a non-empty string: %r" % (what, value)


def _topic(value: Any, what: str) -> None:
    _string(value, what)
    assert "+" not in value and "#" not in value and "\0" not in value, "%s holds a wildcard: %r" % (what, value)


def check_config(topic: str, config: Mapping[str, Any]) -> Dict[str, str]:
    """Assert that ``config``, published on ``topic``, is a valid discovery config; returns the
    topic's parts (prefix, component, node_id, object_id)."""
    match = TOPIC_RE.match(topic)
    assert match, "not a discovery config topic: %s" % topic
    parts = match.groupdict()
    component = parts["component"]
    assert component in OPTIONS, "component %r not supported here" % component
    assert ID_RE.match(parts["node_id"]) and ID_RE.match(parts["object_id"]), topic
    unknown = set(config) - OPTIONS[component]
    assert not unknown, "%s: options Home Assistant does not know: %s" % (topic, sorted(unknown))
    _topic(config.get("state_topic"), "state_topic")  # required by both platforms
    _topic(config.get("availability_topic"), "availability_topic")
    for key in ("name", "unique_id", "value_template"):
        _string(config.get(key), key)
    assert config["value_template"].startswith("{{") and config["value_template"].endswith("}}")
    device_class = config.get("device_class")
    if component == "sensor":
        assert config.get("state_class") in STATE_CLASSES, topic
        if device_class is not None:
            assert device_class in SENSOR_DEVICE_CLASSES, device_class
            assert device_class in DEVICE_CLASS_UNITS, "no unit table for %s" % device_class
            assert config.get("unit_of_measurement") in DEVICE_CLASS_UNITS[device_class], topic
            assert config["state_class"] in DEVICE_CLASS_STATE_CLASSES[device_class], topic
    elif device_class is not None:
        assert device_class in BINARY_SENSOR_DEVICE_CLASSES, device_class
    if "icon" in config:
        assert re.match(r"^[a-z0-9-]+:[a-z0-9-]+$", config["icon"]), config["icon"]
    device = config["device"]
    assert set(device) <= DEVICE_OPTIONS, sorted(set(device) - DEVICE_OPTIONS)
    assert isinstance(device["identifiers"], list) and device["identifiers"], "a device needs identifiers"
    for key in device:
        if key != "identifiers":
            _string(device[key], "device." + key)
    for identifier in device["identifiers"]:
        _string(identifier, "device.identifiers")
    origin = config.get("origin", {"name": "x"})
    assert set(origin) <= ORIGIN_OPTIONS and isinstance(origin.get("name"), str), origin
    return parts
