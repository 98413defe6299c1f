"""Phoenix Channels v2, sans-I/O: framing and the client and server state machines.

No sockets, no clocks: bytes and time come in as arguments, frames and events come out.
"""

from modelriver.backoff import reconnect_backoff, rejoin_backoff
from modelriver.phoenix.client import (
    ChannelClosed,
    ChannelErrored,
    ChannelMessage,
    ClientEvent,
    HeartbeatTimeout,
    Joined,
    JoinRefused,
    PhoenixClient,
    PushTimeout,
    Reply,
)
from modelriver.phoenix.frames import (
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    DEFAULT_MAX_FRAME,
    Message,
    as_broadcast,
    decode,
    encode,
    encode_parts,
)
from modelriver.phoenix.server import (
    AUTH_SUBPROTOCOL_PREFIX,
    DEFAULT_BUFFER_GRACE,
    DEFAULT_MAX_BUFFER,
    DEFAULT_MAX_TOPICS,
    ChannelLog,
    Entry,
    Left,
    Pushed,
    ServerConnection,
    ServerEvent,
    coalesce_tokens,
    payload_of,
    socket_token,
)
from modelriver.phoenix.server import Joined as ChannelJoined
from modelriver.phoenix.topics import channel_topics, parse_topic, topic_refusal

__all__ = [
    "AUTH_SUBPROTOCOL_PREFIX",
    "CLOSE_INTERNAL",
    "CLOSE_POLICY",
    "DEFAULT_BUFFER_GRACE",
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_MAX_TOPICS",
    "ChannelClosed",
    "ChannelErrored",
    "ChannelJoined",
    "ChannelLog",
    "ChannelMessage",
    "ClientEvent",
    "Entry",
    "HeartbeatTimeout",
    "JoinRefused",
    "Joined",
    "Left",
    "Message",
    "PhoenixClient",
    "PushTimeout",
    "Pushed",
    "Reply",
    "ServerConnection",
    "ServerEvent",
    "as_broadcast",
    "channel_topics",
    "coalesce_tokens",
    "decode",
    "encode",
    "encode_parts",
    "parse_topic",
    "payload_of",
    "reconnect_backoff",
    "rejoin_backoff",
    "socket_token",
    "topic_refusal",
]
