"""respx for the clients that send through httpx2 (the model and embeddings clients: service/providers/).

respx patches httpcore's connection pools, where httpx sends; httpx2 sends through httpcore2's, which it does not
know. httpcore2's requests and pools have httpcore's shape, so respx's own httpcore mocker serves both once it also
patches httpcore2's pools and answers them with httpcore2's response type. Made respx's default (importing this
module, as tests/conftest.py does), every `respx.mock` of the tests intercepts both clients, unchanged; whatever
the service does above the pool (the client's timeouts, event hooks, headers, the openai client's retries) runs as
in production.
"""

from __future__ import annotations

from typing import Any

import httpcore2
import httpx
import respx.mocks
from respx.mocks import HTTPCoreMocker


class HTTPCoreAndCore2Mocker(HTTPCoreMocker):
    name = "httpcore+httpcore2"
    targets = [*HTTPCoreMocker.targets,
               "httpcore2._sync.connection_pool.ConnectionPool",
               "httpcore2._async.connection_pool.AsyncConnectionPool"]

    @classmethod
    def from_sync_httpx_response(cls, httpx_response: httpx.Response, target: Any, **kwargs: Any) -> Any:
        if not type(target).__module__.startswith("httpcore2."):
            return super().from_sync_httpx_response(httpx_response, target, **kwargs)
        return httpcore2.Response(status=httpx_response.status_code, headers=httpx_response.headers.raw,
                                  content=httpx_response.stream, extensions=httpx_response.extensions)


respx.mocks.DEFAULT_MOCKER = HTTPCoreAndCore2Mocker.name
