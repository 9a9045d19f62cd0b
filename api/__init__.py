"""The HTTP API (FastAPI): SSE, WebSocket, REST control and the panel page."""
