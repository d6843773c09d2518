// Fuzzes config::load_string, the loader `wsdrain` and `wsdrain check` run on a config file.
//
// Input: the file's text.
//
// Whatever the text, loading must return (no crash, no exception) and:
// - every problem has a message, and a position inside the text: a line of it and a column
//   within that line or just after its end (or 0:0, "the whole file"); problems come in file order;
// - a config loaded without problems passes validate() (the check run after command-line
//   overrides), and written back as YAML (every key, quoted, durations in ms) it loads again
//   without problems into the same config.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

#include "config/config.hpp"

using namespace wsdrain::config;

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail) {
    std::fprintf(stderr, "fuzz_config: %s\n%s\n", what, detail.c_str());
    std::abort();
}

#define CHECK(cond, detail)                 \
    do {                                    \
        if (!(cond)) fail(#cond, (detail)); \
    } while (0)

// A YAML double-quoted scalar holding exactly `text`.
std::string quoted(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (byte < 0x20 || byte == 0x7f) {
            char escape[5];
            std::snprintf(escape, sizeof escape, "\\x%02x", byte);
            out += escape;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::string ms(duration d) {
    return std::to_string(d.count()) + "ms";
}

// Every key of `c` as a config file.
std::string to_yaml(const proxy_config& c) {
    std::string y;
    y += "listen: " + quoted(c.listen.to_string()) + "\n";
    y += "threads: " + std::to_string(c.threads) + "\n";
    if (c.tls) y += "tls:\n  cert: " + quoted(c.tls->cert) + "\n  key: " + quoted(c.tls->key) + "\n";
    y += "admin:\n  listen: " + quoted(c.admin.listen.to_string()) + "\n  token: " + quoted(c.admin.token) +
         "\n  allow_remote_without_token: " + (c.admin.allow_remote_without_token ? "true" : "false") + "\n";
    y += "upstreams:" + std::string(c.upstreams.empty() ? " []" : "") + "\n";
    for (const upstream_config& u : c.upstreams) {
        y += "  - name: " + quoted(u.name) + "\n    endpoints: [";
        for (std::size_t i = 0; i < u.endpoints.size(); ++i)
            y += (i ? ", " : "") + quoted(u.endpoints[i].to_string());
        y += "]\n    tls: " + std::string(u.tls ? "true" : "false") + "\n    connect_timeout: " + ms(u.connect_timeout) +
             "\n    hold_timeout: " + ms(u.hold_timeout) + "\n    hold_max: " + std::to_string(u.hold_max) + "\n";
        if (const auto& h = u.health_check) {
            y += "    health_check:\n      type: " + std::string(h->type == health_check_type::http ? "http" : "tcp") +
                 "\n      path: " + quoted(h->path) + "\n      interval: " + ms(h->interval) +
                 "\n      timeout: " + ms(h->timeout) + "\n      healthy_threshold: " +
                 std::to_string(h->healthy_threshold) + "\n      unhealthy_threshold: " +
                 std::to_string(h->unhealthy_threshold) + "\n";
        }
    }
    y += "routes:" + std::string(c.routes.empty() ? " []" : "") + "\n";
    for (const route_config& r : c.routes) {
        y += "  - host: " + quoted(r.host) + "\n    path_prefix: " + quoted(r.path_prefix) +
             "\n    upstream: " + quoted(r.upstream) + "\n";
    }
    const drain_config& d = c.drain;
    y += "drain:\n  pre_delay: " + ms(d.pre_delay) + "\n  spread: " + ms(d.spread) + "\n  timeout: " + ms(d.timeout) +
         "\n  close_timeout: " + ms(d.close_timeout) + "\n  close_code: " + std::to_string(d.close_code) +
         "\n  close_reason: " + quoted(d.close_reason) + "\n";
    if (const auto& h = d.reconnect_hint) y += "  reconnect_hint: {min: " + ms(h->min) + ", max: " + ms(h->max) + "}\n";
    const limits_config& l = c.limits;
    y += "limits:\n  max_sessions: " + std::to_string(l.max_sessions) +
         "\n  max_header_bytes: " + std::to_string(l.max_header_bytes) + "\n  header_timeout: " + ms(l.header_timeout) +
         "\n  max_frame_bytes: " + std::to_string(l.max_frame_bytes) +
         "\n  max_sessions_per_client: " + std::to_string(l.max_sessions_per_client) +
         "\n  max_body_bytes: " + std::to_string(l.max_body_bytes) +
         "\n  session_buffer_bytes: " + std::to_string(l.session_buffer_bytes) + "\n";
    y += "keepalive:\n  ping_interval: " + ms(c.keepalive.ping_interval) + "\n  timeout: " + ms(c.keepalive.timeout) +
         "\n";
    y += "log:\n  level: " + quoted(c.log.level) +
         "\n  format: " + (c.log.format == log_format::json ? "json" : "text") + "\n";
    return y;
}

std::string problems_text(const load_result& r) {
    std::string out;
    for (const problem& p : r.problems)
        out += format_problem("config", p) + "\n";
    return out;
}

// Columns are checked against the input's bytes only when it is valid UTF-8 (strictly: no
// overlong forms, no surrogates) without NUL. yaml-cpp counts a column per byte of the text as
// it decoded it: UTF-16 and UTF-32 input (told by the first four bytes) re-encoded as UTF-8,
// each invalid UTF-8 byte replaced by U+FFFD, three bytes. NUL, which YAML does not allow
// anywhere, makes it point one or two columns past the end of the line.
bool is_plain_utf8(std::string_view text) {
    if (text.starts_with("\xFE\xFF") || text.starts_with("\xFF\xFE")) return false;
    if (text.find('\0') != std::string_view::npos) return false;
    for (std::size_t i = 0; i < text.size();) {
        const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
        const unsigned char b = byte(i);
        const std::size_t n = b < 0x80                 ? 1
                              : b >= 0xC2 && b <= 0xDF ? 2
                              : b >= 0xE0 && b <= 0xEF ? 3
                              : b >= 0xF0 && b <= 0xF4 ? 4
                                                       : 0;
        if (n == 0 || text.size() - i < n) return false;
        for (std::size_t k = 1; k < n; ++k)
            if ((byte(i + k) & 0xC0) != 0x80) return false;
        if (n == 3 && ((b == 0xE0 && byte(i + 1) < 0xA0) || (b == 0xED && byte(i + 1) >= 0xA0))) return false;
        if (n == 4 && ((b == 0xF0 && byte(i + 1) < 0x90) || (b == 0xF4 && byte(i + 1) >= 0x90))) return false;
        i += n;
    }
    return true;
}

void check_positions(std::string_view text, const load_result& r) {
    const std::string listed = problems_text(r);
    const bool utf8 = is_plain_utf8(text);
    for (const problem& p : r.problems) {
        CHECK(!p.message.empty(), listed);
        if (p.line == 0) {
            CHECK(p.column == 0, listed);
            continue;
        }
        CHECK(p.line >= 1 && p.column >= 1, listed);
        // The line `p.line` of the text, counted by '\n' as yaml-cpp does.
        std::size_t start = 0;
        for (int line = 1; line < p.line; ++line) {
            const std::size_t end = text.find('\n', start);
            CHECK(end != std::string_view::npos, listed);  // the text has fewer lines
            start = end + 1;
        }
        if (!utf8) continue;
        const std::size_t end = std::min(text.find('\n', start), text.size());
        CHECK(static_cast<std::size_t>(p.column) <= end - start + 1, listed);
    }
    CHECK(std::ranges::is_sorted(r.problems, {}, [](const problem& p) { return std::pair(p.line, p.column); }), listed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const load_result loaded = load_string(text);
    check_positions(text, loaded);
    if (!loaded.ok()) return 0;

    CHECK(validate(loaded.config).empty(), "validate() disagrees with the loader");
    const std::string again_text = to_yaml(loaded.config);
    const load_result again = load_string(again_text);
    CHECK(again.ok(), again_text + problems_text(again));
    CHECK(to_yaml(again.config) == again_text, again_text + "---- read back as ----\n" + to_yaml(again.config));
    return 0;
}
