// The frame scanner finds every boundary whatever the read sizes, passes every byte through
// unchanged, and rejects what RFC 6455 forbids.
#include "codec/frame_scanner.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

using namespace wsdrain::codec;

namespace {

using bytes = std::vector<std::uint8_t>;

struct spec_frame {
    std::uint8_t op;
    bool fin;
    std::size_t size;
    std::uint8_t rsv = 0;
};

// Encodes a frame the way a peer would: minimal length encoding, optional mask.
bytes encode(const spec_frame& f, bool masked, std::uint32_t seed) {
    bytes out;
    out.push_back(static_cast<std::uint8_t>((f.fin ? 0x80 : 0) | f.rsv | f.op));
    const std::uint8_t m = masked ? 0x80 : 0;
    if (f.size < 126) {
        out.push_back(static_cast<std::uint8_t>(m | f.size));
    } else if (f.size <= 0xffff) {
        out.push_back(m | 126);
        out.push_back(static_cast<std::uint8_t>(f.size >> 8));
        out.push_back(static_cast<std::uint8_t>(f.size));
    } else {
        out.push_back(m | 127);
        for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(std::uint64_t{f.size} >> (8 * i)));
    }
    mask_key key{static_cast<std::uint8_t>(seed), 0x5a, 0xa5, static_cast<std::uint8_t>(seed >> 8)};
    if (masked) out.insert(out.end(), key.begin(), key.end());
    const std::size_t start = out.size();
    for (std::size_t i = 0; i < f.size; ++i) out.push_back(static_cast<std::uint8_t>('a' + (i + seed) % 26));
    if (masked) apply_mask(out.data() + start, f.size, key);
    return out;
}

struct seen_frame {
    std::uint8_t op;
    bool fin;
    std::uint64_t size;
    std::string control_payload;
};

struct scan_outcome {
    bytes emitted;                 // head + input ranges, in order
    std::vector<seen_frame> frames;
    std::vector<std::size_t> ends;  // stream offsets where a frame ended
    scan_error error = scan_error::none;
};

// Feeds `stream` in the given piece sizes (cycled) and records what the relay would see.
scan_outcome scan(const bytes& stream, const std::vector<std::size_t>& pieces, scan_policy policy) {
    frame_scanner s{policy};
    scan_outcome out;
    std::size_t offset = 0, piece = 0;
    while (offset < stream.size()) {
        const std::size_t n = std::min(pieces[piece++ % pieces.size()], stream.size() - offset);
        const std::uint8_t* in = stream.data() + offset;
        for (std::size_t pos = 0; pos < n;) {
            const scan_event e = s.next(in + pos, n - pos);
            if (e.kind == event_kind::error) {
                out.error = e.error;
                return out;
            }
            if (e.kind != event_kind::need_more) {
                out.emitted.insert(out.emitted.end(), e.head.begin(), e.head.end());
                out.emitted.insert(out.emitted.end(), in + pos + e.skip, in + pos + e.consumed);
            }
            if (e.frame_start) {
                seen_frame f{s.frame().opcode, s.frame().fin, s.frame().payload_size, {}};
                if (e.kind == event_kind::control) {
                    std::uint8_t buf[max_control_payload];
                    const std::size_t len = s.control_payload(e, in + pos, buf);
                    f.control_payload.assign(reinterpret_cast<char*>(buf), len);
                }
                out.frames.push_back(f);
            }
            pos += e.consumed;
            if (e.frame_end) out.ends.push_back(offset + pos);
            EXPECT_GT(e.consumed + (e.kind == event_kind::need_more ? 1 : 0), 0u) << "no progress";
        }
        offset += n;
    }
    return out;
}

std::string plain_payload(std::size_t size, std::uint32_t seed) {
    std::string s;
    for (std::size_t i = 0; i < size; ++i) s.push_back(static_cast<char>('a' + (i + seed) % 26));
    return s;
}

struct stream_case {
    bytes wire;
    std::vector<spec_frame> frames;
    std::vector<std::size_t> ends;
};

stream_case build(const std::vector<spec_frame>& frames, bool masked) {
    stream_case c;
    std::uint32_t seed = 1;
    for (const auto& f : frames) {
        bytes b = encode(f, masked, seed++);
        c.wire.insert(c.wire.end(), b.begin(), b.end());
        c.ends.push_back(c.wire.size());
    }
    c.frames = frames;
    return c;
}

