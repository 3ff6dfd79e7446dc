"""The Redis wire protocol, written once for the online store and the real-time state.

A call is a list of (key, command) pairs. The transport packs them with hiredis (in C: redis-py's
pipeline checks every argument in Python first, which costs more than Redis itself at 2M
arguments a snapshot), routes them (one server; or, on a cluster, the node that owns each key's
hash slot), writes each server its commands in packets of up to ``WINDOW`` (a score's reads:
one packet; a snapshot's writes: the next packet on its way while the replies of the previous
one are read), sends to every server before reading any reply, and returns the replies in the
order of the commands. Scripts go by SHA (EVALSHA): a
server that forgot one (NOSCRIPT: restarted, flushed) is given it and the commands are resent;
a cluster node that no longer holds a key's slot (MOVED) makes the client re-read the slot map,
and the command is resent where the slot went.

Each thread has its own connection per server: redis-py's pooled calls check the connection
and wrap the command in retry machinery, tens of us more a call than the round trip itself. A
connection is dropped on any failure while replies may be unread, so it never answers a later
call with an earlier call's replies.

Every Redis failure surfaces as ``OnlineStoreUnavailable`` (the callers fall back or retry),
with a message that says where and why, never the password.

``Read`` bundles the commands of one question with the decoder of their replies, so the scorer
sends the snapshot lookup and the real-time read together: one packet, one round trip.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Generic, NamedTuple, TypeVar

import hiredis
import redis
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.cluster import RedisCluster
from redis.exceptions import MovedError, NoScriptError, ResponseError

RedisClient = redis.Redis | RedisCluster
Command = tuple  # ("HGET", key, field): what hiredis packs
Keyed = tuple[str | bytes, Command]  # (the key that routes it, the command)
T = TypeVar("T")

WINDOW = 256  # commands a packet: big enough to amortize a send, small enough to overlap

_SCRIPTS: dict[str, str] = {}  # SHA -> source of every Script: what a NOSCRIPT reply needs


class OnlineStoreError(RuntimeError):
    """The store could not do what was asked; the message says why and what still serves."""


class OnlineStoreUnavailable(OnlineStoreError):
    """Redis did not answer (down, unreachable, too slow) or refused: callers fall back."""


class Script:
    """A Lua script sent by its SHA; the transport loads it where Redis answers NOSCRIPT."""

    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        _SCRIPTS[self.sha] = source

    def call(self, keys: Sequence[str], *args) -> Command:
        return ("EVALSHA", self.sha, len(keys), *keys, *args)


class Read(NamedTuple, Generic[T]):  # a tuple: one is made a lookup, so it must be cheap
    """The commands that answer one question and how their replies become the answer."""

    commands: list[Keyed]
    decode: Callable[[list], T]


class RedisTransport:
    """Sends commands to one Redis or a Redis Cluster (see the module's docstring)."""

    def __init__(self, client: RedisClient, where: str = ""):
        self.client = client
        self._where = where
        self._cluster = isinstance(client, RedisCluster)
        self._local = threading.local()  # a connection per server per thread
        # Every connection made, for close(); weak: a finished thread's goes with the thread.
        self._opened: weakref.WeakSet[redis.Connection] = weakref.WeakSet()
        self._opened_lock = threading.Lock()
        self._waiting: set[redis.Connection] = set()  # sent on, replies not read yet

    @cached_property
    def where(self) -> str:
        return self._where or describe(self.client)

    # -- calls ------------------------------------------------------------------------------

    def run(self, read: Read[T]) -> T:
        return read.decode(self.execute(read.commands))

    def execute_reads(self, reads: Sequence[Read]) -> list[list]:
        """The replies of several reads sent together (one packet per server); each read's
        replies are returned separately, for its decoder."""
        return self.send_reads(reads).receive_reads()

    def execute(self, commands: list[Keyed]) -> list:
        """The replies of the commands, in their order. Raises ``OnlineStoreUnavailable``."""
        return self.send(commands).receive()

    def send_reads(self, reads: Sequence[Read]) -> InFlight:
        """Several reads sent together; their replies to be received (``InFlight``)."""
        return self.send([c for read in reads for c in read.commands], reads)

    def send(self, commands: list[Keyed], reads: Sequence[Read] = ()) -> InFlight:
        """Send the commands; their replies are read by ``InFlight.receive``, so an event
        loop can serve other requests meanwhile (``InFlight.fileno`` turns readable when the
        replies arrive). A single server's call of up to ``WINDOW`` commands is split so; any
        other call (a cluster, a snapshot's writes) is exchanged whole here. Raises
        ``OnlineStoreUnavailable``."""
        if not commands:
            return InFlight(self, commands, reads, replies=[])
        try:
            if not self._cluster and len(commands) <= WINDOW:  # a lookup: the short way
                conn = self._connection("", self.client)
                if conn in self._waiting:
                    raise RuntimeError("a call is still waiting for its replies on this thread")
                try:
                    packed = b"".join([hiredis.pack_command(c) for _, c in commands])
                    conn.send_packed_command([packed])
                except BaseException:
                    conn.disconnect()
                    raise
                self._waiting.add(conn)
                return InFlight(self, commands, reads, conn=conn)
            replies, failed = self._exchange_windowed(self._route(commands), commands)
            if failed:
                self._recover(commands, replies, failed)
        except redis.RedisError as exc:
            raise OnlineStoreUnavailable(explain(exc, self.where)) from exc
        return InFlight(self, commands, reads, replies=replies)

    def _recover(self, commands: list[Keyed], replies: list, failed: list[int]) -> None:
        """After error replies: the commands that failed with NOSCRIPT or MOVED are repaired
        and sent again, once (their replies replaced in place); any other error is raised."""
        retry = [i for i in failed if isinstance(replies[i], (NoScriptError, MovedError))]
        if retry:
            self._repair([commands[i] for i in retry], [replies[i] for i in retry])
            again, failed_again = self._exchange([commands[i] for i in retry])
            for i, reply in zip(retry, again, strict=True):
                replies[i] = reply
            retried = set(retry)
            failed = sorted(
                [i for i in failed if i not in retried] + [retry[i] for i in failed_again]
            )
        if failed:
            raise replies[failed[0]]

    def _repair(self, commands: list[Keyed], errors: list[ResponseError]) -> None:
        """Make the servers able to answer commands that failed with NOSCRIPT or MOVED."""
        forgotten = [
            c for c, e in zip(commands, errors, strict=True) if isinstance(e, NoScriptError)
        ]
        for sha in {command[1] for _, command in forgotten}:
            self.client.script_load(_SCRIPTS[sha])  # a cluster: on every primary
        if self._cluster and any(isinstance(e, MovedError) for e in errors):  # resharded
            self.client.nodes_manager.initialize()

    def close(self) -> None:
        """Close every connection this transport opened (any thread's)."""
        with self._opened_lock:
            opened = list(self._opened)
        for conn in opened:
            conn.disconnect()

    # -- the wire ---------------------------------------------------------------------------

    def _exchange(self, commands: list[Keyed]) -> tuple[list, list[int]]:
        """Send every command and read every reply. Error replies are returned in place (their
        indexes as the second value): the connection is still in step after one."""
        return self._exchange_windowed(self._route(commands), commands)

    def _exchange_windowed(
        self, routes: list[tuple[redis.Connection, list[int]]], commands: list[Keyed]
    ) -> tuple[list, list[int]]:
        """Window by window, every server at once: each window is sent before the replies to
        the previous one are read, so the servers work while we pack."""
        replies: list = [None] * len(commands)
        failed: list[int] = []
        windows = [
            (conn, [indexes[s : s + WINDOW] for s in range(0, len(indexes), WINDOW)])
            for conn, indexes in routes
        ]
        in_flight: list[tuple[redis.Connection, list[int]]] = []
        try:
            for step in range(max(len(w) for _, w in windows)):
                sent = []
                for conn, conn_windows in windows:
                    if step < len(conn_windows):
                        window = conn_windows[step]
                        packed = b"".join([hiredis.pack_command(commands[i][1]) for i in window])
                        conn.send_packed_command([packed])  # one send, not one per command
                        sent.append((conn, window))
                for conn, window in in_flight:
                    self._read(conn, window, replies, failed)
                in_flight = sent
            for conn, window in in_flight:
                self._read(conn, window, replies, failed)
        except BaseException:
            for conn, _ in routes:
                conn.disconnect()  # replies may be left unread: never reuse these
            raise
        failed.sort()
        return replies, failed

    @staticmethod
    def _read(conn: redis.Connection, indexes, replies: list, failed: list[int]) -> None:
        """Read replies in order; an error reply (read whole) is kept in place, the rest still
        come. Straight off the connection's hiredis reader: redis-py's per-reply
        ``read_response`` wraps each in checks and retry bookkeeping that cost ~5 us a reply,
        more than Redis takes to answer one (redis-py's parser internals, pinned in uv.lock)."""
        parser = conn._parser
        for i in indexes:
            reply = _next_reply(parser)
            if isinstance(reply, ResponseError):
                failed.append(i)
            replies[i] = reply

    def _route(self, commands: list[Keyed]) -> list[tuple[redis.Connection, list[int]]]:
        """The commands' indexes by the server that holds their keys."""
        if not self._cluster:
            return [(self._connection("", self.client), list(range(len(commands))))]
        by_node: dict[str, tuple[redis.Connection, list[int]]] = {}
        for i, (key, _) in enumerate(commands):
            node = self.client.get_node_from_key(key)
            route = by_node.get(node.name)
            if route is None:
                server = node.redis_connection or self.client.get_redis_connection(node)
                route = by_node[node.name] = (self._connection(node.name, server), [])
            route[1].append(i)
        return list(by_node.values())

    def _connection(self, name: str, server: redis.Redis) -> redis.Connection:
        connections = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        conn = connections.get(name)
        if conn is None:
            conn = connections[name] = server.connection_pool.make_connection()
            with self._opened_lock:
                self._opened.add(conn)
        return conn


def _next_reply(parser):
    """The next reply off a hiredis parser, as ``_HiredisParser.read_response`` gives it:
    waiting for the rest of it, raising what means the connection is unusable, and handing a
    server's push notice (RESP3: e.g. a maintenance notice) to redis-py, never taking it for a
    reply."""
    push, reader = parser._hiredis_PushNotificationType, parser._reader
    if reader is None:  # the connection was closed
        raise redis.ConnectionError("Connection closed by server.")
    while True:
        reply = reader.gets()
        while reply is NOT_ENOUGH_DATA:  # the reply has not all arrived
            try:
                parser.read_from_socket()  # raises redis' TimeoutError, ConnectionError
            except OSError as exc:  # e.g. reset by the server: what read_response raises
                raise redis.ConnectionError(f"error reading from Redis: {exc}") from exc
            reply = reader.gets()
        if push is not None and isinstance(reply, push):
            parser.handle_push_response(reply)
            continue
        if isinstance(reply, redis.ConnectionError):  # e.g. LOADING: the server is not up
            raise reply
        if isinstance(reply, list) and reply and isinstance(reply[0], redis.ConnectionError):
            raise reply[0]
        return reply


def describe(client: RedisClient) -> str:
    """Where the client points, for messages (no credentials)."""
    if isinstance(client, RedisCluster):
        return "cluster " + ",".join(n.name for n in client.get_nodes())
    kw = client.connection_pool.connection_kwargs
    return kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}"


