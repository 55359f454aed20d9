"""Errors shared by the config sections (kept apart from pipeline_config.py so that every section can raise them)."""


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the field."""
