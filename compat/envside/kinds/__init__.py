"""Recipe kinds, as the worker runs them: one module each, each a subclass of ``compat.envside.engine.Recipe`` that
supplies only its own steps. Each has a host-side twin of the same name in ``compat/host/kinds/`` that judges its
findings; ``compat/shared/protocol.py`` lists the fields a kind's findings carry."""
