"""The one error type users can cause; the CLI prints it as a single line and exits with status 2."""
from controller.space import ControllerInputError
from supernet.spaces import SpaceError


class NaoWsError(Exception):
    """A problem the user can fix (bad option, missing data, corrupt checkpoint); the message says how."""


# Errors raised below nao_ws (supernet and controller cannot import nao_ws) that are still the user's doing.
USER_ERRORS = (NaoWsError, SpaceError, ControllerInputError)
