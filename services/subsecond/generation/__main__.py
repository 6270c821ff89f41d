"""``python -m subsecond.generation``: run the generation service."""

from subsecond.generation.service import definition
from subsecond.generation.settings import GenerationSettings
from subsecond.kit.server import run_service

run_service("generation", GenerationSettings.from_env, definition)
