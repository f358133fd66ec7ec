"""The shipped policies (``*.toml``), installed as ``governance.policies``: the defaults that the
``TRACE_*_POLICY`` settings override. Data only; read with :mod:`importlib.resources`."""
