// Value parsers and the cross-key rules of the configuration; no YAML here (see loader.cpp).
#include "config/config.hpp"

#include "config/rules.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <limits>

namespace wsdrain::config {

namespace {

constexpr auto npos = std::string_view::npos;

bool is_digits(std::string_view text) { return !text.empty() && text.find_first_not_of("0123456789") == npos; }

// Milliseconds in one `unit`, 0 for anything else.
std::int64_t unit_ms(std::string_view unit) {
    if (unit == "ms") return 1;
    if (unit == "s") return 1000;
    if (unit == "m") return 60 * 1000;
    if (unit == "h") return 60 * 60 * 1000;
    return 0;
}

// 0.<fraction> units in whole milliseconds, rounded half up, exact for any number of digits.
// Long multiplication by `unit` from the last digit: the final carry is the whole milliseconds
// and the final remainder digit is the first decimal of what is left, which alone decides the
// rounding (the digits after it add less than one unit of it).
std::int64_t fraction_ms(std::string_view fraction, std::int64_t unit) {
    std::int64_t carry = 0;
    std::int64_t first_remainder_digit = 0;
    for (auto digit = fraction.rbegin(); digit != fraction.rend(); ++digit) {
        const std::int64_t product = (*digit - '0') * unit + carry;
        carry = product / 10;
        first_remainder_digit = product % 10;
    }
    return carry + (first_remainder_digit >= 5 ? 1 : 0);
}

bool is_ipv4(std::string_view host) {
    in_addr parsed{};
    return inet_pton(AF_INET, std::string(host).c_str(), &parsed) == 1;
}

bool is_ipv6(std::string_view host) {
    in6_addr parsed{};
    return inet_pton(AF_INET6, std::string(host).c_str(), &parsed) == 1;
}

// RFC 1123 names, plus '_' (Docker Compose service names have it).
bool is_hostname(std::string_view host) {
    if (host.empty() || host.size() > 253) return false;
    std::size_t start = 0;
    while (start <= host.size()) {
        const std::size_t end = std::min(host.find('.', start), host.size());
        const std::string_view label = host.substr(start, end - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
        const bool allowed = std::ranges::all_of(label, [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        });
        if (!allowed) return false;
        start = end + 1;
    }
    return true;
}

// Something all digits and dots is meant as an IPv4 address and must be a valid one.
bool is_host(std::string_view host) {
    return host.find_first_not_of("0123456789.") == npos ? is_ipv4(host) : is_hostname(host);
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
    unsigned port = 0;
    if (!is_digits(text) || text.size() > 5) return std::nullopt;
    std::from_chars(text.data(), text.data() + text.size(), port);
    if (port > std::numeric_limits<std::uint16_t>::max()) return std::nullopt;
    return static_cast<std::uint16_t>(port);
}

}  // namespace

std::string address::to_string() const {
    const std::string port_text = std::to_string(port);
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + port_text;
    return host + ":" + port_text;
}

std::string format_problem(const std::string& file, const problem& p) {
    if (p.line == 0) return file + ": " + p.message;  // about the whole file: no position
    return file + ":" + std::to_string(p.line) + ":" + std::to_string(p.column) + ": " + p.message;
}

std::optional<duration> parse_duration(std::string_view text) {
    if (text == "0") return duration{0};
    const std::size_t unit_at = text.find_first_not_of("0123456789.");
    if (unit_at == npos) return std::nullopt;
    const std::int64_t unit = unit_ms(text.substr(unit_at));
    const std::string_view number = text.substr(0, unit_at);
    const std::size_t dot = number.find('.');
    const std::string_view whole = number.substr(0, dot);
    const std::string_view fraction = dot == npos ? std::string_view{} : number.substr(dot + 1);
    if (unit == 0 || !is_digits(whole) || (dot != npos && !is_digits(fraction))) return std::nullopt;

    std::uint64_t whole_units = 0;
    if (std::from_chars(whole.data(), whole.data() + whole.size(), whole_units).ec != std::errc{}) {
        return std::nullopt;
    }
    const std::int64_t rest = fraction_ms(fraction, unit);
    constexpr std::int64_t max_ms = std::numeric_limits<duration::rep>::max();
    if (whole_units > static_cast<std::uint64_t>((max_ms - rest) / unit)) return std::nullopt;
    return duration{static_cast<std::int64_t>(whole_units) * unit + rest};
}

std::optional<address> parse_address(std::string_view text, bool allow_scheme) {
    if (allow_scheme && text.starts_with("http://")) {
        text.remove_prefix(std::string_view("http://").size());
        if (text.ends_with('/')) text.remove_suffix(1);
    }
    std::string_view host;
    std::string_view port;
    if (text.starts_with('[')) {
        const std::size_t close = text.find("]:");
        if (close == npos) return std::nullopt;
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
        if (!is_ipv6(host)) return std::nullopt;
    } else {
        const std::size_t colon = text.rfind(':');
        if (colon == npos) return std::nullopt;
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (!is_host(host)) return std::nullopt;
    }
    const std::optional<std::uint16_t> port_number = parse_port(port);
    if (!port_number) return std::nullopt;
    return address{std::string(host), *port_number};
}

bool is_loopback_host(std::string_view host) {
    if (host == "localhost") return true;
    const std::string text(host);
    in_addr v4{};
    if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    in6_addr v6{};
    if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
    return false;
}

bool is_sendable_close_code(unsigned code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

std::string with_reconnect_hint(std::string_view reason, duration retry_after) {
    std::string out(reason);
    if (!out.empty()) out += "; ";
    out += "retry_after_ms=" + std::to_string(retry_after.count());
    return out;
}

duration draw_retry_after(const reconnect_hint_config& hint, std::uint64_t random) {
    if (hint.max <= hint.min) return hint.max;
    const auto span = static_cast<std::uint64_t>((hint.max - hint.min).count()) + 1;
    return hint.min + duration{static_cast<duration::rep>(random % span)};
}

// ---- cross-key rules ------------------------------------------------------------------------

namespace {

using detail::rule_violation;
using violations = std::vector<rule_violation>;

constexpr std::size_t max_close_reason_bytes = 123;  // a Close payload is 125 bytes with the code
constexpr std::uint64_t min_session_buffer_bytes = 1024;
constexpr auto log_levels =
    std::to_array<std::string_view>({"trace", "debug", "info", "warn", "error", "critical", "off"});

void flag(violations& out, const std::string& path, const std::string& text, std::vector<std::string> inputs = {}) {
    out.push_back({path, std::move(inputs), path + ": " + text});
}

std::string indexed(std::string_view list, std::size_t index) {
    return std::string(list) + "[" + std::to_string(index) + "]";
}

std::string quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

std::string to_text(duration d) {
    if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
    return std::to_string(d.count()) + "ms";
}

// Whether the parts add up to at most `budget`; subtracting cannot overflow on huge values.
bool fits(duration budget, std::initializer_list<duration> parts) {
    for (const duration part : parts) {
        if (part > budget) return false;
        budget -= part;
    }
    return true;
}

void check_tls(const std::optional<tls_config>& tls, violations& out) {
    if (!tls) return;
    if (tls->cert.empty()) flag(out, "tls.cert", "a certificate file is required when tls is set");
    if (tls->key.empty()) flag(out, "tls.key", "a key file is required when tls is set");
}

void check_admin(const admin_config& admin, violations& out) {
    if (!is_loopback_host(admin.listen.host) && admin.token.empty() && !admin.allow_remote_without_token) {
        flag(out, "admin.listen",
             admin.listen.to_string() +
                 " is not a loopback address and admin.token is not set; set a token, or "
                 "admin.allow_remote_without_token: true to expose the read-only endpoints without one",
             {"admin.token", "admin.allow_remote_without_token"});
    }
}

void check_health_check(const health_check_config& check, const std::string& at, violations& out) {
    if (check.interval <= duration::zero()) flag(out, at + ".interval", "must be greater than 0");
    if (check.timeout <= duration::zero()) {
        flag(out, at + ".timeout", "must be greater than 0");
    } else if (check.timeout > check.interval && check.interval > duration::zero()) {
        flag(out, at + ".timeout",
             "must be at most the interval (" + to_text(check.interval) + "), got " + to_text(check.timeout),
             {at + ".interval"});
    }
    if (check.healthy_threshold == 0) flag(out, at + ".healthy_threshold", "must be at least 1");
    if (check.unhealthy_threshold == 0) flag(out, at + ".unhealthy_threshold", "must be at least 1");
    if (check.type == health_check_type::http && !check.path.starts_with('/')) {
        flag(out, at + ".path", "must start with '/', got " + quoted(check.path));
    }
}

void check_upstreams(const std::vector<upstream_config>& upstreams, violations& out) {
    if (upstreams.empty()) flag(out, "upstreams", "at least one upstream is required");
    for (std::size_t i = 0; i < upstreams.size(); ++i) {
        const upstream_config& upstream = upstreams[i];
        const std::string at = indexed("upstreams", i);
        const auto first = std::ranges::find(upstreams, upstream.name, &upstream_config::name);
        const auto first_index = static_cast<std::size_t>(first - upstreams.begin());
        if (upstream.name.empty()) {
            flag(out, at + ".name", "an upstream needs a name");
        } else if (first_index < i) {
            const std::string first_name = indexed("upstreams", first_index) + ".name";
            flag(out, at + ".name", "duplicate upstream name " + quoted(upstream.name) + " (also " + first_name + ")",
                 {first_name});
        }
        if (upstream.endpoints.empty()) flag(out, at + ".endpoints", "an upstream needs at least one endpoint");
        if (upstream.connect_timeout <= duration::zero()) flag(out, at + ".connect_timeout", "must be greater than 0");
        if (upstream.hold_timeout > duration::zero() && upstream.hold_max == 0) {
            flag(out, at + ".hold_max", "must be greater than 0 while hold_timeout is set (hold_timeout: 0 holds none)",
                 {at + ".hold_timeout"});
        }
        if (upstream.health_check) check_health_check(*upstream.health_check, at + ".health_check", out);
        for (std::size_t e = 0; e < upstream.endpoints.size(); ++e) {
            if (upstream.endpoints[e].port == 0) {
                flag(out, indexed(at + ".endpoints", e), "port 0 cannot be connected to");
            }
        }
    }
}

void check_routes(const proxy_config& cfg, violations& out) {
    std::vector<std::string> upstream_names;  // the keys a route's upstream is checked against
    for (std::size_t i = 0; i < cfg.upstreams.size(); ++i) upstream_names.push_back(indexed("upstreams", i) + ".name");

    for (std::size_t i = 0; i < cfg.routes.size(); ++i) {
        const route_config& route = cfg.routes[i];
        const std::string at = indexed("routes", i);
        if (!route.path_prefix.starts_with('/')) {
            flag(out, at + ".path_prefix", "must start with '/', got " + quoted(route.path_prefix));
        }
        if (route.upstream.empty()) {
            flag(out, at + ".upstream", "a route must name an upstream");
        } else if (std::ranges::find(cfg.upstreams, route.upstream, &upstream_config::name) == cfg.upstreams.end()) {
            flag(out, at + ".upstream", "no upstream named " + quoted(route.upstream), upstream_names);
        }
    }
}

void check_drain(const drain_config& drain, violations& out) {
    if (!fits(drain.timeout, {drain.pre_delay, drain.spread, drain.close_timeout})) {
        flag(out, "drain.timeout",
             "must be at least pre_delay + spread + close_timeout (" + to_text(drain.pre_delay) + " + " +
                 to_text(drain.spread) + " + " + to_text(drain.close_timeout) + "), got " + to_text(drain.timeout),
             {"drain.pre_delay", "drain.spread", "drain.close_timeout"});
    }
    if (!is_sendable_close_code(drain.close_code)) {
        flag(out, "drain.close_code",
             std::to_string(drain.close_code) +
                 " is not a close code the proxy may send (1000-1003, 1007-1014 or 3000-4999)");
    }
    if (drain.close_reason.size() > max_close_reason_bytes) {
        flag(out, "drain.close_reason",
             std::to_string(drain.close_reason.size()) + " bytes, more than the " +
                 std::to_string(max_close_reason_bytes) + " a Close frame can carry");
    } else if (drain.reconnect_hint) {
        const std::size_t hinted = with_reconnect_hint(drain.close_reason, drain.reconnect_hint->max).size();
        if (hinted > max_close_reason_bytes) {
            flag(out, "drain.close_reason",
                 "with drain.reconnect_hint it is " + std::to_string(hinted) + " bytes, more than the " +
                     std::to_string(max_close_reason_bytes) + " a Close frame can carry",
                 {"drain.reconnect_hint"});
        }
    }
    if (const auto& hint = drain.reconnect_hint) {
        if (hint->max <= duration::zero()) {
            flag(out, "drain.reconnect_hint.max", "must be greater than 0");
        } else if (hint->min > hint->max) {
            flag(out, "drain.reconnect_hint.min",
                 "must be at most max (" + to_text(hint->max) + "), got " + to_text(hint->min),
                 {"drain.reconnect_hint.max"});
        }
    }
}

void check_limits(const limits_config& limits, violations& out) {
    const auto positive = [&out](const char* path, bool is_positive) {
        if (!is_positive) flag(out, path, "must be greater than 0");
    };
    positive("limits.max_sessions", limits.max_sessions > 0);
    positive("limits.max_header_bytes", limits.max_header_bytes > 0);
    positive("limits.header_timeout", limits.header_timeout > duration::zero());
    positive("limits.max_frame_bytes", limits.max_frame_bytes > 0);
    if (limits.session_buffer_bytes < min_session_buffer_bytes) {
        flag(out, "limits.session_buffer_bytes",
             "must be at least " + std::to_string(min_session_buffer_bytes) + ", got " +
                 std::to_string(limits.session_buffer_bytes));
    }
}

void check_keepalive(const keepalive_config& keepalive, violations& out) {
    if (keepalive.ping_interval > duration::zero() && keepalive.timeout <= duration::zero()) {
        flag(out, "keepalive.timeout", "must be greater than 0 while keepalive.ping_interval is set",
             {"keepalive.ping_interval"});
    }
}

void check_log(const log_config& log, violations& out) {
    if (std::ranges::find(log_levels, log.level) == log_levels.end()) {
        flag(out, "log.level",
             "expected one of trace, debug, info, warn, error, critical, off, got " + quoted(log.level));
    }
}

}  // namespace

std::vector<rule_violation> detail::check_rules(const proxy_config& cfg) {
    violations out;
    check_tls(cfg.tls, out);
    check_admin(cfg.admin, out);
    check_upstreams(cfg.upstreams, out);
    check_routes(cfg, out);
    check_drain(cfg.drain, out);
    check_limits(cfg.limits, out);
    check_keepalive(cfg.keepalive, out);
    check_log(cfg.log, out);
    return out;
}

std::vector<problem> validate(const proxy_config& cfg) {
    std::vector<problem> problems;
    for (rule_violation& violation : detail::check_rules(cfg)) problems.push_back({0, 0, std::move(violation.message)});
    return problems;
}

}  // namespace wsdrain::config
