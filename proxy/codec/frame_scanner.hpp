#pragma once
// A sans-I/O scanner of one direction of a WebSocket byte stream (RFC 6455 section 5.2).
//
// It is fed the bytes a leg sends, in whatever pieces the network delivers, and reports
// frame boundaries without copying payload: the relay forwards input ranges unchanged and
// learns where it may inject frames of its own. Only two things are copied: the first
// bytes of a frame whose header is split across reads (at most 14, kept inline), and control
// frames split across reads (at most 131 bytes, in a buffer allocated the first time one is),
// so that the relay can decide on a whole control frame (a Pong answering the proxy's own
// Ping is consumed, a Close is parsed). A scanner is small: every idle session holds two.
//
//   scanner s{policy};
//   for (size_t pos = 0; pos < n;) {
//       scan_event e = s.next(in + pos, n - pos);
//       // emit e.head, then in[pos + e.skip, pos + e.consumed)  (if the frame is kept)
//       pos += e.consumed;
//   }

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "codec/frame.hpp"

namespace wsdrain::codec {

// What a stream must look like. Client-to-proxy streams require masks; backend-to-proxy
// streams forbid them.
struct scan_policy {
    bool masked = true;                    // frames must (true) or must not (false) be masked
    std::uint8_t allowed_rsv = 0;          // RSV bits negotiated by extensions (0x40: RSV1)
    std::uint64_t max_payload = UINT64_MAX;
};

enum class scan_error : std::uint8_t {
    none,
    reserved_opcode,
    reserved_bits,
    control_too_long,
    control_fragmented,
    unexpected_continuation,  // continuation frame with no message open
    message_in_progress,      // new text/binary frame while a fragmented message is open
    mask_required,
    mask_forbidden,
    non_minimal_length,
    length_overflow,  // 64-bit length with its most significant bit set
    frame_too_big,    // payload over scan_policy::max_payload
};

// The Close code a peer gets for a framing error: 1009 for size, 1002 otherwise.
std::uint16_t close_code_for(scan_error e);
const char* to_string(scan_error e);

enum class event_kind : std::uint8_t {
    data,       // part (or all) of a data frame: header and/or payload bytes
    control,    // a complete control frame
    need_more,  // the input ended inside a header or a control frame; bytes were carried
    error,      // the stream broke the rules; nothing consumed; the scanner stays failed
};

struct frame_info {
    std::uint8_t opcode = 0;
    bool fin = false;
    std::uint8_t rsv = 0;  // 0x70 mask of the first byte
    bool masked = false;
    mask_key mask{};
    std::uint64_t payload_size = 0;
    std::uint8_t header_size = 0;
};

struct scan_event {
    event_kind kind = event_kind::need_more;
    std::size_t consumed = 0;          // input bytes this event took
    std::size_t skip = 0;              // of those, how many are already inside `head`
    std::span<const std::uint8_t> head;  // bytes of this frame carried from earlier input
    bool frame_start = false;          // this event completes the frame's header
    bool frame_end = false;            // this event completes the frame
    scan_error error = scan_error::none;
};

class frame_scanner {
public:
    explicit frame_scanner(scan_policy policy = {}) : policy_(policy) {}

    // Consumes bytes from `data` up to the next event. `size` must be > 0.
    scan_event next(const std::uint8_t* data, std::size_t size);

    // The frame the last event belonged to.
    const frame_info& frame() const { return frame_; }

    // For a control event: copies the unmasked payload (at most 125 bytes) into `out`.
    // `input` is the same pointer that was passed to next().
    std::size_t control_payload(const scan_event& e, const std::uint8_t* input, std::uint8_t* out) const;

    // True while the bytes reported so far end inside a data frame's payload.
    bool inside_data_frame() const { return state_ == state::payload; }
    // True while a fragmented data message is open (its final frame not yet complete).
    bool inside_message() const { return message_open_ || state_ == state::payload; }
    bool failed() const { return state_ == state::failed; }

    void set_policy(const scan_policy& p) { policy_ = p; }
    const scan_policy& policy() const { return policy_; }

private:
    enum class state : std::uint8_t { header, payload, failed };

    // Parses a header from contiguous bytes; returns 0 when more bytes are needed.
    std::size_t parse_header(const std::uint8_t* p, std::size_t n, scan_error& err);
    scan_error check_header() const;
    scan_event fail(scan_error e);
    // Where carried bytes go: inline while they are a header, the control buffer once a
    // control frame has been carried.
    std::uint8_t* carry() { return control_carry_ ? control_carry_.get() : header_carry_; }
    std::uint8_t* control_carry();

    scan_policy policy_;
    frame_info frame_{};
    std::uint64_t remaining_ = 0;  // payload bytes left in the current data frame
    state state_ = state::header;
    bool message_open_ = false;    // a data message with fin=0 has started
    std::uint8_t carry_size_ = 0;
    std::uint8_t header_carry_[max_header_bytes];
    std::unique_ptr<std::uint8_t[]> control_carry_;  // max_control_frame bytes, once needed
};

}  // namespace wsdrain::codec
