"""``python -m subsecond.router``: run the router."""

from subsecond.kit.server import run_service
from subsecond.router.service import definition
from subsecond.router.settings import RouterSettings

run_service("router", RouterSettings.from_env, definition)
