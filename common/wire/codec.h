#pragma once
// MessagePack encoding of the fleet messages. One message = one byte string (one ZeroMQ
// frame): a MessagePack array [magic, version, type, seq, body]. The transport layer moves
// the bytes and knows nothing of this; this layer knows nothing of ZeroMQ.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/wire/messages.h"

namespace common::wire {

// First element of every envelope.
inline constexpr std::string_view kMagic = "nsf";
// Deepest nesting accepted in a frame (envelope + body + Value tables).
inline constexpr std::size_t kMaxDepth = 200;

struct Envelope {
    std::uint32_t version = kProtocolVersion;
    MsgType type = MsgType::Bye;
    std::uint64_t seq = 0;  // per-sender counter, echoed in Error::in_reply_to
};

struct Decoded {
    Envelope envelope;
    Message message;
};

// One Value alone (a store keeps registry entries this way); decode_value fails like
// decode on bytes that are not exactly one well-formed Value.
std::string encode_value(const common::Value& v);
common::Result<common::Value> decode_value(std::string_view bytes);

// The envelope of a frame without parsing its body: what a receiver checks before it spends
// anything on a peer it does not know yet. nullopt when the frame does not start like an
// nsefleet envelope (the full decode then says why).
std::optional<Envelope> peek(std::string_view bytes);

// Encodes `m` in an envelope with the current protocol version and `seq`. Never fails for
// a well-formed struct (enum fields out of range are encoded as their number). Throws only
// std::bad_alloc.
std::string encode(const Message& m, std::uint64_t seq = 0);

// Decodes one frame. Never throws. Fails (with `*why` set when given) on: a frame larger
// than `max_bytes` (TooLarge, checked before parsing), bytes that are not exactly one
// MessagePack object (truncated, trailing garbage, containers claiming more elements than
// the frame can hold, nesting deeper than kMaxDepth: Malformed), a wrong magic (Malformed),
// a version other than kProtocolVersion (BadVersion), an unknown type number (UnknownType),
// a body whose field count, field types or enum values do not match the type (Malformed).
// Strings are byte strings (MessagePack str); no UTF-8 check.
common::Result<Decoded> decode(std::string_view bytes,
                               std::size_t max_bytes = kDefaultMaxMessageBytes,
                               ErrorCode* why = nullptr);

// Decodes one frame that must hold an M: the message itself, or an error that says whether
// the bytes did not decode or held another type (`what` names the bytes in the message).
template <class M>
common::Result<M> decode_as(std::string_view bytes, const std::string& what,
                            std::size_t max_bytes = kDefaultMaxMessageBytes) {
    auto d = decode(bytes, max_bytes);
    if (!d) return common::Status::error(what + " is unreadable: " + d.status().message());
    if (auto* m = std::get_if<M>(&d->message)) return std::move(*m);
    return common::Status::error(what + " is unreadable (a " + type_name(type_of(d->message)) +
                                 ", not a " + type_name(M::kType) + ")");
}

}  // namespace common::wire
