"""``echo`` as a LitServe API, for the start-up comparison.

Same request body (``{"message": ...}``) and answer
(``{"predictions": <message>}``) as the DEEPaaS model; served by
``_litserve_server.py`` in LitServe's own virtualenv.
"""

from __future__ import annotations

from typing import Any

import litserve as ls


class EchoAPI(ls.LitAPI):
    """Answers its message, as ``echo.predict`` does."""

    def setup(self, device: str) -> None:
        pass

    # No annotation on ``request``: LitServe would read it as the request's
    # type and FastAPI look for it in the query string.
    def decode_request(self, request, **kwargs: Any) -> str:  # type: ignore[no-untyped-def]
        return str(request["message"])

    def predict(self, x: str, **kwargs: Any) -> str:
        return x

    def encode_response(self, output: Any, **kwargs: Any) -> dict[str, Any]:
        return {"predictions": output}
