#pragma once
// Structured log lines, as text ("msg key=value ...") or JSON objects, through spdlog.
// Every line goes through write() so that JSON output stays valid.

#include <spdlog/common.h>

#include <initializer_list>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace wsdrain::log {

struct field {
    field(std::string_view k, std::string_view v) : key(k), value(v), quoted(true) {}
    field(std::string_view k, const std::string& v) : key(k), value(v), quoted(true) {}
    field(std::string_view k, const char* v) : key(k), value(v), quoted(true) {}
    template <class N, class = std::enable_if_t<std::is_arithmetic_v<N>>>
    field(std::string_view k, N n) : key(k), value(format_number(n)), quoted(false) {}

    std::string_view key;
    std::string value;
    bool quoted;

private:
    template <class N>
    static std::string format_number(N n) {
        if constexpr (std::is_floating_point_v<N>) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(n));
            return buf;
        } else {
            return std::to_string(n);
        }
    }
};

// Throws std::invalid_argument for an unknown level name.
void setup(const config::log_config& cfg);

bool enabled(spdlog::level::level_enum level);
void write(spdlog::level::level_enum level, std::string_view msg, std::initializer_list<field> fields = {});

inline void debug(std::string_view m, std::initializer_list<field> f = {}) { write(spdlog::level::debug, m, f); }
inline void info(std::string_view m, std::initializer_list<field> f = {}) { write(spdlog::level::info, m, f); }
inline void warn(std::string_view m, std::initializer_list<field> f = {}) { write(spdlog::level::warn, m, f); }
inline void error(std::string_view m, std::initializer_list<field> f = {}) { write(spdlog::level::err, m, f); }

}  // namespace wsdrain::log
