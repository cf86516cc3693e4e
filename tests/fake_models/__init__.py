"""Models written only against the DEEPaaS V2 contract, for the tests.

Each module is what a scientist would publish; ``tests/conftest.py``
registers them under real entry points (a ``.dist-info`` folder on
``sys.path``), so deepaas finds them exactly as it finds installed models.
"""
