#include "codec/frame.hpp"

#include <algorithm>
#include <cstring>

namespace wsdrain::codec {

void apply_mask(std::uint8_t* data, std::size_t size, const mask_key& key, std::size_t offset) {
    for (std::size_t i = 0; i < size; ++i) data[i] ^= key[(offset + i) & 3];
}

std::size_t write_control(std::uint8_t* out, std::uint8_t op, std::span<const std::uint8_t> payload,
                          const mask_key* mask) {
    const std::size_t n = std::min(payload.size(), max_control_payload);
    std::size_t pos = 0;
    out[pos++] = static_cast<std::uint8_t>(0x80 | op);
    out[pos++] = static_cast<std::uint8_t>((mask ? 0x80 : 0x00) | n);
    if (mask) {
        std::memcpy(out + pos, mask->data(), 4);
        pos += 4;
    }
    if (n) std::memcpy(out + pos, payload.data(), n);
    if (mask) apply_mask(out + pos, n, *mask);
    return pos + n;
}

std::size_t write_close(std::uint8_t* out, std::uint16_t code, std::string_view reason, const mask_key* mask) {
    std::uint8_t payload[max_control_payload];
    payload[0] = static_cast<std::uint8_t>(code >> 8);
    payload[1] = static_cast<std::uint8_t>(code & 0xff);
    std::size_t n = std::min(reason.size(), max_control_payload - 2);
    // Never cut a UTF-8 sequence in two: back off over continuation bytes.
    if (n < reason.size())
        while (n > 0 && (static_cast<std::uint8_t>(reason[n]) & 0xC0) == 0x80) --n;
    std::memcpy(payload + 2, reason.data(), n);
    return write_control(out, opcode::close, {payload, n + 2}, mask);
}

close_payload parse_close(std::span<const std::uint8_t> payload) {
    close_payload c;
    if (payload.empty()) return c;
    if (payload.size() == 1) {
        c.valid = false;
        return c;
    }
    c.code = static_cast<std::uint16_t>(payload[0] << 8 | payload[1]);
    c.reason = {reinterpret_cast<const char*>(payload.data()) + 2, payload.size() - 2};
    return c;
}

}  // namespace wsdrain::codec
