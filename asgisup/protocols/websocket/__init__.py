"""WebSocket (RFC 6455) over an HTTP/1.1 Upgrade: the handshake, two frame engines (wsproto,
websockets) behind one interface, and the ASGI session that joins them to the app."""
