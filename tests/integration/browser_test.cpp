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

TEST(browser, chromium_sees_close_1001_with_was_clean_true) {
    const std::string chromium = "/usr/bin/chromium";
    if (!std::filesystem::exists(chromium)) GTEST_SKIP() << "Debian's chromium is not installed (scripts/deps.sh --test installs it)";
    backend app{{}};
    proxy px{local_config({app.port()})};
    const auto profile = std::filesystem::temp_directory_path() / ("wsdrain-chromium-" + std::to_string(::getpid()));
    // The page comes from the backend directly, so that its reports still arrive once the
    // drained proxy refuses new requests; its WebSocket goes through the proxy.
    const std::string page = "http://127.0.0.1:" + std::to_string(app.port()) + "/page.html?ws=ws://127.0.0.1:" +
                             std::to_string(px.port()) + "/browser";
    process browser{chromium, {"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               "--user-data-dir=" + profile.string(), page}};
    for (int i = 0; i < 3000 && find_report(app, "/report?open=1").empty(); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_FALSE(find_report(app, "/report?open=1").empty()) << "the page never opened its WebSocket";

    px.server().signal();
    std::string closed;
    for (int i = 0; i < 1000 && closed.empty(); ++i) {
        closed = find_report(app, "/report?code=");
        std::this_thread::sleep_for(10ms);
    }
    browser.kill(SIGTERM);
    browser.wait(10s);
    std::filesystem::remove_all(profile);
    EXPECT_EQ(closed, "/report?code=1001&clean=true&reason=server%20draining");
}
