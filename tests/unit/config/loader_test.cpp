// The config loader turns SPEC section 5's YAML into typed structs, and reports every problem
// of a file at its line and column; validate() applies the cross-key rules to any config.
#include "config/config.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

using namespace wsdrain::config;
using namespace std::chrono_literals;

namespace wsdrain::config {
// Lets a failing comparison show addresses as text.
void PrintTo(const address& a, std::ostream* out) { *out << a.to_string(); }
}  // namespace wsdrain::config

namespace {

using messages = std::vector<std::string>;

// YAML text from one string per line, so that a test reads its line numbers off the list.
std::string lines(std::initializer_list<std::string_view> text) {
    std::string out;
    for (const std::string_view line : text) out.append(line).append("\n");
    return out;
}

// "LINE:COL: message" for each problem: what `wsdrain check` prints after the file name.
messages problems_of(const load_result& result) {
    messages out;
    for (const problem& p : result.problems) {
        out.push_back(std::to_string(p.line) + ":" + std::to_string(p.column) + ": " + p.message);
    }
    return out;
}

messages problems_of(std::string_view yaml) { return problems_of(load_string(yaml)); }

// The config of a file that must load without problems.
proxy_config load_ok(std::string_view yaml) {
    load_result result = load_string(yaml);
    EXPECT_EQ(problems_of(result), messages{}) << yaml;
    return result.config;
}

// Every field of a config, one section per line: equal dumps mean equal configs, and a failing
// comparison shows which key differs.
std::string dump(const proxy_config& c) {
    std::ostringstream out;
    out << "listen " << c.listen.to_string() << " threads " << c.threads << "\n";
    out << "tls " << (c.tls ? c.tls->cert + " " + c.tls->key : "off") << "\n";
    out << "admin " << c.admin.listen.to_string() << " token '" << c.admin.token << "' remote "
        << c.admin.allow_remote_without_token << "\n";
    for (const upstream_config& u : c.upstreams) {
        out << "upstream " << u.name;
        for (const address& endpoint : u.endpoints) out << " " << endpoint.to_string();
        out << " tls " << u.tls << " connect_timeout " << u.connect_timeout.count() << " hold "
            << u.hold_timeout.count() << " " << u.hold_max;
        if (const auto& h = u.health_check) {
            out << " health " << (h->type == health_check_type::http ? "http " + h->path : "tcp") << " "
                << h->interval.count() << " " << h->timeout.count() << " " << h->healthy_threshold << " "
                << h->unhealthy_threshold;
        }
        out << "\n";
    }
    for (const route_config& r : c.routes) {
        out << "route host '" << r.host << "' prefix '" << r.path_prefix << "' upstream " << r.upstream << "\n";
    }
    const drain_config& d = c.drain;
    out << "drain " << d.pre_delay.count() << " " << d.spread.count() << " " << d.timeout.count() << " "
        << d.close_timeout.count() << " " << d.close_code << " '" << d.close_reason << "'";
    if (d.reconnect_hint) out << " hint " << d.reconnect_hint->min.count() << " " << d.reconnect_hint->max.count();
    out << "\n";
    const limits_config& l = c.limits;
    out << "limits " << l.max_sessions << " " << l.max_header_bytes << " " << l.header_timeout.count() << " "
        << l.max_frame_bytes << " " << l.max_sessions_per_client << " " << l.max_body_bytes << " "
        << l.session_buffer_bytes << "\n";
    out << "keepalive " << c.keepalive.ping_interval.count() << " " << c.keepalive.timeout.count() << "\n";
    out << "log " << c.log.level << " " << (c.log.format == log_format::json ? "json" : "text") << "\n";
    return out.str();
}

// SPEC section 5, verbatim.
constexpr std::string_view spec_example = R"(listen: 0.0.0.0:8080
threads: 0                                  # event-loop threads; 0 = one per core
# tls: { cert: /etc/wsdrain/tls.crt, key: /etc/wsdrain/tls.key }
admin: { listen: 127.0.0.1:9901 }           # token: optional bearer token
upstreams:
  - name: app
    endpoints: [127.0.0.1:9000]
routes:
  - path_prefix: /
    upstream: app
drain:
  pre_delay: 0s
  spread: 5s
  timeout: 25s
  close_timeout: 5s
  close_code: 1001
  close_reason: server draining
limits:
  max_sessions: 100000
  max_header_bytes: 16384
  header_timeout: 10s
  max_frame_bytes: 16777216
keepalive:
  ping_interval: 30s   # 0 turns it off
  timeout: 10s
log: { level: info, format: text }
)";

// ---- files that load -----------------------------------------------------------------------

TEST(config_load, spec_example_equals_the_defaults) { EXPECT_EQ(dump(load_ok(spec_example)), dump(proxy_config{})); }

