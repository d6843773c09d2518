// wsdrain as a process in front of a backend process (SPEC section 8): the backend restarted
// the way deploy/systemd/backend-drain.conf says, while clients stream and newcomers keep
// arriving; and config reloads by SIGHUP and POST /reload.
#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <sstream>
#include <thread>

#include "harness.hpp"

using namespace wsdrain::testing;
using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

// The next line of `p`'s output that holds `text` (looking at most 200 lines, 10 s each).
std::string wait_for_line(process& p, const std::string& text) {
    for (int i = 0; i < 200; ++i) {
        const std::string line = p.read_line();
        if (line.find(text) != std::string::npos) return line;
        if (line.empty()) break;
    }
    return "no line with: " + text;
}

// The commands of a systemd unit file's `key=` lines, as argument lists: the leading '-' (do
// not fail the unit) dropped, ${VAR} expanded from its Environment= lines, and wsdrain's
// installed path replaced by the one built here.
std::vector<std::vector<std::string>> unit_commands(const fs::path& unit, const std::string& key,
                                                    const std::map<std::string, std::string>& overrides) {
    std::map<std::string, std::string> env;
    std::vector<std::string> lines;
    std::ifstream in(unit);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("Environment=", 0) == 0) {
            const std::string kv = line.substr(12);
            env[kv.substr(0, kv.find('='))] = kv.substr(kv.find('=') + 1);
        } else if (line.rfind(key + "=", 0) == 0) {
            lines.push_back(line.substr(key.size() + 1));
        }
    }
    for (const auto& [k, v] : overrides) env[k] = v;
    std::vector<std::vector<std::string>> out;
    for (std::string command : lines) {
        if (command.starts_with('-')) command.erase(0, 1);
        for (const auto& [k, v] : env)
            for (std::size_t at; (at = command.find("${" + k + "}")) != std::string::npos;)
                command.replace(at, k.size() + 3, v);
        std::istringstream words(command);
        std::vector<std::string> args;
        for (std::string w; words >> w;) args.push_back(w == "/usr/local/bin/wsdrain" ? binary_path("wsdrain") : w);
        out.push_back(args);
    }
    return out;
}

// Runs a command to its end; its exit status (-1 on timeout) and output.
std::pair<int, std::string> run(const std::vector<std::string>& args) {
    process p{args.front(), {args.begin() + 1, args.end()}, true};
    std::string output = p.read_all(90s);
    const auto status = p.wait(5s);
    return {status.value_or(-1), output};
}

// A newcomer: one WebSocket client that connects, is echoed once and leaves.
struct arrival {
    std::string served_by, error;
    std::chrono::milliseconds handshake{0};
};

arrival arrive(std::uint16_t port, int n) {
    arrival a;
    const auto start = clk::now();
    try {
        ws_client c{port};
        a.handshake = std::chrono::duration_cast<std::chrono::milliseconds>(clk::now() - start);
        a.served_by = c.header("X-Backend");
        const std::string hello = "newcomer " + std::to_string(n);
        c.send_text(hello);
        if (c.receive() != hello) a.error = "wrong echo";
        c.close();
    } catch (const std::exception& e) {
        a.error = e.what();
    }
    return a;
}

}  // namespace

