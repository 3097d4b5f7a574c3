"""The adapter layer: one interface per task, one module per provider, one registry.

from adapters import registry
from adapters.types import Task
captioner = registry.get(Task.CAPTIONING, "local")
print(captioner.caption(image).text)
"""
