"""Settings from the environment. ``get_settings()`` is the one way to read them."""

from shared.config.settings import Settings, get_settings, reset_settings

__all__ = ["Settings", "get_settings", "reset_settings"]