TEST(config_load, shipped_config_file_equals_the_defaults) {
    const load_result result = load_file(WSDRAIN_SOURCE_DIR "/config/wsdrain.yaml");
    ASSERT_EQ(problems_of(result), messages{});
    EXPECT_EQ(dump(result.config), dump(proxy_config{}));
}

TEST(config_load, defaults_are_valid) { EXPECT_TRUE(validate(proxy_config{}).empty()); }

TEST(config_load, empty_file_gives_the_defaults) {
    for (const std::string_view yaml : {"", "# nothing but a comment\n", "{}", "---\n"}) {
        SCOPED_TRACE(yaml);
        EXPECT_EQ(dump(load_ok(yaml)), dump(proxy_config{}));
    }
}

TEST(config_load, every_key_overrides_its_default) {
    const proxy_config c = load_ok(lines({
        "listen: 127.0.0.1:18080",
        "threads: 4",
        "tls: { cert: /run/tls.crt, key: /run/tls.key }",
        "admin: { listen: '[::1]:19901', token: s3cret, allow_remote_without_token: true }",
        "upstreams:",
        "  - name: chat",
        "    endpoints: [10.0.0.1:9000, backend.internal:9001]",
        "    tls: true",
        "    connect_timeout: 750ms",
        "    hold_timeout: 30s",
        "    hold_max: 50",
        "    health_check: { type: http, path: /ready, interval: 500ms, timeout: 250ms,",
        "                    healthy_threshold: 2, unhealthy_threshold: 4 }",
        "  - name: api",
        "    endpoints: [10.0.0.2:80]",
        "routes:",
        "  - host: chat.example.com",
        "    path_prefix: /ws",
        "    upstream: chat",
        "  - upstream: api",
        "drain:",
        "  pre_delay: 2s",
        "  spread: 1m",
        "  timeout: 3m",
        "  close_timeout: 1.5s",
        "  close_code: 1012",
        "  close_reason: restarting",
        "  reconnect_hint: { min: 1s, max: 9s }",
        "limits:",
        "  max_sessions: 10",
        "  max_header_bytes: 8192",
        "  header_timeout: 250ms",
        "  max_frame_bytes: 1048576",
        "  max_sessions_per_client: 3",
        "  max_body_bytes: 4096",
        "  session_buffer_bytes: 8192",
        "keepalive: { ping_interval: 0, timeout: 1h }",
        "log: { level: debug, format: json }",
    }));
    EXPECT_EQ(c.listen, (address{"127.0.0.1", 18080}));
    EXPECT_EQ(c.threads, 4u);
    ASSERT_TRUE(c.tls.has_value());
    EXPECT_EQ(c.tls->cert, "/run/tls.crt");
    EXPECT_EQ(c.tls->key, "/run/tls.key");
    EXPECT_EQ(c.admin.listen, (address{"::1", 19901}));
    EXPECT_EQ(c.admin.token, "s3cret");
    EXPECT_TRUE(c.admin.allow_remote_without_token);
    ASSERT_EQ(c.upstreams.size(), 2u);
    EXPECT_TRUE(c.upstreams[0].tls);
    EXPECT_EQ(c.upstreams[0].connect_timeout, 750ms);
    EXPECT_FALSE(c.upstreams[1].tls);
    EXPECT_EQ(c.upstreams[1].connect_timeout, 5s);
    EXPECT_EQ(c.upstreams[0].hold_timeout, 30s);
    EXPECT_EQ(c.upstreams[0].hold_max, 50u);
    ASSERT_TRUE(c.upstreams[0].health_check.has_value());
    EXPECT_EQ(c.upstreams[0].health_check->type, health_check_type::http);
    EXPECT_EQ(c.upstreams[0].health_check->path, "/ready");
    EXPECT_EQ(c.upstreams[0].health_check->interval, 500ms);
    EXPECT_EQ(c.upstreams[0].health_check->timeout, 250ms);
    EXPECT_EQ(c.upstreams[0].health_check->healthy_threshold, 2u);
    EXPECT_EQ(c.upstreams[0].health_check->unhealthy_threshold, 4u);
    EXPECT_EQ(c.upstreams[1].hold_timeout, 10s);
    EXPECT_EQ(c.upstreams[1].hold_max, 1000u);
    EXPECT_FALSE(c.upstreams[1].health_check.has_value());
    EXPECT_EQ(c.upstreams[0].name, "chat");
    EXPECT_EQ(c.upstreams[0].endpoints, (std::vector<address>{{"10.0.0.1", 9000}, {"backend.internal", 9001}}));
    EXPECT_EQ(c.upstreams[1].name, "api");
    EXPECT_EQ(c.upstreams[1].endpoints, (std::vector<address>{{"10.0.0.2", 80}}));
    ASSERT_EQ(c.routes.size(), 2u);
    EXPECT_EQ(c.routes[0].host, "chat.example.com");
    EXPECT_EQ(c.routes[0].path_prefix, "/ws");
    EXPECT_EQ(c.routes[0].upstream, "chat");
    EXPECT_EQ(c.routes[1].host, "");
    EXPECT_EQ(c.routes[1].path_prefix, "/");  // a route without path_prefix matches every path
    EXPECT_EQ(c.routes[1].upstream, "api");
    EXPECT_EQ(c.drain.pre_delay, 2s);
    EXPECT_EQ(c.drain.spread, 1min);
    EXPECT_EQ(c.drain.timeout, 3min);
    EXPECT_EQ(c.drain.close_timeout, 1500ms);
    EXPECT_EQ(c.drain.close_code, 1012);
    EXPECT_EQ(c.drain.close_reason, "restarting");
    ASSERT_TRUE(c.drain.reconnect_hint.has_value());
    EXPECT_EQ(c.drain.reconnect_hint->min, 1s);
    EXPECT_EQ(c.drain.reconnect_hint->max, 9s);
    EXPECT_EQ(c.limits.max_sessions, 10u);
    EXPECT_EQ(c.limits.max_header_bytes, 8192u);
    EXPECT_EQ(c.limits.header_timeout, 250ms);
    EXPECT_EQ(c.limits.max_frame_bytes, 1048576u);
    EXPECT_EQ(c.limits.max_sessions_per_client, 3u);
    EXPECT_EQ(c.limits.max_body_bytes, 4096u);
    EXPECT_EQ(c.limits.session_buffer_bytes, 8192u);
    EXPECT_EQ(c.keepalive.ping_interval, 0ms);
    EXPECT_EQ(c.keepalive.timeout, 1h);
    EXPECT_EQ(c.log.level, "debug");
    EXPECT_EQ(c.log.format, log_format::json);
}

