"""WARP's customer-change messages: the model, their envelopes, the publisher."""

from shared.messages.change import ChangeMessage, Operation
from shared.messages.envelope import MalformedMessage, MessageDelivery, parse_delivery

__all__ = ["ChangeMessage", "MalformedMessage", "MessageDelivery", "Operation", "parse_delivery"]
