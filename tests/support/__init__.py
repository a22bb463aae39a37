"""What several test modules share: launchers of real servers, raw sockets, tokens, websocket and Redis helpers."""