TEST(config_load, missing_keys_keep_their_defaults) {
    proxy_config expected;
    expected.drain.spread = 2s;
    EXPECT_EQ(dump(load_ok("drain: { spread: 2s }\n")), dump(expected));
}

TEST(config_load, upstreams_and_routes_in_the_file_replace_the_default_lists) {
    const proxy_config c = load_ok(lines({
        "upstreams: [{ name: b, endpoints: [10.0.0.9:81] }]",
        "routes: [{ upstream: b }]",
    }));
    ASSERT_EQ(c.upstreams.size(), 1u);
    EXPECT_EQ(c.upstreams[0].name, "b");
    ASSERT_EQ(c.routes.size(), 1u);
    EXPECT_EQ(c.routes[0].upstream, "b");
}

TEST(config_load, listen_on_port_zero_is_allowed) {
    EXPECT_EQ(load_ok("listen: localhost:0\n").listen, (address{"localhost", 0}));
}

// ---- problems: one kind at a time, each at its line and column ------------------------------

TEST(config_problems, unknown_key_is_reported_at_the_key) {
    EXPECT_EQ(problems_of(lines({
                  "listen: 0.0.0.0:8080",
                  "foo: 1",
                  "drain:",
                  "  spread: 5s",
                  "  sprad: 5s",
                  "upstreams:",
                  "  - name: app",
                  "    endpoint: [127.0.0.1:9000]",
                  "    endpoints: [127.0.0.1:9000]",
                  "log: { level: info, colour: true }",
              })),
              (messages{"2:1: unknown key 'foo' at the top level", "5:3: unknown key 'sprad' in drain",
                        "8:5: unknown key 'endpoint' in upstreams[0]", "10:21: unknown key 'colour' in log"}));
}

TEST(config_problems, duplicate_key_is_reported_at_the_second_key) {
    EXPECT_EQ(problems_of(lines({"drain:", "  spread: 5s", "  spread: 6s"})),
              (messages{"3:3: duplicate key 'spread' in drain"}));
}

TEST(config_problems, wrong_type_is_reported_at_the_value) {
    EXPECT_EQ(
        problems_of(lines({
            "drain:",
            "  spread: abc",
            "threads: [1]",
            "limits: 5",
            "upstreams: { name: app }",
            "admin: { token: [a, b] }",
            "log: { format: xml }",
        })),
        (messages{"2:11: drain.spread: expected a duration like 5s, got 'abc'",
                  "3:10: threads: expected a whole number, got a list", "4:9: limits: expected a mapping, got '5'",
                  "5:12: upstreams: expected a list, got a mapping", "6:17: admin.token: expected a string, got a list",
                  "7:16: log.format: expected text or json, got 'xml'"}));
}

TEST(config_problems, missing_value_is_reported_at_its_key) {
    EXPECT_EQ(problems_of(lines({"drain:", "  spread:", "tls:", "log: ~"})),
              (messages{"2:3: drain.spread: expected a duration like 5s, got nothing",
                        "3:1: tls: expected a mapping, got nothing", "4:1: log: expected a mapping, got nothing"}));
}

TEST(config_problems, top_level_must_be_a_mapping) {
    EXPECT_EQ(problems_of("just words\n"), (messages{"1:1: top level: expected a mapping, got 'just words'"}));
    EXPECT_EQ(problems_of("- a\n- b\n"), (messages{"1:1: top level: expected a mapping, got a list"}));
}

