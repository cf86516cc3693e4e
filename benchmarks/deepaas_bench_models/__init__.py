"""Models that ``serve_benchmark.py`` serves on every server it compares.

Each module is a DEEPaaS V2 model written the way most published models are:
plain module-level functions, fields in the marshmallow 3 idiom, heavy
imports at the top.  The same files are served by the existing DEEPaaS
2.6.0, by deepaas and by the bare aiohttp floor, so every server does the
same work per request.
"""
