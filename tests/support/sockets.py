"""Raw client sockets for attacks at small scale: each from a chosen loopback address."""
from __future__ import annotations

import asyncio

ATTACKER = "127.0.0.1"


async def connect(port: int, source: str = ATTACKER) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def stalled_upload(port: int, source: str = ATTACKER) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await connect(port, source)
    writer.write(b"POST /public/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000000\r\n\r\n0123456789")
    await writer.drain()
    return reader, writer