TEST(restart_scenario, a_backend_restarted_by_its_systemd_recipe_loses_no_client_and_no_message) {
    temp_dir dir;
    const std::uint16_t backend_port = free_port(), port = free_port(), admin = free_port();
    const std::string backend_binary = binary_path("demo_backend");
    auto v1 = std::make_unique<process>(
        backend_binary, std::vector<std::string>{"--port", std::to_string(backend_port), "--name", "v1", "--report"});
    ASSERT_EQ(v1->read_line(), "listening on " + std::to_string(backend_port));

    const fs::path config = dir.path / "wsdrain.yaml";
    write_file(config, "listen: 127.0.0.1:" + std::to_string(port) + "\nadmin: {listen: 127.0.0.1:" +
                           std::to_string(admin) + "}\nthreads: 2\n" +
                           "upstreams:\n"
                           "  - name: app\n"
                           "    endpoints: [127.0.0.1:" + std::to_string(backend_port) + "]\n"
                           "    hold_timeout: 30s\n"
                           "    health_check: {type: tcp, interval: 200ms, timeout: 200ms, unhealthy_threshold: 1}\n"
                           "drain: {spread: 2s, close_timeout: 5s}\n");
    // Its log (a line per session) is not read here: warnings only, to the test's output.
    process px{binary_path("wsdrain"), {"--config", config.string(), "--log-level", "warn"}};
    ASSERT_TRUE(wait_for([&] {
        try {
            return http_request(admin, bhttp::verb::get, "/readyz").status == 200;
        } catch (const std::exception&) {
            return false;
        }
    }));

    // 200 clients, each sending SEQ 1, 2, 3... every 100 ms.
    client_pool clients{port, 200, true, "/", 100ms};
    ASSERT_TRUE(wait_for([&] {
        return http_request(admin, bhttp::verb::get, "/upstreams/app").body.find("\"sessions\":200}") !=
               std::string::npos;
    }));

    // Newcomers at 20 per second from now until after the restart.
    std::atomic<bool> stop{false};
    std::vector<std::future<arrival>> arrivals;
    std::thread arriving([&] {
        for (int n = 0; !stop; ++n) {
            arrivals.push_back(std::async(std::launch::async, arrive, port, n));
            std::this_thread::sleep_for(50ms);
        }
    });
    std::this_thread::sleep_for(500ms);

    // `systemctl restart`: ExecStop, the backend stopped, started again, ExecStartPost.
    const fs::path recipe = source_path("deploy/systemd/backend-drain.conf");
    const std::map<std::string, std::string> env{{"WSDRAIN_ADMIN", "127.0.0.1:" + std::to_string(admin)}};
    const auto stop_commands = unit_commands(recipe, "ExecStop", env);
    const auto start_commands = unit_commands(recipe, "ExecStartPost", env);
    ASSERT_EQ(stop_commands.size(), 1u);
    ASSERT_EQ(start_commands.size(), 1u);
    const auto [stop_status, stop_output] = run(stop_commands[0]);
    EXPECT_EQ(stop_status, 0) << stop_output;
    EXPECT_NE(stop_output.find("no session left"), std::string::npos) << stop_output;

    v1->kill(SIGTERM);
    std::map<std::string, std::string> v1_sessions;  // "ID k" -> its report line
    for (std::string line; (line = v1->read_line()) != "report done" && !line.empty();) {
        const auto first = line.find("first=\"");
        if (first != std::string::npos) v1_sessions[line.substr(first + 7, line.find('"', first + 7) - first - 7)] = line;
    }
    EXPECT_EQ(v1->wait(), 0);
    v1.reset();
    std::this_thread::sleep_for(500ms);  // the backend is away a while
    process v2{backend_binary, {"--port", std::to_string(backend_port), "--name", "v2"}};
    ASSERT_EQ(v2.read_line(), "listening on " + std::to_string(backend_port));
    const auto [start_status, start_output] = run(start_commands[0]);
    EXPECT_EQ(start_status, 0) << start_output;

    std::this_thread::sleep_for(1s);
    stop = true;
    arriving.join();

    // Every existing client got Close 1012 and completed the handshake; the old backend saw
    // every message each client sent before its Close.
    ASSERT_TRUE(clients.wait_closed(10s));
    const auto results = clients.results();
    for (std::size_t k = 0; k < results.size(); ++k) {
        SCOPED_TRACE("client " + std::to_string(k));
        EXPECT_EQ(results[k].code, 1012);
        EXPECT_EQ(results[k].reason, "backend restarting");
        const auto seen = v1_sessions.find("ID " + std::to_string(k));
        ASSERT_NE(seen, v1_sessions.end());
        EXPECT_NE(seen->second.find("close_frame=1 code=1012"), std::string::npos) << seen->second;
        const auto last_seq = std::stoull(seen->second.substr(seen->second.find("last_seq=") + 9));
        EXPECT_GE(last_seq, results[k].last_sequence_sent) << seen->second;
        EXPECT_GT(results[k].last_sequence_sent, 0u);
    }

    // No newcomer's upgrade failed: those that came while the backend was away were held,
    // then served by the new one.
    int by_v2 = 0, held_long = 0;
    for (auto& f : arrivals) {
        ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
        const arrival a = f.get();
        EXPECT_EQ(a.error, "");
        by_v2 += a.served_by == "v2";
        held_long += a.handshake >= 500ms;
    }
    EXPECT_GT(arrivals.size(), 60u);
    EXPECT_GT(by_v2, 0);
    EXPECT_GT(held_long, 0);
    const std::string metrics = scrape(admin);
    EXPECT_EQ(metric(metrics, "wsdrain_upgrades_total{result=\"backend_error\",upstream=\"app\"}"), 0);
    EXPECT_EQ(metric(metrics, "wsdrain_upgrades_total{result=\"ok\",upstream=\"app\"}"),
              static_cast<double>(200 + arrivals.size()));
    EXPECT_EQ(metric(metrics, "wsdrain_sessions_closed_total{reason=\"drain_clean\",upstream=\"app\"}"), 200);

    px.kill(SIGTERM);
    EXPECT_EQ(px.wait(), 0);
    v2.kill(SIGTERM);
}