def explain(exc: redis.RedisError, where: str) -> str:
    """What a Redis failure means, in words an operator acts on."""
    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return f"Redis at {where} rejected the credentials ({text})"
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM" in text:
        return f"Redis at {where} is out of memory (maxmemory reached: {text})"
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return f"Redis at {where} did not answer ({text})"
    return f"Redis at {where} answered {type(exc).__name__}: {text}"


class InFlight:
    """Commands sent, their replies not read yet (``RedisTransport.send``). ``receive`` reads
    them (waiting if they have not all arrived, up to the client's socket timeout) or
    raises ``OnlineStoreUnavailable``; ``abandon`` gives up on them (the connection is closed:
    replies left unread must never answer a later call)."""

    __slots__ = ("_abandoned", "_conn", "_transport", "commands", "reads", "replies")

    def __init__(
        self,
        transport: RedisTransport,
        commands: list[Keyed],
        reads: Sequence[Read] = (),
        *,
        conn: redis.Connection | None = None,
        replies: list | None = None,
    ):
        self._transport, self.commands, self.reads = transport, commands, reads
        self._conn, self.replies, self._abandoned = conn, replies, False

    def fileno(self) -> int | None:
        """The socket the replies arrive on; None when they are already here."""
        if self._conn is None or self._conn._sock is None:
            return None
        return self._conn._sock.fileno()

    def receive(self) -> list:
        """The replies of the commands, in their order."""
        if self.replies is not None:
            return self.replies
        conn, transport = self._conn, self._transport
        if self._abandoned:
            raise OnlineStoreUnavailable(f"Redis at {transport.where} did not answer in time")
        self._conn = None
        transport._waiting.discard(conn)
        replies: list = [None] * len(self.commands)
        failed: list[int] = []
        try:
            try:
                transport._read(conn, range(len(self.commands)), replies, failed)
            except BaseException:
                conn.disconnect()  # replies may be left unread: reconnect on the next call
                raise
            if failed:
                transport._recover(self.commands, replies, failed)
        except redis.RedisError as exc:
            raise OnlineStoreUnavailable(explain(exc, transport.where)) from exc
        self.replies = replies
        return replies

    def receive_reads(self) -> list[list]:
        """The replies split by read (``RedisTransport.send_reads``), for each one's decoder."""
        replies = self.receive()
        out, start = [], 0
        for read in self.reads:
            out.append(replies[start : start + len(read.commands)])
            start += len(read.commands)
        return out

    def abandon(self) -> None:
        if self._conn is not None:
            self._transport._waiting.discard(self._conn)
            self._conn.disconnect()
            self._conn, self._abandoned = None, True
