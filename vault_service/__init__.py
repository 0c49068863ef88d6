"""vault-service: an encrypted vault for health data.

Layers (dependencies point inward): ``rpc``/``cli`` -> ``service`` -> ``policy``, ``crypto``,
``key_providers``, ``storage``, ``audit``. ``crypto`` and ``policy`` do no I/O.
"""

__version__ = "0.1.0"