TEST(reload, a_reload_moves_new_sessions_and_a_broken_file_keeps_the_old_config_and_says_why) {
    temp_dir dir;
    backend one{named("one")}, two{named("two")};
    const std::uint16_t port = free_port(), admin = free_port();
    const fs::path config = dir.path / "wsdrain.yaml";
    const auto write_config = [&](const std::string& listen, const std::string& route_to,
                                  const std::string& more = "") {
        write_file(config, "listen: " + listen + "\nadmin: {listen: 127.0.0.1:" + std::to_string(admin) + "}\n" + more +
                               "upstreams:\n"
                               "  - {name: one, endpoints: [127.0.0.1:" + std::to_string(one.port()) + "]}\n" +
                               "  - {name: two, endpoints: [127.0.0.1:" + std::to_string(two.port()) + "]}\n" +
                               "routes:\n  - {path_prefix: /, upstream: " + route_to + "}\n");
    };
    const std::string listen = "127.0.0.1:" + std::to_string(port);
    write_config(listen, "one");
    process px{binary_path("wsdrain"), {"--config", config.string()}, true};
    ASSERT_NE(wait_for_line(px, "wsdrain started").find("wsdrain started"), std::string::npos);
    ws_client before{port};
    EXPECT_EQ(before.header("X-Backend"), "one");

    // SIGHUP with a changed route: new sessions go to two; the open one stays on one.
    write_config(listen, "two");
    px.kill(SIGHUP);
    EXPECT_NE(wait_for_line(px, "config reloaded").find("upstreams=one,two"), std::string::npos);
    ws_client after{port};
    EXPECT_EQ(after.header("X-Backend"), "two");
    before.send_text("still on one");
    EXPECT_EQ(before.receive(), "still on one");

    // POST /reload does the same and answers.
    const auto again = http_request(admin, bhttp::verb::post, "/reload");
    EXPECT_EQ(again.status, 200u);
    EXPECT_NE(again.body.find("\"result\":\"ok\""), std::string::npos) << again.body;

    // A broken file: refused with its errors, file, line and column; the old config stays.
    write_file(config, "upstreams: [{name: one, endpoints: [127.0.0.1:" + std::to_string(one.port()) +
                           "]}]\nroutes: [{upstream: nowhere}]\nlimits: {max_sessions: lots}\n");
    const auto broken = http_request(admin, bhttp::verb::post, "/reload");
    EXPECT_EQ(broken.status, 400u);
    for (const std::string error : {":2:21: routes[0].upstream: no upstream named 'nowhere'",
                                    ":3:24: limits.max_sessions: expected a whole number, got 'lots'"})
        EXPECT_NE(broken.body.find(config.string() + error), std::string::npos) << broken.body;
    EXPECT_NE(wait_for_line(px, "config reload failed").find("max_sessions"), std::string::npos);
    ws_client still{port};
    EXPECT_EQ(still.header("X-Backend"), "two");

    // A change only a restart applies is named, and the rest applies.
    write_config("127.0.0.1:" + std::to_string(free_port()), "one");
    const auto moved = http_request(admin, bhttp::verb::post, "/reload");
    EXPECT_EQ(moved.status, 200u);
    EXPECT_NE(moved.body.find("\"needs_restart\":[\"listen\"]"), std::string::npos) << moved.body;
    ws_client on_one{port};  // still listening where it was, routing the new way
    EXPECT_EQ(on_one.header("X-Backend"), "one");

    // Limits apply to new sessions only: with four open, a cap of four refuses the fifth.
    write_config(listen, "one", "limits: {max_sessions: 4}\n");
    EXPECT_EQ(http_request(admin, bhttp::verb::post, "/reload").status, 200u);
    const auto capped = refused_upgrade(port, "/");
    EXPECT_EQ(capped.status, 503u);
    EXPECT_NE(capped.body.find("session limit"), std::string::npos) << capped.body;
    before.send_text("open before the cap");
    EXPECT_EQ(before.receive(), "open before the cap");

    const std::string metrics = scrape(admin);
    EXPECT_EQ(metric(metrics, "wsdrain_config_reloads_total{result=\"ok\"}"), 4);
    EXPECT_EQ(metric(metrics, "wsdrain_config_reloads_total{result=\"error\"}"), 1);
    for (ws_client* c : {&before, &after, &still, &on_one}) c->close();
    px.kill(SIGTERM);
    EXPECT_EQ(px.wait(), 0);
}
