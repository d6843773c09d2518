// A real browser (Debian's headless Chromium) connected through wsdrain sees the drain as a
// clean close: CloseEvent code 1001, wasClean true.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "harness.hpp"

using namespace wsdrain::testing;
using namespace std::chrono_literals;

namespace {
std::string find_report(const backend& b, const std::string& prefix) {
    for (const auto& r : b.requests())
        if (r.starts_with(prefix)) return r;
    return {};
}
}  // namespace

namespace {
// Opens the backend's page in headless Chromium with its WebSocket at `ws_url` (through the
// proxy), drains the proxy once the page reports it is open, and returns the page's report of
// the CloseEvent ("" when none came). The page comes from the backend directly, so that its
// reports still arrive once the drained proxy refuses new requests.
std::string close_seen_by_chromium(backend& app, proxy& px, const std::string& ws_url,
                                   std::vector<std::string> extra_args = {}) {
    const temp_dir profile;
    std::vector<std::string> args = {"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                                      "--disable-background-networking", "--disable-component-update",
                                      "--disable-sync", "--user-data-dir=" + profile.path.string()};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    args.push_back("http://127.0.0.1:" + std::to_string(app.port()) + "/page.html?ws=" + ws_url);
    process browser{"/usr/bin/chromium", args};
    for (int i = 0; i < 3000 && find_report(app, "/report?open=1").empty(); ++i) std::this_thread::sleep_for(10ms);
    std::string closed;
    if (!find_report(app, "/report?open=1").empty()) {
        px.server().signal();
        for (int i = 0; i < 1000 && closed.empty(); ++i) {
            closed = find_report(app, "/report?code=");
            std::this_thread::sleep_for(10ms);
        }
    } else {
        ADD_FAILURE() << "the page never opened its WebSocket " << ws_url;
    }
    browser.kill(SIGTERM);
    browser.wait(10s);
    return closed;
}
}  // namespace

TEST(browser, chromium_sees_close_1001_with_was_clean_true) {
    if (!std::filesystem::exists("/usr/bin/chromium")) GTEST_SKIP() << "Debian's chromium is not installed (scripts/deps.sh --test installs it)";
    backend app{{}};
    proxy px{local_config({app.port()})};
    EXPECT_EQ(close_seen_by_chromium(app, px, "ws://127.0.0.1:" + std::to_string(px.port()) + "/browser"),
              "/report?code=1001&clean=true&reason=server%20draining");
}

TEST(browser, chromium_speaks_wss_through_the_proxy_and_sees_the_drain_as_clean) {
    if (!std::filesystem::exists("/usr/bin/chromium")) GTEST_SKIP() << "Debian's chromium is not installed (scripts/deps.sh --test installs it)";
    const temp_dir dir;
    const certificate c = make_certificate(dir, "wsdrain-test");
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.tls = wsdrain::config::tls_config{c.cert.string(), c.key.string()};
    proxy px{cfg};
    // The certificate is self-signed: Chromium is told to accept it (the Beast and Python tests
    // verify it); what is tested here is Chromium's TLS and WebSocket stacks through the proxy.
    EXPECT_EQ(close_seen_by_chromium(app, px, "wss://127.0.0.1:" + std::to_string(px.port()) + "/browser",
                                     {"--ignore-certificate-errors"}),
              "/report?code=1001&clean=true&reason=server%20draining");
}

namespace {
// The data-value of the element with this id in a dumped DOM ("" when absent).
std::string dom_value(const std::string& dom, const std::string& id) {
    const auto at = dom.find("id=\"" + id + "\"");
    if (at == std::string::npos) return {};
    const auto tag_end = dom.find('>', at);
    const auto v = dom.rfind("data-value=\"", tag_end);
    const auto tag_start = dom.rfind('<', at);
    if (v == std::string::npos || v < tag_start) return {};
    return dom.substr(v + 12, dom.find('"', v + 12) - v - 12);
}


std::vector<std::string> chromium_args(const std::filesystem::path& profile) {
    return {"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--user-data-dir=" + profile.string(), "--virtual-time-budget=3000", "--window-size=900,700"};
}
}  // namespace

TEST(browser, the_status_page_shows_the_drain_as_get_drain_reports_it) {
    const std::string chromium = "/usr/bin/chromium";
    if (!std::filesystem::exists(chromium)) GTEST_SKIP() << "Debian's chromium is not installed (scripts/deps.sh --test installs it)";
    backend app{{}};
    auto cfg = local_config({app.port()});
    // A long spread: Chromium may take seconds to start on a loaded machine, and the page must
    // still find the drain under way.
    cfg.drain.spread = 20s;
    cfg.drain.timeout = 40s;
    proxy px{cfg};
    client_pool clients{px.port(), 20};
    ASSERT_EQ(http_request(px.admin_port(), bhttp::verb::post, "/drain").status, 202u);
    std::this_thread::sleep_for(2s);  // a tenth of the spread: a drain under way, a few sessions closed

    const auto profile = std::filesystem::temp_directory_path() / ("wsdrain-status-" + std::to_string(::getpid()));
    const std::string url = "http://127.0.0.1:" + std::to_string(px.admin_port()) + "/";
    const std::string before = http_request(px.admin_port(), bhttp::verb::get, "/drain").body;
    auto args = chromium_args(profile);
    args.push_back("--dump-dom");
    args.push_back(url);
    process dump{chromium, args};
    const std::string dom = dump.read_all(30s);
    dump.wait(10s);
    const std::string after = http_request(px.admin_port(), bhttp::verb::get, "/drain").body;

    EXPECT_EQ(dom_value(dom, "state"), "draining") << dom.substr(0, 2000);
    EXPECT_EQ(dom_value(dom, "sessions-at-start"), "20");
    const int clean = std::stoi("0" + dom_value(dom, "closed-clean"));
    EXPECT_GE(clean, std::stoi(json_field(before, "closed_clean")));
    EXPECT_LE(clean, std::stoi(json_field(after, "closed_clean")));
    EXPECT_GT(clean, 0);
    const double progress = std::stod("0" + dom_value(dom, "progress"));
    EXPECT_GE(progress, std::stod(json_field(before, "progress")) - 1e-9);
    EXPECT_LE(progress, std::stod(json_field(after, "progress")) + 1e-9);
    EXPECT_EQ(dom_value(dom, "reason-drain_clean"), std::to_string(clean)) << "closes by reason, from /metrics";

    const auto shot = std::filesystem::current_path() / "status_page_during_drain.png";
    std::filesystem::remove(shot);
    args = chromium_args(profile);
    args.push_back("--screenshot=" + shot.string());
    args.push_back(url);
    process screenshot{chromium, args};
    screenshot.read_all(30s);
    screenshot.wait(10s);
    ASSERT_TRUE(std::filesystem::exists(shot));
    EXPECT_GT(std::filesystem::file_size(shot), 5000u) << "a page, not a blank";
    RecordProperty("screenshot", shot.string());
    std::filesystem::remove_all(profile);
}
