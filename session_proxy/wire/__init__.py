"""The wire package: what client and server share, and nothing else.

- :mod:`.protocol`: paths, headers, protocol version, step ops and error
  codes with their HTTP status (the protocol is documented there);
- :mod:`.messages`: the messages as frozen dataclasses, one encoder and one
  decoder each;
- :mod:`.codec`: typed JSON for the values inside messages;
- :mod:`.errors`: :class:`WireError` (code, status, transaction, step and
  request id as declared fields) and :class:`ProtocolError`;
- :mod:`.operations`, :mod:`.values` and :mod:`.instances`: the logical
  API's shared half, the operation registry, the encoding of arguments,
  results and exceptions, and what that encoding keeps per mapped class.

It imports neither the client (``session_proxy`` outside this package) nor the
server, so the server can depend on it alone.  Importing the package, its
protocol, messages and codec loads no third-party package (``orjson`` only
when installed); :mod:`.values` and :mod:`.instances` use SQLAlchemy and
are imported only where logical operations are sent or run.
"""

from __future__ import annotations

from .errors import ProtocolError, WireError
from .protocol import PROTOCOL_VERSION

#: The version of the session-proxy distribution (client and server).
__version__ = "0.1.0"

__all__ = ["PROTOCOL_VERSION", "ProtocolError", "WireError", "__version__"]
