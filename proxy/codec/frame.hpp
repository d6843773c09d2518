#pragma once
// RFC 6455 section 5.2 framing: constants, the frames the proxy writes itself, and Close
// payload parsing. No I/O.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace wsdrain::codec {

namespace opcode {
inline constexpr std::uint8_t continuation = 0x0;
inline constexpr std::uint8_t text = 0x1;
inline constexpr std::uint8_t binary = 0x2;
inline constexpr std::uint8_t close = 0x8;
inline constexpr std::uint8_t ping = 0x9;
inline constexpr std::uint8_t pong = 0xA;

constexpr bool is_control(std::uint8_t op) { return (op & 0x8) != 0; }
constexpr bool is_known(std::uint8_t op) { return op <= binary || (op >= close && op <= pong); }
}  // namespace opcode

namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t no_status = 1005;  // never on the wire: "Close had no code"
inline constexpr std::uint16_t abnormal = 1006;   // never on the wire: "no Close at all"
inline constexpr std::uint16_t too_big = 1009;
inline constexpr std::uint16_t internal_error = 1011;
inline constexpr std::uint16_t service_restart = 1012;
inline constexpr std::uint16_t bad_gateway = 1014;
}  // namespace close_code

inline constexpr std::size_t max_control_payload = 125;
inline constexpr std::size_t max_header_bytes = 14;
// The largest frame the proxy writes itself: a control frame with a mask.
inline constexpr std::size_t max_control_frame = 2 + 4 + max_control_payload;

using mask_key = std::array<std::uint8_t, 4>;

// XORs `data` with the mask, starting at `offset` bytes into the masked payload.
void apply_mask(std::uint8_t* data, std::size_t size, const mask_key& key, std::size_t offset = 0);

// Writes a complete control frame into `out` (at least max_control_frame bytes) and returns
// its size. `masked` frames go to a backend; unmasked ones to a client. Payloads longer
// than 125 bytes are truncated.
std::size_t write_control(std::uint8_t* out, std::uint8_t op, std::span<const std::uint8_t> payload,
                          const mask_key* mask);

// A Close frame with `code` and `reason` (reason truncated to fit 125 bytes, at a UTF-8
// character boundary).
std::size_t write_close(std::uint8_t* out, std::uint16_t code, std::string_view reason, const mask_key* mask);

struct close_payload {
    std::uint16_t code = close_code::no_status;
    std::string_view reason;
    bool valid = true;  // false for a 1-byte payload
};

// Parses an (unmasked) Close payload.
close_payload parse_close(std::span<const std::uint8_t> payload);

}  // namespace wsdrain::codec
