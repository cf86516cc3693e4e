"""Who may call the API: Host and Origin checks, tokens, OIDC.

``settings.py`` holds what deepaas-run's options say (``SecuritySettings``),
``guard.py`` turns those into the checks each route runs (chosen when the
app is built, from the route's kind in the route table), ``origins.py``
checks Host and Origin, ``auth.py`` static tokens and the rules that give
them kinds of operation, ``oidc.py`` OpenID Connect access tokens.  Every
refusal is a domain error (:mod:`deepaas.exceptions`) answered by
:mod:`deepaas.api.errors`.  See docs/security.md.
"""
