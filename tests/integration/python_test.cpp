// Debian's python3-websockets on both sides of the proxy: permessage-deflate and the
// subprotocol are negotiated end to end, and compressed frames pass through untouched.
#include <gtest/gtest.h>

#include <filesystem>

#include "harness.hpp"

using namespace wsdrain::testing;

TEST(python_websockets, negotiates_permessage_deflate_end_to_end_through_the_proxy) {
    if (!std::filesystem::exists("/usr/bin/python3")) GTEST_SKIP() << "no /usr/bin/python3";
    process server{"/usr/bin/python3", {source_path("tests/peers/py_echo_server.py")}};
    const std::string line = server.read_line();
    ASSERT_TRUE(line.starts_with("listening on ")) << "python echo server did not start: " << line;
    proxy px{local_config({static_cast<std::uint16_t>(std::stoi(line.substr(13)))})};

    process client{"/usr/bin/python3",
                   {source_path("tests/peers/py_client.py"), "ws://127.0.0.1:" + std::to_string(px.port()) + "/"}};
    const std::string out = client.read_all(std::chrono::seconds(60));
    EXPECT_EQ(client.wait(), 0) << out;
    EXPECT_NE(out.find("extensions: permessage-deflate"), std::string::npos) << out;
    EXPECT_NE(out.find("subprotocol: py.echo"), std::string::npos) << out;
    EXPECT_NE(out.find("echo: ok"), std::string::npos) << out;
    EXPECT_NE(out.find("close: 1000"), std::string::npos) << out;

    // Compressed frames were relayed as they were: far fewer bytes than the text sent.
    const std::string m = scrape(px.admin_port());
    EXPECT_LT(metric(m, R"(wsdrain_bytes_total{direction="to_backend"})"), 1'000'000);
    EXPECT_GT(metric(m, R"(wsdrain_frames_total{direction="to_backend"})"), 12);
}
