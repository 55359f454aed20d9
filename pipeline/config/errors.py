"""Errors shared by the config sections (kept apart from config.py so that sections can raise them too)."""


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the field."""
