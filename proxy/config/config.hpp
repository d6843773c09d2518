#pragma once
// The typed configuration of wsdrain (SPEC section 5). Parsed once at start-up; no other
// module sees YAML. Units live in the types: durations are std::chrono::milliseconds,
// sizes end in _bytes.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsdrain::config {

using duration = std::chrono::milliseconds;

// HOST:PORT, [v6]:PORT. `host` is kept without brackets.
struct address {
    std::string host;
    std::uint16_t port = 0;

    std::string to_string() const;  // "127.0.0.1:9000", "[::1]:9000"
    friend bool operator==(const address&, const address&) = default;
};

struct tls_config {
    std::string cert;
    std::string key;
};

struct admin_config {
    address listen{"127.0.0.1", 9901};
    std::string token;  // empty: no bearer token
    // A non-loopback listen address without a token is refused unless this says it is meant
    // (read-only endpoints for probes and scraping; POST still only from loopback).
    bool allow_remote_without_token = false;
};

enum class health_check_type { tcp, http };

// Active health checks of each endpoint of an upstream (SPEC section 8).
struct health_check_config {
    health_check_type type = health_check_type::tcp;
    std::string path = "/healthz";  // http: a GET of this path must answer 2xx
    duration interval{2000};
    duration timeout{1000};
    unsigned healthy_threshold = 1;    // passes in a row that bring a down endpoint up
    unsigned unhealthy_threshold = 3;  // failures in a row that take an up endpoint down
};

struct upstream_config {
    std::string name;
    std::vector<address> endpoints;
    bool tls = false;               // TLS to the backend (not verified, as nginx's default)
    duration connect_timeout{5000};  // TCP connect, TLS handshake, and the backend's 101
    // While no endpoint is healthy and undrained, an upgrade waits at most this long (0: not
    // at all), and at most hold_max of them wait at once; past either, 503 + Retry-After.
    duration hold_timeout{10000};
    std::uint64_t hold_max = 1000;
    std::optional<health_check_config> health_check{};  // unset: passive health only
};

struct route_config {
    std::string host;  // empty: any host; compared without port, case-insensitively
    std::string path_prefix = "/";
    std::string upstream;
};

// A drain's Close reason ends in "retry_after_ms=N", N drawn per session from [min, max].
struct reconnect_hint_config {
    duration min{5000};
    duration max{30000};
};

struct drain_config {
    duration pre_delay{0};
    duration spread{5000};
    duration timeout{25000};
    duration close_timeout{5000};
    std::uint16_t close_code = 1001;
    std::string close_reason = "server draining";
    std::optional<reconnect_hint_config> reconnect_hint{};  // unset: no hint
};

struct limits_config {
    std::uint64_t max_sessions = 100000;
    std::uint64_t max_header_bytes = 16384;
    duration header_timeout{10000};
    std::uint64_t max_frame_bytes = 16777216;
    std::uint64_t max_sessions_per_client = 0;  // per client IP address; 0: no cap
    std::uint64_t max_body_bytes = 0;           // plain request bodies; 0: no limit
    // The most a session reads at once, and so the most it holds for a side that cannot take
    // bytes yet (memory per stalled session).
    std::uint64_t session_buffer_bytes = 65536;
};

struct keepalive_config {
    duration ping_interval{30000};  // 0 turns keepalive pings off
    duration timeout{10000};
};

enum class log_format { text, json };

struct log_config {
    std::string level = "info";  // trace, debug, info, warn, error, critical, off
    log_format format = log_format::text;
};

struct proxy_config {
    address listen{"0.0.0.0", 8080};
    unsigned threads = 0;  // 0: one per core
    std::optional<tls_config> tls;
    admin_config admin;
    std::vector<upstream_config> upstreams{{"app", {{"127.0.0.1", 9000}}}};
    std::vector<route_config> routes{{"", "/", "app"}};
    drain_config drain;
    limits_config limits;
    keepalive_config keepalive;
    log_config log;
};

// One problem found in a config file; line and column are 1-based (0 when unknown).
struct problem {
    int line = 0;
    int column = 0;
    std::string message;
};

struct load_result {
    proxy_config config;            // meaningful only when problems is empty
    std::vector<problem> problems;  // every problem in the file, in file order
    bool ok() const { return problems.empty(); }
};

// Loads and validates YAML text.
load_result load_string(std::string_view yaml_text);
// Reads `path` and loads it; an unreadable file is one problem at line 0.
load_result load_file(const std::string& path);

// "FILE:LINE:COL: message"
std::string format_problem(const std::string& file, const problem& p);

// Cross-key checks that also apply after command-line overrides (routes name existing
// upstreams, pre_delay + spread + close_timeout <= timeout, ...). Problems carry line 0.
std::vector<problem> validate(const proxy_config& cfg);

// "1.5s", "250ms", "2m", "1h", "0". nullopt when malformed or negative.
std::optional<duration> parse_duration(std::string_view text);
// "HOST:PORT", "[::1]:PORT"; with allow_scheme also "http://HOST:PORT" (trailing "/" ok).
std::optional<address> parse_address(std::string_view text, bool allow_scheme = false);
// Whether `host` (a literal address or "localhost") is on the loopback interface.
bool is_loopback_host(std::string_view host);
// A drain's Close reason with drain.reconnect_hint: "server draining; retry_after_ms=12000".
std::string with_reconnect_hint(std::string_view reason, duration retry_after);
// A retry_after drawn from [min, max] with `random` (any 64 random bits).
duration draw_retry_after(const reconnect_hint_config& hint, std::uint64_t random);
// A close code the proxy may send: 1000-1003, 1007-1014, 3000-4999.
bool is_sendable_close_code(unsigned code);

}  // namespace wsdrain::config
