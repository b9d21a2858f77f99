"""WARP's customer-change messages: the model, their envelopes, the publisher."""

from shared.messages.change import ChangeMessage, Operation
from shared.messages.envelope import Delivery, MalformedMessage, parse_delivery

__all__ = ["ChangeMessage", "Delivery", "MalformedMessage", "Operation", "parse_delivery"]