void expect_scanned(const stream_case& c, const scan_outcome& o) {
    ASSERT_EQ(o.error, scan_error::none) << to_string(o.error);
    EXPECT_EQ(o.emitted, c.wire);
    EXPECT_EQ(o.ends, c.ends);
    ASSERT_EQ(o.frames.size(), c.frames.size());
    for (std::size_t i = 0; i < c.frames.size(); ++i) {
        EXPECT_EQ(o.frames[i].op, c.frames[i].op) << "frame " << i;
        EXPECT_EQ(o.frames[i].fin, c.frames[i].fin) << "frame " << i;
        EXPECT_EQ(o.frames[i].size, c.frames[i].size) << "frame " << i;
        if (opcode::is_control(c.frames[i].op)) {
            EXPECT_EQ(o.frames[i].control_payload, plain_payload(c.frames[i].size, static_cast<std::uint32_t>(i + 1)));
        }
    }
}

const std::vector<spec_frame> every_kind = {
    {opcode::text, true, 0},         {opcode::binary, true, 1},       {opcode::text, true, 125},
    {opcode::binary, true, 126},     {opcode::text, true, 65535},     {opcode::binary, true, 65536},
    {opcode::ping, true, 0},         {opcode::ping, true, 125},       {opcode::pong, true, 7},
    {opcode::text, false, 10},       {opcode::ping, true, 3},         {opcode::continuation, false, 300},
    {opcode::pong, true, 0},         {opcode::continuation, true, 0}, {opcode::close, true, 2},
};

}  // namespace

TEST(frame_scanner, finds_every_frame_kind_split_at_every_byte_boundary) {
    for (bool masked : {true, false}) {
        for (const auto& f : every_kind) {
            // Each frame alone, preceded by a small frame so a split also lands mid-stream.
            std::vector<spec_frame> frames{{opcode::binary, true, 3}};
            if (f.op == opcode::continuation) frames.push_back({opcode::text, false, 1});
            frames.push_back(f);
            if (!f.fin || (f.op == opcode::continuation && !f.fin)) frames.push_back({opcode::continuation, true, 2});
            const stream_case c = build(frames, masked);
            for (std::size_t split = 1; split < c.wire.size(); ++split) {
                const std::size_t rest = c.wire.size() - split;
                const scan_outcome o = scan(c.wire, {split, rest}, {masked, 0, UINT64_MAX});
                SCOPED_TRACE("opcode " + std::to_string(f.op) + " size " + std::to_string(f.size) + " split " +
                             std::to_string(split));
                expect_scanned(c, o);
                if (::testing::Test::HasFailure()) return;
            }
        }
    }
}

TEST(frame_scanner, reads_of_one_byte_find_every_boundary) {
    const stream_case c = build(every_kind, true);
    expect_scanned(c, scan(c.wire, {1}, {true, 0, UINT64_MAX}));
}

TEST(frame_scanner, random_splits_of_a_long_mixed_stream_find_every_boundary) {
    std::mt19937 rng(6455);
    std::vector<spec_frame> frames;
    bool open = false;
    for (int i = 0; i < 3000; ++i) {
        const int kind = static_cast<int>(rng() % 10);
        std::size_t size = rng() % 4 == 0 ? rng() % 70000 : rng() % 300;
        if (kind < 2) {
            frames.push_back({rng() % 2 ? opcode::ping : opcode::pong, true, size % 126});
        } else {
            const bool fin = rng() % 3 != 0;
            frames.push_back({open ? opcode::continuation : (rng() % 2 ? opcode::text : opcode::binary), fin, size});
            open = !fin;
        }
    }
    if (open) frames.push_back({opcode::continuation, true, 5});
    for (bool masked : {true, false}) {
        const stream_case c = build(frames, masked);
        for (int round = 0; round < 5; ++round) {
            std::vector<std::size_t> pieces;
            for (int i = 0; i < 64; ++i) pieces.push_back(1 + rng() % (round == 0 ? 16 : 70000));
            expect_scanned(c, scan(c.wire, pieces, {masked, 0, UINT64_MAX}));
        }
    }
}

TEST(frame_scanner, reports_message_and_frame_position_for_injection) {
    frame_scanner s{{false, 0, UINT64_MAX}};
    const bytes first = encode({opcode::text, false, 10}, false, 1);
    // Header and 4 payload bytes: inside a data frame and a message.
    auto e = s.next(first.data(), 6);
    EXPECT_TRUE(s.inside_data_frame());
    EXPECT_TRUE(s.inside_message());
    e = s.next(first.data() + 6, first.size() - 6);
    EXPECT_TRUE(e.frame_end);
    EXPECT_FALSE(s.inside_data_frame());  // a Ping may go here
    EXPECT_TRUE(s.inside_message());       // a drain Close waits
    const bytes last = encode({opcode::continuation, true, 0}, false, 2);
    s.next(last.data(), last.size());
    EXPECT_FALSE(s.inside_message());
}

namespace {
scan_error error_of(const bytes& wire, scan_policy policy, bool fragment_open = false) {
    frame_scanner s{policy};
    if (fragment_open) {
        const bytes open = encode({opcode::text, false, 1}, policy.masked, 1);
        s.next(open.data(), open.size());
    }
    const scan_event e = s.next(wire.data(), wire.size());
    return e.kind == event_kind::error ? e.error : scan_error::none;
}
}  // namespace

