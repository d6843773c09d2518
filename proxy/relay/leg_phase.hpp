#pragma once
// Where each leg of a session stands in the RFC 6455 closing handshake. Pure; the truth
// table in proxy/ARCHITECTURE.md is this file in words.
//
//                 Close from leg                 Close to leg
//       open ─────────────────────▶ close_received ─────────────▶ closed
//         │                                                          ▲
//         └──── Close to leg ────▶ close_sent ──── Close from leg ───┘
//
//   any phase but closed ── EOF or reset ──▶ gone      (the peer vanished)
//   any phase ── the leg broke the protocol ──▶ failed (proxy sent its Close, reads no more)

#include <cstdint>

namespace wsdrain::relay {

enum class leg_id : std::uint8_t { downstream = 0, upstream = 1 };

constexpr leg_id other(leg_id l) { return l == leg_id::downstream ? leg_id::upstream : leg_id::downstream; }
constexpr std::size_t index(leg_id l) { return static_cast<std::size_t>(l); }

enum class leg_phase : std::uint8_t {
    open,            // no Close either way yet
    close_sent,      // the proxy sent this leg a Close (its own or relayed); awaiting the reply
    close_received,  // this leg sent a Close; the proxy has not sent it one yet
    closed,          // Close both ways: the handshake on this leg is complete
    failed,          // the leg broke the protocol: it was sent a Close and is read no more
    gone,            // EOF or reset before the handshake completed
};

const char* to_string(leg_phase p);

// A Close frame arrived from the leg.
constexpr leg_phase after_close_from(leg_phase p) {
    switch (p) {
        case leg_phase::open: return leg_phase::close_received;
        case leg_phase::close_sent: return leg_phase::closed;
        default: return p;
    }
}

// The proxy sent (or relayed) a Close to the leg.
constexpr leg_phase after_close_to(leg_phase p) {
    switch (p) {
        case leg_phase::open: return leg_phase::close_sent;
        case leg_phase::close_received: return leg_phase::closed;
        default: return p;
    }
}

// The leg's byte stream ended (EOF, reset, error).
constexpr leg_phase after_end(leg_phase p) {
    return p == leg_phase::closed || p == leg_phase::failed ? p : leg_phase::gone;
}

// May the proxy still send this leg data frames, or a Close? Not after it sent one.
constexpr bool accepts_frames(leg_phase p) { return p == leg_phase::open || p == leg_phase::close_received; }

// Did the leg already send its Close? Frames it sends after that are not relayed.
constexpr bool has_sent_close(leg_phase p) { return p == leg_phase::close_received || p == leg_phase::closed; }

// The leg's WebSocket part is over: send FIN once what is queued for it is written.
constexpr bool wants_fin(leg_phase p) { return p == leg_phase::closed || p == leg_phase::failed; }

// Close code the surviving leg gets when the other one vanishes: a client that disappears
// "goes away" (1001); a backend that fails is a bad gateway (1014).
constexpr std::uint16_t close_code_when_gone(leg_id gone) { return gone == leg_id::upstream ? 1014 : 1001; }

}  // namespace wsdrain::relay