TEST(config_problems, bad_address_is_reported_at_the_value) {
    EXPECT_EQ(problems_of(lines({
                  "listen: 1.2.3.4",
                  "admin: { listen: 'host:70000' }",
                  "upstreams:",
                  "  - name: app",
                  "    endpoints: [127.0.0.1:9000, ':80']",
              })),
              (messages{"1:9: listen: expected HOST:PORT or [IPv6]:PORT, got '1.2.3.4'",
                        "2:18: admin.listen: expected HOST:PORT or [IPv6]:PORT, got 'host:70000'",
                        "5:33: upstreams[0].endpoints[1]: expected HOST:PORT or [IPv6]:PORT, got ':80'"}));
}

TEST(config_problems, admin_on_a_public_address_without_a_token_is_refused_unless_allowed) {
    EXPECT_EQ(problems_of(lines({
                  "admin:",
                  "  listen: 0.0.0.0:9901",
              })),
              (messages{"2:11: admin.listen: 0.0.0.0:9901 is not a loopback address and admin.token is not set; set a "
                        "token, or admin.allow_remote_without_token: true to expose the read-only endpoints without "
                        "one"}));
    EXPECT_EQ(problems_of("admin: { listen: 0.0.0.0:9901, token: t }\n"), messages{});
    EXPECT_EQ(problems_of("admin: { listen: 0.0.0.0:9901, allow_remote_without_token: true }\n"), messages{});
    EXPECT_EQ(problems_of("admin: { listen: '[::1]:9901' }\n"), messages{});
    EXPECT_EQ(problems_of("admin: { listen: 127.0.0.2:9901 }\n"), messages{});
    EXPECT_EQ(problems_of("admin: { listen: localhost:9901 }\n"), messages{});
    EXPECT_EQ(problems_of("admin: { listen: 0.0.0.0:9901, allow_remote_without_token: yes }\n"),
              (messages{"1:60: admin.allow_remote_without_token: expected true or false, got 'yes'"}));
}

TEST(config_problems, hardening_limits_are_checked) {
    EXPECT_EQ(problems_of(lines({
                  "upstreams: [{ name: app, endpoints: [127.0.0.1:9000], connect_timeout: 0 }]",
                  "limits: { session_buffer_bytes: 512 }",
              })),
              (messages{"1:72: upstreams[0].connect_timeout: must be greater than 0",
                        "2:33: limits.session_buffer_bytes: must be at least 1024, got 512"}));
}

TEST(config_load, an_empty_health_check_is_a_tcp_check_with_the_defaults) {
    const proxy_config c = load_ok("upstreams: [{ name: app, endpoints: [127.0.0.1:9000], health_check: {} }]\n");
    ASSERT_TRUE(c.upstreams[0].health_check.has_value());
    EXPECT_EQ(c.upstreams[0].health_check->type, health_check_type::tcp);
    EXPECT_EQ(c.upstreams[0].health_check->interval, 2s);
    EXPECT_EQ(c.upstreams[0].health_check->timeout, 1s);
    EXPECT_EQ(c.upstreams[0].health_check->healthy_threshold, 1u);
    EXPECT_EQ(c.upstreams[0].health_check->unhealthy_threshold, 3u);
}

TEST(config_problems, backend_restart_keys_are_checked) {
    EXPECT_EQ(problems_of(lines({
                  "upstreams:",
                  "  - name: app",
                  "    endpoints: [127.0.0.1:9000]",
                  "    hold_max: 0",
                  "    health_check: { type: grpc, interval: 1s, timeout: 2s, healthy_threshold: 0 }",
                  "  - name: web",
                  "    endpoints: [127.0.0.1:9001]",
                  "    health_check: { type: http, path: healthz }",
                  "drain:",
                  "  reconnect_hint: { min: 40s, max: 30s }",
              })),
              (messages{"4:15: upstreams[0].hold_max: must be greater than 0 while hold_timeout is set "
                        "(hold_timeout: 0 holds none)",
                        "5:27: upstreams[0].health_check.type: expected tcp or http, got 'grpc'",
                        "5:56: upstreams[0].health_check.timeout: must be at most the interval (1s), got 2s",
                        "5:79: upstreams[0].health_check.healthy_threshold: must be at least 1",
                        "8:39: upstreams[1].health_check.path: must start with '/', got 'healthz'",
                        "10:26: drain.reconnect_hint.min: must be at most max (30s), got 40s"}));
    EXPECT_EQ(problems_of("drain: { close_reason: '" + std::string(110, 'x') + "', reconnect_hint: {} }\n"),
              (messages{"1:24: drain.close_reason: with drain.reconnect_hint it is 132 bytes, more than the 123 a "
                        "Close frame can carry"}));
}

