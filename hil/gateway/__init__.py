"""The gateway: an LwM2M server devices register to (and, later, its northbound bridges)."""

from .errors import (  # noqa: F401
    GatewayDecodeError,
    GatewayError,
    GatewayRequestError,
    GatewayTimeout,
    GatewayTransportError,
    UnknownEndpoint,
)
from .composite import CompositeObservation  # noqa: F401
from .observe import Notification, Observation, ObservationRefused  # noqa: F401
from .registry import Registration, RegistrationEvent, Subscription  # noqa: F401
from .server import Gateway, Response, resolve_format  # noqa: F401
from .strict import StrictRegistration  # noqa: F401
