"""Local runners on torch / transformers / diffusers / llama.cpp.

Nothing heavy is imported here: each runner module imports its libraries when a model is
loaded, and models are loaded on first use through `local_models.loading.load`.
"""