TEST(config_problems, bad_duration_is_reported_at_the_value) {
    EXPECT_EQ(problems_of(lines({
                  "drain:",
                  "  timeout: 5",
                  "keepalive:",
                  "  ping_interval: -1s",
                  "limits: { header_timeout: 5 s }",
              })),
              (messages{"2:12: drain.timeout: expected a duration like 5s, got '5'",
                        "4:18: keepalive.ping_interval: expected a duration like 5s, got '-1s'",
                        "5:27: limits.header_timeout: expected a duration like 5s, got '5 s'"}));
}

TEST(config_problems, close_code_outside_the_sendable_ranges_is_reported_at_the_value) {
    for (const char* code : {"1004", "1005", "1006", "1015", "2000", "5000", "0"}) {
        SCOPED_TRACE(code);
        EXPECT_EQ(problems_of(lines({"drain:", std::string("  close_code: ") + code})),
                  (messages{std::string("2:15: drain.close_code: ") + code +
                            " is not a close code the proxy may send (1000-1003, 1007-1014 or 3000-4999)"}));
    }
    EXPECT_EQ(problems_of("drain: { close_code: 70000 }\n"),
              (messages{"1:22: drain.close_code: must be at most 65535, got '70000'"}));
}

TEST(config_problems, non_integer_and_negative_numbers_are_reported_at_the_value) {
    EXPECT_EQ(problems_of(lines({
                  "threads: 1.5",
                  "limits:",
                  "  max_sessions: -1",
                  "  max_frame_bytes: 1e6",
                  "  max_header_bytes: 99999999999999999999",
                  "drain: { close_code: 10o1 }",
              })),
              (messages{"1:10: threads: expected a whole number, got '1.5'",
                        "3:17: limits.max_sessions: must not be negative, got '-1'",
                        "4:20: limits.max_frame_bytes: expected a whole number, got '1e6'",
                        "5:21: limits.max_header_bytes: must be at most 18446744073709551615, got "
                        "'99999999999999999999'",
                        "6:22: drain.close_code: expected a whole number, got '10o1'"}));
}

TEST(config_problems, route_naming_a_missing_upstream_points_at_its_upstream_value) {
    EXPECT_EQ(problems_of(lines({
                  "routes:",
                  "  - path_prefix: /chat",
                  "    upstream: chat",
                  "  - upstream: app",
              })),
              (messages{"3:15: routes[0].upstream: no upstream named 'chat'"}));
}

TEST(config_problems, duplicate_upstream_name_points_at_the_second_name) {
    EXPECT_EQ(problems_of(lines({
                  "upstreams:",
                  "  - name: app",
                  "    endpoints: [127.0.0.1:9000]",
                  "  - name: app",
                  "    endpoints: [127.0.0.1:9001]",
              })),
              (messages{"4:11: upstreams[1].name: duplicate upstream name 'app' (also upstreams[0].name)"}));
}

TEST(config_problems, drain_phases_longer_than_the_timeout_point_at_drain_timeout) {
    EXPECT_EQ(problems_of(lines({"drain:", "  spread: 20s", "  timeout: 20s"})),
              (messages{"3:12: drain.timeout: must be at least pre_delay + spread + close_timeout "
                        "(0s + 20s + 5s), got 20s"}));
}

TEST(config_problems, drain_phases_longer_than_the_default_timeout_point_at_the_drain_key) {
    EXPECT_EQ(problems_of(lines({"listen: 0.0.0.0:80", "drain:", "  pre_delay: 1500ms", "  spread: 20s"})),
              (messages{"2:1: drain.timeout: must be at least pre_delay + spread + close_timeout "
                        "(1500ms + 20s + 5s), got 25s"}));
}

TEST(config_problems, validate_rules_are_pointed_at_their_node) {
    EXPECT_EQ(problems_of(lines({
                  "tls: { cert: /run/tls.crt }",
                  "upstreams:",
                  "  - name: app",
                  "    endpoints: []",
                  "  - endpoints: [127.0.0.1:0]",
                  "routes:",
                  "  - path_prefix: api",
                  "    upstream: app",
                  "  - path_prefix: /",
                  "drain:",
                  "  close_reason: " + std::string(124, 'x'),
                  "limits: { max_sessions: 0, header_timeout: 0 }",
                  "keepalive: { timeout: 0 }",
                  "log:",
                  "  level: verbose",
              })),
              (messages{"1:1: tls.key: a key file is required when tls is set",
                        "4:5: upstreams[0].endpoints: an upstream needs at least one endpoint",
                        "5:5: upstreams[1].name: an upstream needs a name",
                        "5:17: upstreams[1].endpoints[0]: port 0 cannot be connected to",
                        "7:18: routes[0].path_prefix: must start with '/', got 'api'",
                        "9:5: routes[1].upstream: a route must name an upstream",
                        "11:17: drain.close_reason: 124 bytes, more than the 123 a Close frame can carry",
                        "12:25: limits.max_sessions: must be greater than 0",
                        "12:44: limits.header_timeout: must be greater than 0",
                        "13:23: keepalive.timeout: must be greater than 0 while keepalive.ping_interval is set",
                        "15:10: log.level: expected one of trace, debug, info, warn, error, critical, off, got "
                        "'verbose'"}));
}

