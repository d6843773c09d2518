#include "codec/frame_scanner.hpp"

#include <algorithm>
#include <cstring>

namespace wsdrain::codec {

std::uint16_t close_code_for(scan_error e) {
    return e == scan_error::frame_too_big ? close_code::too_big : close_code::protocol_error;
}

const char* to_string(scan_error e) {
    switch (e) {
        case scan_error::none: return "none";
        case scan_error::reserved_opcode: return "reserved opcode";
        case scan_error::reserved_bits: return "reserved bits set";
        case scan_error::control_too_long: return "control frame over 125 bytes";
        case scan_error::control_fragmented: return "fragmented control frame";
        case scan_error::unexpected_continuation: return "continuation frame outside a message";
        case scan_error::message_in_progress: return "data frame inside a fragmented message";
        case scan_error::mask_required: return "unmasked frame from a client";
        case scan_error::mask_forbidden: return "masked frame from a server";
        case scan_error::non_minimal_length: return "payload length not minimally encoded";
        case scan_error::length_overflow: return "payload length over 2^63";
        case scan_error::frame_too_big: return "frame over limits.max_frame_bytes";
    }
    return "unknown";
}

namespace {

// How many header bytes a frame needs, judged from what is known of it so far.
std::size_t header_size_needed(const std::uint8_t* p, std::size_t n) {
    if (n < 2) return 2;
    const std::uint8_t len7 = p[1] & 0x7f;
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((p[1] & 0x80) ? 4 : 0);
}

}  // namespace

std::size_t frame_scanner::parse_header(const std::uint8_t* p, std::size_t n, scan_error& err) {
    const std::size_t hs = header_size_needed(p, n);
    if (n < hs) return 0;
    frame_info f;
    f.fin = (p[0] & 0x80) != 0;
    f.rsv = p[0] & 0x70;
    f.opcode = p[0] & 0x0f;
    f.masked = (p[1] & 0x80) != 0;
    f.header_size = static_cast<std::uint8_t>(hs);
    const std::uint8_t len7 = p[1] & 0x7f;
    std::size_t pos = 2;
    if (len7 == 126) {
        f.payload_size = std::uint64_t{p[2]} << 8 | p[3];
        if (f.payload_size < 126) err = scan_error::non_minimal_length;
        pos = 4;
    } else if (len7 == 127) {
        f.payload_size = 0;
        for (int i = 0; i < 8; ++i) f.payload_size = f.payload_size << 8 | p[2 + i];
        if (f.payload_size >> 63) err = scan_error::length_overflow;
        else if (f.payload_size <= 0xffff) err = scan_error::non_minimal_length;
        pos = 10;
    } else {
        f.payload_size = len7;
    }
    if (f.masked) std::memcpy(f.mask.data(), p + pos, 4);
    frame_ = f;
    return hs;
}

scan_error frame_scanner::check_header() const {
    const frame_info& f = frame_;
    if (!opcode::is_known(f.opcode)) return scan_error::reserved_opcode;
    if (opcode::is_control(f.opcode)) {
        if (f.rsv) return scan_error::reserved_bits;
        if (!f.fin) return scan_error::control_fragmented;
        if (f.payload_size > max_control_payload) return scan_error::control_too_long;
    } else {
        if (f.rsv & ~policy_.allowed_rsv) return scan_error::reserved_bits;
        if (f.opcode == opcode::continuation && !message_open_) return scan_error::unexpected_continuation;
        if (f.opcode != opcode::continuation && message_open_) return scan_error::message_in_progress;
    }
    if (policy_.masked && !f.masked) return scan_error::mask_required;
    if (!policy_.masked && f.masked) return scan_error::mask_forbidden;
    if (f.payload_size > policy_.max_payload) return scan_error::frame_too_big;
    return scan_error::none;
}

scan_event frame_scanner::fail(scan_error e) {
    state_ = state::failed;
    carry_size_ = 0;
    scan_event ev;
    ev.kind = event_kind::error;
    ev.error = e;
    return ev;
}

std::uint8_t* frame_scanner::control_carry() {
    if (!control_carry_) {
        control_carry_ = std::make_unique<std::uint8_t[]>(max_control_frame);
        std::memcpy(control_carry_.get(), header_carry_, carry_size_);
    }
    return control_carry_.get();
}

scan_event frame_scanner::next(const std::uint8_t* data, std::size_t size) {
    scan_event ev;
    if (state_ == state::failed) return fail(scan_error::none);

    if (state_ == state::payload) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, size));
        remaining_ -= n;
        ev.kind = event_kind::data;
        ev.consumed = n;
        if (remaining_ == 0) {
            ev.frame_end = true;
            state_ = state::header;
            if (frame_.fin) message_open_ = false;
        }
        return ev;
    }

    // state::header. Find the header: in place, or completed in the carry from earlier bytes.
    const std::uint8_t* hdr = data;
    std::size_t avail = size;
    std::size_t used = 0;  // input bytes copied into the carry
    if (carry_size_ > 0) {
        for (;;) {
            const std::size_t need = header_size_needed(carry(), carry_size_);
            if (carry_size_ >= need) break;
            const std::size_t take = std::min(need - carry_size_, size - used);
            std::memcpy(carry() + carry_size_, data + used, take);
            carry_size_ = static_cast<std::uint8_t>(carry_size_ + take);
            used += take;
            if (carry_size_ < need) {
                ev.consumed = used;
                return ev;  // need_more
            }
        }
        hdr = carry();
        avail = carry_size_;
    }

    scan_error err = scan_error::none;
    const std::size_t hs = parse_header(hdr, avail, err);
    if (err != scan_error::none) return fail(err);
    if (hs == 0) {  // only possible without carry: start carrying (size < max_header_bytes)
        std::memcpy(carry(), data, size);
        carry_size_ = static_cast<std::uint8_t>(size);
        ev.consumed = size;
        return ev;
    }
    if (const scan_error e = check_header(); e != scan_error::none) return fail(e);

    const std::size_t payload = static_cast<std::size_t>(frame_.payload_size);
    if (opcode::is_control(frame_.opcode)) {
        const std::size_t total = hs + payload;
        if (carry_size_ == 0 && size >= total) {  // the whole frame is in the input
            ev.kind = event_kind::control;
            ev.consumed = total;
            ev.frame_start = ev.frame_end = true;
            return ev;
        }
        if (carry_size_ == 0) {  // start carrying the control frame
            std::memcpy(control_carry(), data, size);
            carry_size_ = static_cast<std::uint8_t>(size);
            ev.consumed = size;
            return ev;
        }
        const std::size_t take = std::min(total - carry_size_, size - used);
        std::uint8_t* const carried = control_carry();
        std::memcpy(carried + carry_size_, data + used, take);
        carry_size_ = static_cast<std::uint8_t>(carry_size_ + take);
        used += take;
        ev.consumed = used;
        if (carry_size_ < total) return ev;  // need_more
        ev.kind = event_kind::control;
        ev.skip = used;
        ev.head = {carried, total};
        ev.frame_start = ev.frame_end = true;
        carry_size_ = 0;
        return ev;
    }

    // A data frame: the header is reported, and as much payload as the input holds.
    message_open_ = true;
    ev.kind = event_kind::data;
    ev.frame_start = true;
    std::size_t header_in_input = hs;
    if (carry_size_ > 0) {
        ev.head = {carry(), hs};
        ev.skip = used;
        header_in_input = used;
        carry_size_ = 0;
    }
    const std::size_t n = std::min(payload, size - header_in_input);
    ev.consumed = header_in_input + n;
    remaining_ = payload - n;
    if (remaining_ == 0) {
        ev.frame_end = true;
        if (frame_.fin) message_open_ = false;
    } else {
        state_ = state::payload;
    }
    return ev;
}

std::size_t frame_scanner::control_payload(const scan_event& e, const std::uint8_t* input,
                                           std::uint8_t* out) const {
    const std::uint8_t* frame = e.head.empty() ? input : e.head.data();
    const std::size_t n = static_cast<std::size_t>(frame_.payload_size);
    std::memcpy(out, frame + frame_.header_size, n);
    if (frame_.masked) apply_mask(out, n, frame_.mask);
    return n;
}

}  // namespace wsdrain::codec
