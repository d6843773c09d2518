#pragma once
// Structured log lines, as text ("msg key=value ...") or JSON objects, through spdlog.
// Every line goes through write() so that JSON output stays valid.

#include <spdlog/common.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace wsdrain::log {

// A key and its value, as the caller has it: a string is viewed, not copied, and a number is
// formatted only if the line is written. A field lives as long as the call it is passed to.
struct field {
    enum class kind : std::uint8_t { text, signed_integer, unsigned_integer, real };

    field(std::string_view k, std::string_view v) : key(k), type(kind::text), text(v) {}
    field(std::string_view k, const std::string& v) : field(k, std::string_view(v)) {}
    field(std::string_view k, const char* v) : field(k, std::string_view(v)) {}
    template <class N, class = std::enable_if_t<std::is_arithmetic_v<N>>>
    field(std::string_view k, N n) : key(k) {
        if constexpr (std::is_floating_point_v<N>) {
            type = kind::real;
            real = static_cast<double>(n);
        } else if constexpr (std::is_signed_v<N>) {
            type = kind::signed_integer;
            signed_integer = n;
        } else {
            type = kind::unsigned_integer;
            unsigned_integer = n;
        }
    }

    std::string_view key;
    kind type;
    union {
        std::string_view text;
        std::int64_t signed_integer;
        std::uint64_t unsigned_integer;
        double real;
    };
};

// Appends `s` to `out` as a JSON string, quotes included.
void append_json_string(std::string& out, std::string_view s);

// Throws std::invalid_argument for an unknown level name.
void setup(const config::log_config& cfg);

bool enabled(spdlog::level::level_enum level);
void write(spdlog::level::level_enum level, std::string_view msg, std::initializer_list<field> fields = {});

inline void debug(std::string_view m, std::initializer_list<field> f = {}) { write(spdlog::level::debug, m, f); }
inline void info(std::string_view m, std::initializer_list<field> f = {}) { write(spdlog::level::info, m, f); }
inline void warn(std::string_view m, std::initializer_list<field> f = {}) { write(spdlog::level::warn, m, f); }
inline void error(std::string_view m, std::initializer_list<field> f = {}) { write(spdlog::level::err, m, f); }

}  // namespace wsdrain::log