TEST(config_problems, empty_upstream_list_is_reported_at_its_key) {
    EXPECT_EQ(problems_of(lines({"routes: []", "upstreams: []"})),
              (messages{"2:1: upstreams: at least one upstream is required"}));
}

TEST(config_problems, bad_value_does_not_also_break_the_rules_that_read_it) {
    // The name is unreadable, so the route naming 'app' is not reported as dangling too.
    EXPECT_EQ(problems_of(lines({"upstreams:", "  - name: [app]", "    endpoints: [127.0.0.1:9000]"})),
              (messages{"2:11: upstreams[0].name: expected a string, got a list"}));
    // The spread is unreadable, so its default is not summed against the timeout.
    EXPECT_EQ(problems_of(lines({"drain:", "  spread: soon", "  timeout: 1s"})),
              (messages{"2:11: drain.spread: expected a duration like 5s, got 'soon'"}));
}

TEST(config_problems, syntax_error_is_one_problem_at_the_parser_mark) {
    // An unquoted IPv6 address starts a YAML list, and the rest no longer parses.
    EXPECT_EQ(problems_of(lines({"threads: 1", "listen: [::1]:9000", "drain: {"})),
              (messages{"2:14: invalid YAML: end of map not found"}));
}

TEST(config_problems, syntax_error_at_the_end_of_the_input_points_into_its_line) {
    // yaml-cpp's mark runs past the end here (found by tests/fuzz/fuzz_config).
    EXPECT_EQ(problems_of("listen: \"\\x4"),
              (messages{"1:13: invalid YAML: bad character found while scanning hex number"}));
}

TEST(config_problems, hundreds_of_bad_list_items_are_each_reported_once) {
    // Each empty item is a bad endpoint, and the rules that read them stay quiet. This took
    // quadratic time before (found by tests/fuzz/fuzz_config).
    const std::string items(500, ',');
    const messages problems = problems_of("upstreams: [{name: app, endpoints: [" + items + "]}]\n");
    ASSERT_EQ(problems.size(), 500u);
    EXPECT_EQ(problems[0], "1:37: upstreams[0].endpoints[0]: expected HOST:PORT or [IPv6]:PORT, got nothing");
    EXPECT_EQ(problems[499], "1:536: upstreams[0].endpoints[499]: expected HOST:PORT or [IPv6]:PORT, got nothing");
}

TEST(config_problems, second_yaml_document_is_an_error) {
    EXPECT_EQ(problems_of(lines({"threads: 1", "---", "threads: 2"})),
              (messages{"3:1: a config file holds one YAML document, found more"}));
}

TEST(config_problems, stray_comma_is_a_syntax_error_not_endless_empty_documents) {
    // yaml-cpp 0.7's LoadAll loops on these until memory runs out (found by tests/fuzz/fuzz_config).
    EXPECT_EQ(problems_of(","), (messages{"1:1: invalid YAML: unexpected ','"}));
    EXPECT_EQ(problems_of("[a],"), (messages{"1:4: invalid YAML: unexpected ','"}));
    EXPECT_EQ(problems_of(lines({"threads: 1", "---", "[a],"})),
              (messages{"3:1: a config file holds one YAML document, found more"}));
    EXPECT_EQ(problems_of(lines({"threads: 1", "---", "threads: 2", "---", "threads: 3"})),
              (messages{"3:1: a config file holds one YAML document, found more"}));
}

TEST(config_problems, every_problem_is_reported_in_file_order) {
    // Loader findings and rule findings interleave by position, not by the pass that found them.
    EXPECT_EQ(problems_of(lines({
                  "listen: nowhere",
                  "routes:",
                  "  - upstream: missing",
                  "threads: -2",
                  "drain:",
                  "  close_code: 1005",
                  "  timeout: 2s",
                  "  bogus: 1",
                  "log: { level: loud, format: yaml }",
              })),
              (messages{"1:9: listen: expected HOST:PORT or [IPv6]:PORT, got 'nowhere'",
                        "3:15: routes[0].upstream: no upstream named 'missing'",
                        "4:10: threads: must not be negative, got '-2'",
                        "6:15: drain.close_code: 1005 is not a close code the proxy may send (1000-1003, "
                        "1007-1014 or 3000-4999)",
                        "7:12: drain.timeout: must be at least pre_delay + spread + close_timeout "
                        "(0s + 5s + 5s), got 2s",
                        "8:3: unknown key 'bogus' in drain",
                        "9:15: log.level: expected one of trace, debug, info, warn, error, critical, off, got "
                        "'loud'",
                        "9:29: log.format: expected text or json, got 'yaml'"}));
}

