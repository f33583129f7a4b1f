"""The wire protocol's version: bumped on any change a peer of the previous version could not read."""

PROTOCOL_VERSION = 1

#: Largest frame either side accepts. Set as ZMQ_MAXMSGSIZE on every socket (libzmq drops the peer that
#: sends more) and checked again in the decoder.
MAX_FRAME_BYTES = 4 * 1024 * 1024
