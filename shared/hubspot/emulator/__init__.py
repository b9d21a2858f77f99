"""The local HubSpot emulator: ``Emulator(port=0, ...).start()``; see ``emulator.py``."""

from shared.hubspot.emulator.emulator import Emulator

__all__ = ["Emulator"]
