"""The local HubSpot emulator: ``Emulator(port=0, ...).start()``; see ``emulator.py``."""

from localdev.emulator.emulator import Emulator

__all__ = ["Emulator"]
