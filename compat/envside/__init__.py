"""Code that runs inside release environments.

Everything under this package may import only the standard library, torch, safetensors, numpy and the
library under test (lazily, inside recipes). Host-only dependencies (YAML, pytest, packaging) never reach here.
"""
