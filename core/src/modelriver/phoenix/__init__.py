"""Phoenix Channels v2, sans-I/O: framing, the client and server state machines, and the relay
layer above them (``log``: a topic's compact replay log; ``relay``: what one join is handed).

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
from modelriver.phoenix.log import ChannelLog, Entry, frame_topic, on_topic, payload_of, relay_entry
from modelriver.phoenix.relay import CATCH_UP_CHUNK, Subscription, coalesce_tokens, merge_entries
from modelriver.phoenix.server import (
    AUTH_SUBPROTOCOL_PREFIX,
    DEFAULT_BUFFER_GRACE,
    DEFAULT_MAX_BUFFER,
    DEFAULT_MAX_TOPICS,
    Left,
    Pushed,
    ServerConnection,
    ServerEvent,
    socket_token,
)
from modelriver.phoenix.server import Joined as ChannelJoined
from modelriver.phoenix.topics import channel_topics, parse_topic, topic_refusal

__all__ = [
    "AUTH_SUBPROTOCOL_PREFIX",
    "CATCH_UP_CHUNK",
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
    "Subscription",
    "as_broadcast",
    "channel_topics",
    "coalesce_tokens",
    "decode",
    "encode",
    "encode_parts",
    "frame_topic",
    "merge_entries",
    "on_topic",
    "parse_topic",
    "payload_of",
    "reconnect_backoff",
    "rejoin_backoff",
    "relay_entry",
    "socket_token",
    "topic_refusal",
]
