// Fuzzes codec::frame_scanner the way the relay drives it: one direction of a WebSocket byte
// stream, delivered in reads of fuzzer-chosen sizes, each read in a buffer of exactly its size
// (AddressSanitizer catches any read past it).
//
// Input: [flags] [limit hi] [limit lo] [k] [k read sizes] [stream...]
//   flags bit 0: a client's stream (masks required); else a backend's (masks forbidden)
//   flags bits 4-6: the RSV bits extensions allow (0x70 mask of the first header byte)
//   limit: max_payload (0xffff: none)
//   k (0-7): read sizes, cycled (0 stands for 1); with none the stream is one read
//
// The scan is checked against a reference parser of the whole stream, written here from
// RFC 6455 section 5.2 alone: the same frames (header fields, where each starts, control
// payloads), an error exactly where the reference finds the first broken rule, and the
// bytes the relay would forward, in order, equal to the stream up to the first byte that
// is not yet forwardable. Each event is checked on its own too (progress, bounds, flags).
// The Close payloads found are written back with write_close and parsed again.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "codec/frame.hpp"
#include "codec/frame_scanner.hpp"

using namespace wsdrain::codec;

namespace {

using bytes = std::vector<std::uint8_t>;

[[noreturn]] void fail(const char* what, std::size_t at) {
    std::fprintf(stderr, "fuzz_frame_scanner: %s (at stream offset %zu)\n", what, at);
    std::abort();
}

#define CHECK(cond, at)                 \
    do {                                \
        if (!(cond)) fail(#cond, (at)); \
    } while (0)

struct ref_frame {
    std::size_t start = 0;
    std::uint8_t first = 0;  // the first header byte: FIN, RSV, opcode
    bool masked = false;
    mask_key mask{};
    std::uint64_t payload_size = 0;
    std::size_t header_size = 0;
    bytes control_payload;  // unmasked, for a complete control frame
};

struct ref_result {
    std::vector<ref_frame> frames;  // frames whose header is complete and valid
    bool error = false;             // a header broke a rule; it starts at `forwardable`
    std::size_t forwardable = 0;    // bytes the relay can have forwarded by the end
};

// The stream parsed whole, rule by rule from RFC 6455 section 5.2 (and the proxy's limit).
ref_result reference(const std::uint8_t* s, std::size_t n, const scan_policy& policy) {
    ref_result r;
    bool message_open = false;
    std::size_t pos = 0;
    for (;;) {
        r.forwardable = pos;
        if (n - pos < 2) return r;  // an unfinished header is held back
        ref_frame f;
        f.start = pos;
        f.first = s[pos];
        f.masked = (s[pos + 1] & 0x80) != 0;
        const unsigned len7 = s[pos + 1] & 0x7f;
        const std::size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        f.header_size = 2 + ext + (f.masked ? 4 : 0);
        if (n - pos < f.header_size) return r;
        bool minimal = true;
        if (ext == 0) {
            f.payload_size = len7;
        } else {
            for (std::size_t i = 0; i < ext; ++i)
                f.payload_size = f.payload_size << 8 | s[pos + 2 + i];
            minimal = ext == 2 ? f.payload_size >= 126 : f.payload_size > 0xffff;
        }
        if (f.masked) std::memcpy(f.mask.data(), s + pos + 2 + ext, 4);
        const bool fin = (f.first & 0x80) != 0;
        const std::uint8_t rsv = f.first & 0x70;
        const std::uint8_t op = f.first & 0x0f;
        const bool control = op == 0x8 || op == 0x9 || op == 0xA;
        const bool data = op == 0x0 || op == 0x1 || op == 0x2;
        const bool broken = !minimal || (f.payload_size >> 63) != 0 || (!control && !data) ||
                            (control && (rsv != 0 || !fin || f.payload_size > 125)) ||
                            (data && (rsv & ~policy.allowed_rsv) != 0) || (data && (op == 0x0) != message_open) ||
                            f.masked != policy.masked || f.payload_size > policy.max_payload;
        if (broken) {
            r.error = true;
            return r;
        }
        const std::uint64_t left = n - pos - f.header_size;
        if (control) {
            if (left < f.payload_size) return r;  // an unfinished control frame is held back
            const std::uint8_t* p = s + pos + f.header_size;
            for (std::size_t i = 0; i < f.payload_size; ++i)
                f.control_payload.push_back(f.masked ? p[i] ^ f.mask[i % 4] : p[i]);
        } else {
            message_open = !fin;
        }
        r.frames.push_back(f);
        if (left < f.payload_size) {  // data payload is forwarded as it comes
            r.forwardable = n;
            return r;
        }
        pos += f.header_size + static_cast<std::size_t>(f.payload_size);
    }
}

// What the relay sees of the stream, read by read, with every event checked on its own.
struct scan_result {
    std::vector<ref_frame> frames;
    bytes forwarded;  // `head` and the input ranges of data and control events, in order
    bool error = false;
    scan_error error_kind = scan_error::none;
};

scan_result scan(const std::uint8_t* s, std::size_t n, const scan_policy& policy,
                 const std::vector<std::size_t>& reads) {
    frame_scanner scanner{policy};
    scan_result out;
    bool in_data_frame = false;  // a data frame's header was reported, its end not yet
    bool message_open = false;   // a data message's final frame has not ended yet
    std::uint64_t frame_bytes = 0;
    std::size_t offset = 0;
    for (std::size_t r = 0; offset < n; ++r) {
        const std::size_t size = reads.empty() ? n : std::min(reads[r % reads.size()], n - offset);
        const std::unique_ptr<std::uint8_t[]> read(new std::uint8_t[size]);  // exactly this read
        std::memcpy(read.get(), s + offset, size);
        for (std::size_t pos = 0; pos < size;) {
            const std::size_t at = offset + pos;
            const scan_event e = scanner.next(read.get() + pos, size - pos);
            if (e.kind == event_kind::error) {
                CHECK(e.error != scan_error::none && e.consumed == 0 && e.head.empty(), at);
                CHECK(scanner.failed(), at);
                const scan_event again = scanner.next(read.get() + pos, size - pos);
                CHECK(again.kind == event_kind::error && again.consumed == 0, at);
                out.error = true;
                out.error_kind = e.error;
                return out;
            }
            CHECK(e.consumed > 0 && e.consumed <= size - pos, at);
            CHECK(e.skip <= e.consumed, at);
            CHECK(e.head.empty() == (e.skip == 0), at);
            CHECK(e.head.size() <= max_control_frame, at);
            CHECK(e.error == scan_error::none, at);
            if (e.kind == event_kind::need_more) {
                // The read ended inside a header or a control frame: all of it is carried.
                CHECK(e.consumed == size - pos && e.head.empty() && !e.frame_start && !e.frame_end, at);
                pos += e.consumed;
                continue;
            }
            const frame_info& f = scanner.frame();
            if (e.frame_start) {
                CHECK(!in_data_frame, at);
                ref_frame seen;
                seen.start = out.forwarded.size();
                seen.first = static_cast<std::uint8_t>((f.fin ? 0x80 : 0) | f.rsv | f.opcode);
                CHECK((f.rsv & ~0x70) == 0 && f.opcode <= 0x0f, at);
                seen.masked = f.masked;
                seen.mask = f.mask;
                seen.payload_size = f.payload_size;
                seen.header_size = f.header_size;
                CHECK(f.header_size >= 2 && f.header_size <= max_header_bytes, at);
                if (e.kind == event_kind::control) {
                    std::uint8_t payload[max_control_payload];
                    const std::size_t len = scanner.control_payload(e, read.get() + pos, payload);
                    CHECK(len == f.payload_size && len <= max_control_payload, at);
                    seen.control_payload.assign(payload, payload + len);
                }
                out.frames.push_back(seen);
                frame_bytes = 0;
            } else {
                CHECK(e.kind == event_kind::data && in_data_frame && e.head.empty(), at);
            }
            out.forwarded.insert(out.forwarded.end(), e.head.begin(), e.head.end());
            out.forwarded.insert(out.forwarded.end(), read.get() + pos + e.skip, read.get() + pos + e.consumed);
            frame_bytes += e.head.size() + (e.consumed - e.skip);
            if (e.kind == event_kind::control) {
                CHECK(opcode::is_control(f.opcode) && e.frame_start && e.frame_end, at);
                CHECK(frame_bytes == f.header_size + f.payload_size, at);
            } else {
                CHECK(!opcode::is_control(f.opcode), at);
                if (e.frame_start) {
                    in_data_frame = true;
                    message_open = true;
                }
                CHECK(frame_bytes <= f.header_size + f.payload_size, at);
                if (e.frame_end) {
                    CHECK(frame_bytes == f.header_size + f.payload_size, at);
                    in_data_frame = false;
                    if (f.fin) message_open = false;
                } else {
                    // A data frame ends only where its payload does, and the read stops short of it.
                    CHECK(frame_bytes < f.header_size + f.payload_size && pos + e.consumed == size, at);
                }
            }
            CHECK(scanner.inside_data_frame() == in_data_frame, at);
            CHECK(scanner.inside_message() == (message_open || in_data_frame), at);
            CHECK(!scanner.failed(), at);
            pos += e.consumed;
        }
        offset += size;
    }
    return out;
}

void expect_same(const ref_result& want, const scan_result& got, const std::uint8_t* s) {
    CHECK(got.error == want.error, want.forwardable);
    CHECK(got.forwarded.size() == want.forwardable, want.forwardable);
    CHECK(std::equal(got.forwarded.begin(), got.forwarded.end(), s), want.forwardable);
    CHECK(got.frames.size() == want.frames.size(), want.forwardable);
    for (std::size_t i = 0; i < want.frames.size(); ++i) {
        const ref_frame& a = want.frames[i];
        const ref_frame& b = got.frames[i];
        CHECK(a.start == b.start && a.first == b.first && a.masked == b.masked, a.start);
        CHECK(a.payload_size == b.payload_size && a.header_size == b.header_size, a.start);
        CHECK(!a.masked || a.mask == b.mask, a.start);
        CHECK(a.control_payload == b.control_payload, a.start);
    }
}

// A Close seen on the stream, written again by the proxy's own writer: the same code and reason.
void check_close_rewrite(const ref_frame& f, bool masked) {
    if ((f.first & 0x0f) != opcode::close) return;
    const close_payload c = parse_close(f.control_payload);
    CHECK(c.valid == (f.control_payload.size() != 1), f.start);
    if (!c.valid || f.control_payload.empty()) {
        CHECK(c.code == close_code::no_status && c.reason.empty(), f.start);
        return;
    }
    CHECK(c.reason.size() == f.control_payload.size() - 2, f.start);
    std::uint8_t frame[max_control_frame];
    const mask_key key = f.mask;
    const std::size_t n = write_close(frame, c.code, c.reason, masked ? &key : nullptr);
    frame_scanner again{{masked, 0, UINT64_MAX}};
    const scan_event e = again.next(frame, n);
    CHECK(e.kind == event_kind::control && e.consumed == n && again.frame().opcode == opcode::close, f.start);
    std::uint8_t payload[max_control_payload];
    const close_payload back = parse_close({payload, again.control_payload(e, frame, payload)});
    CHECK(back.code == c.code && back.reason == c.reason, f.start);
}

// write_close with any reason: a prefix of it, at most 123 bytes, cut only before a byte that
// does not continue a UTF-8 sequence, and as long as that allows.
void check_close_truncation(const std::uint8_t* s, std::size_t n) {
    const std::string_view reason(reinterpret_cast<const char*>(s), std::min<std::size_t>(n, 300));
    std::uint8_t frame[max_control_frame];
    const std::size_t size = write_close(frame, close_code::going_away, reason, nullptr);
    CHECK(size >= 4 && size <= 2 + max_control_payload, 0);
    const close_payload c = parse_close({frame + 2, size - 2});
    CHECK(c.code == close_code::going_away && reason.starts_with(c.reason), 0);
    const std::size_t limit = max_control_payload - 2;
    if (reason.size() <= limit) {
        CHECK(c.reason.size() == reason.size(), 0);
    } else {
        const auto continues = [&](std::size_t i) { return (static_cast<std::uint8_t>(reason[i]) & 0xC0) == 0x80; };
        CHECK(c.reason.empty() || !continues(c.reason.size()), 0);
        for (std::size_t i = c.reason.size() + 1; i <= limit; ++i)
            CHECK(continues(i), i);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    scan_policy policy;
    policy.masked = (data[0] & 0x01) != 0;
    policy.allowed_rsv = data[0] & 0x70;
    const unsigned limit = data[1] << 8 | data[2];
    policy.max_payload = limit == 0xffff ? UINT64_MAX : limit;
    const std::size_t k = std::min<std::size_t>(data[3] & 0x07, size - 4);
    std::vector<std::size_t> reads;
    for (std::size_t i = 0; i < k; ++i)
        reads.push_back(data[4 + i] == 0 ? 1 : data[4 + i]);
    const std::uint8_t* stream = data + 4 + k;
    const std::size_t n = size - 4 - k;

    const ref_result want = reference(stream, n, policy);
    expect_same(want, scan(stream, n, policy, reads), stream);
    const scan_result whole = scan(stream, n, policy, {});
    expect_same(want, whole, stream);
    for (const ref_frame& f : want.frames)
        check_close_rewrite(f, policy.masked);
    check_close_truncation(stream, n);
    return 0;
}