// ---- files -------------------------------------------------------------------------------

class config_file : public testing::Test {
protected:
    std::string write(std::string_view name, std::string_view text) {
        const std::filesystem::path path = std::filesystem::path(testing::TempDir()) / name;
        std::ofstream(path) << text;
        return path.string();
    }
};

TEST_F(config_file, loads_with_positions) {
    const load_result result =
        load_file(write("wsdrain_positions.yaml", lines({"threads: 2", "drain: { spread: x }"})));
    EXPECT_EQ(problems_of(result), (messages{"2:18: drain.spread: expected a duration like 5s, got 'x'"}));
}

TEST_F(config_file, missing_file_is_one_problem_naming_the_os_error) {
    const load_result result = load_file(testing::TempDir() + "/wsdrain_no_such_file.yaml");
    EXPECT_EQ(problems_of(result), (messages{"0:0: cannot read the config file: No such file or directory"}));
}

TEST_F(config_file, directory_is_one_problem_naming_the_os_error) {
    const load_result result = load_file(testing::TempDir());
    EXPECT_EQ(problems_of(result), (messages{"0:0: cannot read the config file: Is a directory"}));
}

// ---- validate() on configs built in code (after command-line overrides) ----------------------

TEST(validate, reports_rules_without_position) {
    proxy_config c;
    c.upstreams = {{"default", {{"127.0.0.1", 9000}}}};  // as --upstream does, leaving routes behind
    c.routes = {{"", "/", "app"}};
    c.drain.close_code = 1006;
    c.drain.spread = 30s;
    messages found;
    for (const problem& p : validate(c)) {
        EXPECT_EQ(p.line, 0);
        EXPECT_EQ(p.column, 0);
        found.push_back(p.message);
    }
    EXPECT_EQ(found, (messages{"routes[0].upstream: no upstream named 'app'",
                               "drain.timeout: must be at least pre_delay + spread + close_timeout "
                               "(0s + 30s + 5s), got 25s",
                               "drain.close_code: 1006 is not a close code the proxy may send (1000-1003, "
                               "1007-1014 or 3000-4999)"}));
}

TEST(validate, no_upstreams_at_all) {
    proxy_config c;
    c.upstreams.clear();
    c.routes.clear();
    ASSERT_EQ(validate(c).size(), 1u);
    EXPECT_EQ(validate(c)[0].message, "upstreams: at least one upstream is required");
}

TEST(validate, close_reason_of123_bytes_fits_a_close_frame) {
    proxy_config c;
    c.drain.close_reason = std::string(123, 'x');
    EXPECT_TRUE(validate(c).empty());
}

TEST(validate, drain_phases_filling_the_timeout_exactly_are_fine) {
    proxy_config c;
    c.drain.pre_delay = 5s;
    c.drain.spread = 15s;
    c.drain.close_timeout = 5s;
    c.drain.timeout = 25s;
    EXPECT_TRUE(validate(c).empty());
}

TEST(validate, keepalive_timeout_may_be_zero_when_pings_are_off) {
    proxy_config c;
    c.keepalive.ping_interval = 0ms;
    c.keepalive.timeout = 0ms;
    EXPECT_TRUE(validate(c).empty());
}

// ---- value parsers -----------------------------------------------------------------------

struct duration_case {
    std::string_view text;
    std::optional<duration> expected;
};

class parse_duration_cases : public testing::TestWithParam<duration_case> {};

TEST_P(parse_duration_cases, gives_milliseconds_or_nothing) {
    EXPECT_EQ(parse_duration(GetParam().text), GetParam().expected) << "'" << GetParam().text << "'";
}

INSTANTIATE_TEST_SUITE_P(
    good, parse_duration_cases,
    testing::Values(duration_case{"0", 0ms}, duration_case{"0s", 0ms}, duration_case{"250ms", 250ms},
                    duration_case{"5s", 5s}, duration_case{"1.5s", 1500ms}, duration_case{"2m", 2min},
                    duration_case{"1h", 1h}, duration_case{"0.1h", 6min}, duration_case{"1.25ms", 1ms},
                    duration_case{"0.0005s", 1ms}, duration_case{"0.00049999999999999999s", 0ms},
                    // Just above and just below half a millisecond (1/7200000 h), which no decimal hits exactly.
                    duration_case{"0.000000138888888888888889h", 1ms},
                    duration_case{"0.000000138888888888888888h", 0ms}, duration_case{"007s", 7s},
                    duration_case{"9223372036854775807ms", duration::max()}));