TEST(frame_scanner, rejects_what_rfc6455_forbids) {
    const scan_policy client{true, 0, 1000};
    EXPECT_EQ(error_of(encode({0x3, true, 1}, true, 1), client), scan_error::reserved_opcode);
    EXPECT_EQ(error_of(encode({0xB, true, 1}, true, 1), client), scan_error::reserved_opcode);
    EXPECT_EQ(error_of(encode({opcode::text, true, 1, 0x40}, true, 1), client), scan_error::reserved_bits);
    EXPECT_EQ(error_of(encode({opcode::ping, true, 126}, true, 1), client), scan_error::control_too_long);
    EXPECT_EQ(error_of(encode({opcode::ping, false, 1}, true, 1), client), scan_error::control_fragmented);
    EXPECT_EQ(error_of(encode({opcode::continuation, true, 1}, true, 1), client), scan_error::unexpected_continuation);
    EXPECT_EQ(error_of(encode({opcode::text, true, 1}, true, 1), client, true), scan_error::message_in_progress);
    EXPECT_EQ(error_of(encode({opcode::text, true, 1}, false, 1), client), scan_error::mask_required);
    EXPECT_EQ(error_of(encode({opcode::text, true, 1}, true, 1), {false, 0, 1000}), scan_error::mask_forbidden);
    EXPECT_EQ(error_of(encode({opcode::binary, true, 1001}, true, 1), client), scan_error::frame_too_big);
    EXPECT_EQ(error_of(encode({opcode::binary, true, 1000}, true, 1), client), scan_error::none);
    EXPECT_EQ(error_of({0x82, 0xFE, 0x00, 0x05, 1, 2, 3, 4}, client), scan_error::non_minimal_length);
    EXPECT_EQ(error_of({0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, {true, 0, UINT64_MAX}),
              scan_error::length_overflow);
    EXPECT_EQ(close_code_for(scan_error::frame_too_big), 1009);
    EXPECT_EQ(close_code_for(scan_error::mask_required), 1002);
}

TEST(frame_scanner, allows_rsv1_only_when_negotiated_and_never_on_control_frames) {
    const scan_policy deflate{true, 0x40, UINT64_MAX};
    EXPECT_EQ(error_of(encode({opcode::text, true, 5, 0x40}, true, 1), deflate), scan_error::none);
    EXPECT_EQ(error_of(encode({opcode::text, true, 5, 0x20}, true, 1), deflate), scan_error::reserved_bits);
    EXPECT_EQ(error_of(encode({opcode::ping, true, 5, 0x40}, true, 1), deflate), scan_error::reserved_bits);
}

TEST(frame_scanner, stays_failed_after_an_error) {
    frame_scanner s{{true, 0, UINT64_MAX}};
    const bytes bad = encode({opcode::text, true, 1}, false, 1);
    EXPECT_EQ(s.next(bad.data(), bad.size()).kind, event_kind::error);
    EXPECT_TRUE(s.failed());
    const bytes good = encode({opcode::text, true, 1}, true, 1);
    EXPECT_EQ(s.next(good.data(), good.size()).kind, event_kind::error);
}

TEST(frame_writer, writes_close_frames_a_peer_can_parse) {
    std::uint8_t buf[max_control_frame];
    const mask_key key{1, 2, 3, 4};
    const std::size_t n = write_close(buf, 1001, "server draining", &key);
    frame_scanner s{{true, 0, UINT64_MAX}};
    const scan_event e = s.next(buf, n);
    ASSERT_EQ(e.kind, event_kind::control);
    EXPECT_EQ(e.consumed, n);
    std::uint8_t payload[max_control_payload];
    const std::size_t len = s.control_payload(e, buf, payload);
    const close_payload c = parse_close({payload, len});
    EXPECT_EQ(c.code, 1001);
    EXPECT_EQ(c.reason, "server draining");
}

TEST(frame_writer, truncates_a_long_reason_at_a_utf8_boundary) {
    std::string reason;
    for (int i = 0; i < 60; ++i) reason += "\xC3\xA9";  // 'é', 2 bytes each: 120 bytes
    reason = "xx" + reason;                               // 122 bytes, then one more char
    reason += "\xC3\xA9";                                 // 124 bytes: over 123
    std::uint8_t buf[max_control_frame];
    const std::size_t n = write_close(buf, 1000, reason, nullptr);
    ASSERT_LE(n, 2u + 125u);
    const close_payload c = parse_close({buf + 2, n - 2});
    EXPECT_EQ(c.reason.size(), 122u);  // the last 'é' did not fit whole
    EXPECT_EQ(parse_close({buf + 2, 1}).valid, false);
    EXPECT_EQ(parse_close({}).code, close_code::no_status);
}
