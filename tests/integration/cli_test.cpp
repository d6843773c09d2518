// The wsdrain program as a user runs it: flags, `check`, signals and exit status.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "harness.hpp"

using namespace wsdrain::testing;

namespace {

std::string write_temp(const std::string& name, const std::string& text) {
    const auto path = std::filesystem::temp_directory_path() / ("wsdrain-test-" + std::to_string(::getpid()) + "-" + name);
    std::ofstream(path) << text;
    return path.string();
}

// Waits until the admin listener answers /readyz.
bool wait_ready(std::uint16_t admin_port) {
    for (int i = 0; i < 500; ++i) {
        try {
            if (http_request(admin_port, bhttp::verb::get, "/readyz").status == 200) return true;
        } catch (const std::exception&) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

}  // namespace

TEST(cli, check_accepts_the_shipped_default_config) {
    process p{binary_path("wsdrain"), {"check", "--config", source_path("config/wsdrain.yaml")}};
    EXPECT_EQ(p.read_all(), "config OK\n");
    EXPECT_EQ(p.wait(), 0);
}

TEST(cli, check_reports_every_problem_with_file_line_and_column) {
    const std::string file = write_temp("bad.yaml",
                                        "listen: 0.0.0.0:99999\n"
                                        "drain:\n"
                                        "  spread: soon\n"
                                        "  close_code: 1005\n"
                                        "bogus: 1\n");
    // check prints problems on stderr; capture it through a shell redirect of our own.
    process p{"/bin/sh", {"-c", "\"$0\" check --config \"$1\" 2>&1", binary_path("wsdrain"), file}};
    const std::string out = p.read_all();
    EXPECT_EQ(p.wait(), 1);
    EXPECT_NE(out.find(file + ":1:9: "), std::string::npos) << out;
    EXPECT_NE(out.find(file + ":3:11: "), std::string::npos) << out;
    EXPECT_NE(out.find(file + ":4:15: "), std::string::npos) << out;
    EXPECT_NE(out.find(file + ":5:1: "), std::string::npos) << out;
    EXPECT_EQ(out.find("config OK"), std::string::npos);
    std::filesystem::remove(file);
}

TEST(cli, version_and_help_answer_and_unknown_flags_are_refused) {
    process v{binary_path("wsdrain"), {"--version"}};
    EXPECT_EQ(v.read_all(), std::string("wsdrain ") + wsdrain::app::version + "\n");
    EXPECT_EQ(v.wait(), 0);
    process h{binary_path("wsdrain"), {"--help"}};
    EXPECT_NE(h.read_all().find("wsdrain check --config FILE"), std::string::npos);
    EXPECT_EQ(h.wait(), 0);
    process bad{binary_path("wsdrain"), {"--frobnicate"}};
    EXPECT_EQ(bad.wait(), 2);
}

TEST(cli, upstream_flag_alone_runs_a_proxy_and_sigterm_exits_0) {
    backend app{named("flagged")};
    const auto port = free_port(), admin = free_port();
    process p{binary_path("wsdrain"), {"--upstream", "127.0.0.1:" + std::to_string(app.port()), "--listen",
                                       "127.0.0.1:" + std::to_string(port), "--admin",
                                       "127.0.0.1:" + std::to_string(admin), "--log-format", "json"}};
    ASSERT_TRUE(wait_ready(admin));
    EXPECT_EQ(http_request(port, bhttp::verb::get, "/x").headers["X-Backend"], "flagged");
    ws_client c{port};
    c.send_text("through the binary");
    EXPECT_EQ(c.receive(), "through the binary");
    p.kill(SIGTERM);
    EXPECT_EQ(p.wait(), 0);
}

TEST(cli, a_port_in_use_is_a_start_up_failure_with_a_non_zero_status) {
    asio::io_context ctx;
    tcp::acceptor taken(ctx, {asio::ip::make_address("127.0.0.1"), 0});
    process p{binary_path("wsdrain"), {"--upstream", "127.0.0.1:9", "--listen",
                                       "127.0.0.1:" + std::to_string(taken.local_endpoint().port()), "--admin",
                                       "127.0.0.1:0"}};
    EXPECT_EQ(p.wait(), 1);
}

TEST(cli, json_logs_are_one_valid_object_per_line_with_the_session_summary) {
    backend app{named("json")};
    const auto port = free_port(), admin = free_port();
    // stderr (the log) to stdout, so the test can read it; exec keeps the PID wsdrain's.
    process p{"/bin/sh", {"-c", "exec \"$0\" \"$@\" 2>&1", binary_path("wsdrain"), "--upstream",
                          "127.0.0.1:" + std::to_string(app.port()), "--listen", "127.0.0.1:" + std::to_string(port),
                          "--admin", "127.0.0.1:" + std::to_string(admin), "--log-format", "json"}};
    ASSERT_TRUE(wait_ready(admin));
    {
        ws_client c{port};
        c.send_text("log me \"quoted\"");
        c.receive();
        c.close(1000);
    }
    p.kill(SIGTERM);
    const std::string out = p.read_all(std::chrono::seconds(10));
    EXPECT_EQ(p.wait(), 0);
    // Let Python's json module judge every line.
    const std::string file = write_temp("log.jsonl", out);
    process check{"/usr/bin/python3", {"-c",
                                       "import json,sys\n"
                                       "lines=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]\n"
                                       "s=[l for l in lines if l['msg']=='session closed']\n"
                                       "assert all('time' in l and 'level' in l for l in lines)\n"
                                       "assert len(s)==1 and s[0]['close_code']==1000 and s[0]['closed_by']=='client', s\n"
                                       "assert s[0]['frames_to_backend']>=2 and s[0]['reason']=='client'\n"
                                       "print('ok', len(lines))\n",
                                       file}};
    const std::string verdict = check.read_all();
    EXPECT_EQ(check.wait(), 0) << out;
    EXPECT_TRUE(verdict.starts_with("ok")) << verdict << out;
    std::filesystem::remove(file);
}

TEST(cli, drain_and_undrain_of_an_upstream_say_what_is_wrong) {
    backend app{named("app")};
    const auto port = free_port(), admin = free_port();
    process p{binary_path("wsdrain"), {"--upstream", "127.0.0.1:" + std::to_string(app.port()), "--listen",
                                       "127.0.0.1:" + std::to_string(port), "--admin",
                                       "127.0.0.1:" + std::to_string(admin)}};
    ASSERT_TRUE(wait_ready(admin));
    const std::string at = "127.0.0.1:" + std::to_string(admin);
    {  // an unknown upstream: the admin API's 404, and status 1
        process d{"/bin/sh", {"-c", "exec \"$0\" \"$@\" 2>&1", binary_path("wsdrain"), "drain", "--upstream", "nope",
                              "--admin", at}};
        EXPECT_NE(d.read_all().find("answered 404"), std::string::npos);
        EXPECT_EQ(d.wait(), 1);
    }
    for (const std::vector<std::string>& args : {std::vector<std::string>{"undrain", "--admin", at},
                                                 std::vector<std::string>{"drain", "--endpoint", "127.0.0.1:1"},
                                                 std::vector<std::string>{"drain", "--upstream", "default",
                                                                          "--fraction", "0.5"}}) {
        process bad{binary_path("wsdrain"), args};
        EXPECT_EQ(bad.wait(), 2) << args[0] << " " << args[1];
    }
    {  // the upstream of --upstream is named "default": drained, then undrained with --wait
        process d{binary_path("wsdrain"), {"drain", "--upstream", "default", "--admin", at, "--wait"}};
        const std::string out = d.read_all();
        EXPECT_NE(out.find("drained default:"), std::string::npos) << out;
        EXPECT_NE(out.find("drained, 0 sessions"), std::string::npos) << out;
        EXPECT_EQ(d.wait(), 0);
        process u{binary_path("wsdrain"), {"undrain", "--upstream", "default", "--admin", at, "--wait"}};
        EXPECT_NE(u.read_all().find("up\n"), std::string::npos);
        EXPECT_EQ(u.wait(), 0);
    }
    ws_client c{port};
    EXPECT_EQ(c.header("X-Backend"), "app");
    p.kill(SIGTERM);
    EXPECT_EQ(p.wait(), 0);
}