INSTANTIATE_TEST_SUITE_P(bad, parse_duration_cases,
                         testing::Values(duration_case{"", {}}, duration_case{"5", {}}, duration_case{"1.5", {}},
                                         duration_case{"00", {}}, duration_case{"-1s", {}}, duration_case{"+1s", {}},
                                         duration_case{"5 s", {}}, duration_case{" 5s", {}}, duration_case{"5s ", {}},
                                         duration_case{"s", {}}, duration_case{".5s", {}}, duration_case{"5.s", {}},
                                         duration_case{"1.2.3s", {}}, duration_case{"5d", {}}, duration_case{"5S", {}},
                                         duration_case{"5sec", {}}, duration_case{"1e3s", {}},
                                         duration_case{"1m30s", {}}, duration_case{"abc", {}},
                                         duration_case{"9223372036854775808ms", {}},
                                         duration_case{"99999999999999999999h", {}}));

struct address_case {
    std::string_view text;
    bool allow_scheme;
    std::optional<address> expected;
};

class parse_address_cases : public testing::TestWithParam<address_case> {};

TEST_P(parse_address_cases, gives_host_and_port_or_nothing) {
    const address_case& c = GetParam();
    EXPECT_EQ(parse_address(c.text, c.allow_scheme), c.expected) << "'" << c.text << "'";
}

INSTANTIATE_TEST_SUITE_P(good, parse_address_cases,
                         testing::Values(address_case{"127.0.0.1:9000", false, address{"127.0.0.1", 9000}},
                                         address_case{"0.0.0.0:8080", false, address{"0.0.0.0", 8080}},
                                         address_case{"[::1]:9000", false, address{"::1", 9000}},
                                         address_case{"[2001:db8::1]:65535", false, address{"2001:db8::1", 65535}},
                                         address_case{"localhost:0", false, address{"localhost", 0}},
                                         address_case{"backend-1.internal.example:443", false,
                                                      address{"backend-1.internal.example", 443}},
                                         address_case{"chat_backend:80", false, address{"chat_backend", 80}},
                                         address_case{"http://127.0.0.1:9901/", true, address{"127.0.0.1", 9901}},
                                         address_case{"http://127.0.0.1:9901", true, address{"127.0.0.1", 9901}},
                                         address_case{"http://[::1]:9901/", true, address{"::1", 9901}},
                                         address_case{"127.0.0.1:9901", true, address{"127.0.0.1", 9901}}));

INSTANTIATE_TEST_SUITE_P(bad, parse_address_cases,
                         testing::Values(address_case{"1.2.3.4", false, {}}, address_case{"host:70000", false, {}},
                                         address_case{":80", false, {}}, address_case{"host:", false, {}},
                                         address_case{"", false, {}}, address_case{"::1:9000", false, {}},
                                         address_case{"[::1]", false, {}}, address_case{"[::1]9000", false, {}},
                                         address_case{"[localhost]:80", false, {}}, address_case{"1.2.3:80", false, {}},
                                         address_case{"256.1.1.1:80", false, {}}, address_case{"-host:80", false, {}},
                                         address_case{"a..b:80", false, {}}, address_case{"host name:80", false, {}},
                                         address_case{"host:+80", false, {}}, address_case{"host:-1", false, {}},
                                         address_case{"host:8o", false, {}},
                                         address_case{"http://127.0.0.1:9901", false, {}},
                                         address_case{"https://127.0.0.1:9901", true, {}},
                                         address_case{"http://127.0.0.1:9901/path", true, {}}));

TEST(address, to_string_brackets_i_pv6_hosts) {
    EXPECT_EQ((address{"127.0.0.1", 9000}.to_string()), "127.0.0.1:9000");
    EXPECT_EQ((address{"::1", 9000}.to_string()), "[::1]:9000");
    EXPECT_EQ((address{"localhost", 0}.to_string()), "localhost:0");
}

TEST(close_code, sendable_ones_are_inside_the_three_ranges) {
    for (const unsigned code : {1000u, 1001u, 1003u, 1007u, 1011u, 1012u, 1014u, 3000u, 4000u, 4999u}) {
        EXPECT_TRUE(is_sendable_close_code(code)) << code;
    }
}

TEST(close_code, others_are_not_sendable) {
    // 1004 is reserved, 1005 and 1006 never go on the wire, 1015 is TLS-only, 1016-2999 are
    // unassigned or for extensions, 5000 and up are not close codes.
    for (const unsigned code : {0u, 999u, 1004u, 1005u, 1006u, 1015u, 1016u, 2999u, 5000u, 65535u, 70000u}) {
        EXPECT_FALSE(is_sendable_close_code(code)) << code;
    }
}

TEST(format_problem, is_file_line_column_message) {
    EXPECT_EQ(format_problem("wsdrain.yaml", {3, 12, "drain.spread: expected a duration like 5s, got 'abc'"}),
              "wsdrain.yaml:3:12: drain.spread: expected a duration like 5s, got 'abc'");
}

TEST(format_problem, without_position_is_file_message) {
    EXPECT_EQ(format_problem("/etc/wsdrain.yaml", {0, 0, "cannot read the config file: Permission denied"}),
              "/etc/wsdrain.yaml: cannot read the config file: Permission denied");
}

}  // namespace
