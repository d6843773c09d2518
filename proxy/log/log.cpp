#include "log/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <stdexcept>

namespace wsdrain::log {

namespace {

config::log_format format_ = config::log_format::text;

bool needs_quotes(std::string_view v) {
    return v.empty() || v.find_first_of(" \"=\t\n") != std::string_view::npos;
}

// A number as it appears in a line: integers in full, reals with three decimals.
void append_number(std::string& line, const field& f) {
    char buf[32];
    char* end = buf;
    switch (f.type) {
        case field::kind::signed_integer: end = std::to_chars(buf, buf + sizeof buf, f.signed_integer).ptr; break;
        case field::kind::unsigned_integer: end = std::to_chars(buf, buf + sizeof buf, f.unsigned_integer).ptr; break;
        case field::kind::real: end = buf + std::max(0, std::snprintf(buf, sizeof buf, "%.3f", f.real)); break;
        case field::kind::text: break;
    }
    line.append(buf, std::min(end, buf + sizeof buf - 1));
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
    out.push_back('"');
    for (const char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out.push_back(c);
                }
        }
    }
    out.push_back('"');
}

void setup(const config::log_config& cfg) {
    const auto level = spdlog::level::from_str(cfg.level);
    if (level == spdlog::level::off && cfg.level != "off") throw std::invalid_argument("unknown log level " + cfg.level);
    format_ = cfg.format;
    auto logger = spdlog::stderr_logger_mt("wsdrain");
    logger->set_level(level);
    logger->flush_on(spdlog::level::info);
    if (format_ == config::log_format::json)
        logger->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})", spdlog::pattern_time_type::utc);
    else
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
    spdlog::set_default_logger(std::move(logger));
}

bool enabled(spdlog::level::level_enum level) { return spdlog::default_logger_raw()->should_log(level); }

void write(spdlog::level::level_enum level, std::string_view msg, std::initializer_list<field> fields) {
    if (!enabled(level)) return;
    std::string line;
    line.reserve(128);
    if (format_ == config::log_format::json) {
        line += "\"msg\":";
        append_json_string(line, msg);
        for (const field& f : fields) {
            line.push_back(',');
            append_json_string(line, f.key);
            line.push_back(':');
            if (f.type == field::kind::text) append_json_string(line, f.text);
            else append_number(line, f);
        }
    } else {
        line += msg;
        for (const field& f : fields) {
            line.push_back(' ');
            line += f.key;
            line.push_back('=');
            if (f.type != field::kind::text) append_number(line, f);
            else if (needs_quotes(f.text)) append_json_string(line, f.text);
            else line += f.text;
        }
    }
    spdlog::default_logger_raw()->log(level, "{}", line);
}

}  // namespace wsdrain::log
