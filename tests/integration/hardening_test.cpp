// Hostile input and failing backends against wsdrain run as a process: each limit and each
// failure gets the exact status or close code the peer receives; then the whole barrage again
// and again, after which a normal session still works and the proxy's memory is where it was.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <sstream>

#include <boost/asio/write.hpp>

#include "harness.hpp"

using namespace wsdrain::testing;
using namespace std::chrono_literals;

namespace {

const std::map<std::string, std::string> upgrade_headers = {{"Upgrade", "websocket"},
                                                            {"Connection", "Upgrade"},
                                                            {"Sec-WebSocket-Version", "13"},
                                                            {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}};

// The 101 for raw_client's fixed key (RFC 6455 section 1.3).
const std::string switching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

int listen_socket(int backlog, std::uint16_t& port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd, backlog) != 0)
        throw std::runtime_error("listen failed");
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    return fd;
}

// Waits up to `ms` for `fd` to become readable.
bool readable(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, ms) == 1;
}

// A backend that misbehaves on purpose, each connection on a thread of its own.
class bad_backend {
public:
    enum class behaviour {
        silent,                // reads the upgrade request and never answers
        stops_reading,         // answers 101, then reads nothing more
        sends_masked_frame,    // answers 101, sends a masked frame (servers must not), records the reply
    };

    explicit bad_backend(behaviour b) : behaviour_(b), listener_(listen_socket(64, port_)) {
        acceptor_ = std::thread([this] {
            for (;;) {
                const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
                if (fd < 0) return;  // shut down
                std::lock_guard lock(mutex_);
                connections_.emplace_back([this, fd] { serve(fd); });
            }
        });
    }

    ~bad_backend() {
        stop_ = true;
        ::shutdown(listener_, SHUT_RDWR);  // wakes accept()
        acceptor_.join();
        ::close(listener_);
        std::lock_guard lock(mutex_);
        for (auto& t : connections_) t.join();
    }

    std::uint16_t port() const { return port_; }
    // What the proxy sent after the 101, on every connection.
    std::string received() const {
        std::lock_guard lock(mutex_);
        return received_;
    }

private:
    void serve(int fd) {
        std::string request;
        char buf[4096];
        while (request.find("\r\n\r\n") == std::string::npos && !stop_) {
            if (!readable(fd, 50)) continue;
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) break;
            request.append(buf, static_cast<std::size_t>(n));
        }
        if (behaviour_ != behaviour::silent) ::send(fd, switching.data(), switching.size(), MSG_NOSIGNAL);
        if (behaviour_ == behaviour::sends_masked_frame) {
            const std::string frame = encode_frame(0x1, "masked by a server", true);
            ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
        }
        while (!stop_) {
            if (behaviour_ != behaviour::sends_masked_frame) {  // holds the connection, reading nothing
                std::this_thread::sleep_for(20ms);
                continue;
            }
            if (!readable(fd, 50)) continue;
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) break;
            std::lock_guard lock(mutex_);
            received_.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fd);
    }

    behaviour behaviour_;
    std::uint16_t port_ = 0;
    int listener_;
    std::atomic<bool> stop_{false};
    std::thread acceptor_;
    mutable std::mutex mutex_;
    std::vector<std::thread> connections_;
    std::string received_;
};

// A listener whose accept queue is full: a connection to it never completes (the kernel drops
// the SYN), as with a host that does not answer.
class black_hole {
public:
    black_hole() : listener_(listen_socket(0, port_)) {
        // Fill the queue: connect until a connection no longer completes.
        for (int i = 0; i < 16; ++i) {
            const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            a.sin_port = htons(port_);
            ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
            fillers_.push_back(fd);
            pollfd p{fd, POLLOUT, 0};
            if (::poll(&p, 1, 200) == 0) return;  // this one hangs: the queue is full
        }
        throw std::runtime_error("could not fill the accept queue");
    }
    ~black_hole() {
        for (int fd : fillers_) ::close(fd);
        ::close(listener_);
    }
    std::uint16_t port() const { return port_; }

private:
    std::uint16_t port_ = 0;
    int listener_;
    std::vector<int> fillers_;
};

std::uint16_t closed_port() {
    std::uint16_t port = 0;
    ::close(listen_socket(1, port));
    return port;
}

// Sanitizers keep freed memory in quarantine, so RSS says nothing about leaks there (ASan and
// LeakSanitizer check those instead): memory is compared in the plain build only.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool rss_is_meaningful = false;
#else
constexpr bool rss_is_meaningful = true;
#endif

constexpr std::size_t max_frame = 65536;
constexpr std::size_t max_body = 1000;
constexpr int per_client = 3;

// wsdrain as a process, with every limit set low and one route per kind of failing backend.
class hostile : public ::testing::Test {
protected:
    void SetUp() override {
        port_ = free_port();
        admin_ = free_port();
        const auto up = [](const char* name, std::uint16_t port, const char* extra = "") {
            return std::string("  - {name: ") + name + ", endpoints: [127.0.0.1:" + std::to_string(port) + "]" + extra +
                   "}\n";
        };
        const auto route = [](const char* prefix, const char* upstream) {
            return std::string("  - {path_prefix: ") + prefix + ", upstream: " + upstream + "}\n";
        };
        std::ofstream(dir_.path / "wsdrain.yaml")
            << "listen: 127.0.0.1:" << port_ << "\nadmin: {listen: 127.0.0.1:" << admin_ << "}\nthreads: 2\n"
            << "upstreams:\n"
            << up("app", app_.port()) << up("silent", silent_.port(), ", connect_timeout: 500ms")
            << up("stalled", stalled_.port()) << up("masked", masked_.port())
            // Not held while down: these answer at once (holding is tested in backend_restart_test).
            << up("refused", closed_port(), ", hold_timeout: 0")
            << up("unreachable", hole_.port(), ", connect_timeout: 500ms, hold_timeout: 0")
            << "routes:\n"
            << route("/", "app") << route("/silent", "silent") << route("/stalled", "stalled")
            << route("/masked", "masked") << route("/refused", "refused") << route("/unreachable", "unreachable")
            << "limits:\n  max_header_bytes: 4096\n  header_timeout: 500ms\n  max_frame_bytes: " << max_frame
            << "\n  max_body_bytes: " << max_body << "\n  max_sessions_per_client: " << per_client
            << "\n  session_buffer_bytes: 16384\n"
            // A paused leg is not read, so a client that leaves a session whose backend stopped
            // reading is found out by the keepalive Ping: short here, to end such sessions soon.
            << "keepalive: {ping_interval: 1s, timeout: 1s}\n"
            << "drain: {close_timeout: 1s}\nlog: {level: warn}\n";
        px_ = std::make_unique<process>(binary_path("wsdrain"),
                                        std::vector<std::string>{"--config", (dir_.path / "wsdrain.yaml").string()});
        for (int i = 0; i < 500; ++i) {
            try {
                if (http_request(admin_, bhttp::verb::get, "/readyz").status == 200) return;
            } catch (const std::exception&) {
            }
            std::this_thread::sleep_for(10ms);
        }
        FAIL() << "wsdrain did not start";
    }

    void TearDown() override {
        px_->kill(SIGKILL);
        px_->wait();
    }

    // The status of an upgrade request for `target`.
    unsigned upgrade_status(const std::string& target) {
        return http_request(port_, bhttp::verb::get, target, {}, upgrade_headers).status;
    }

    // The Close code the client gets after sending `bytes` on an open session, and whether the
    // proxy then ends the connection.
    std::uint16_t close_after(const std::string& bytes) {
        raw_client c{port_};
        c.send_bytes(bytes);
        for (;;) {
            auto f = c.read_frame();
            if (!f) return 1006;
            if (f->opcode == 0x8) return c.at_eof() ? f->close_code() : 0;
        }
    }

    void normal_session_works() {
        ws_client c{port_};
        c.send_text("still serving");
        EXPECT_EQ(c.receive(), "still serving");
        c.close();
    }

    // --- one check per limit and failure; each returns what the peer saw -------------------

    unsigned oversized_header() {
        return http_request(port_, bhttp::verb::get, "/", {}, {{"X-Big", std::string(8192, 'h')}}).status;
    }

    unsigned slow_header() {  // slowloris: a header that never ends
        asio::io_context ctx;
        tcp::socket s(ctx);
        s.connect({asio::ip::make_address("127.0.0.1"), port_});
        asio::write(s, asio::buffer(std::string("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")));
        beast::flat_buffer buf;
        bhttp::response<bhttp::string_body> res;
        bhttp::read(s, buf, res);
        return res.result_int();
    }

    unsigned oversized_body() {
        return http_request(port_, bhttp::verb::post, "/upload", std::string(max_body + 1, 'b')).status;
    }

    unsigned oversized_chunked_body() {  // no length up front: the limit is met while streaming
        asio::io_context ctx;
        tcp::socket s(ctx);
        s.connect({asio::ip::make_address("127.0.0.1"), port_});
        std::string req = "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (int i = 0; i < 3; ++i) req += "190\r\n" + std::string(400, 'c') + "\r\n";
        req += "0\r\n\r\n";
        asio::write(s, asio::buffer(req));
        beast::flat_buffer buf;
        bhttp::response<bhttp::string_body> res;
        bhttp::read(s, buf, res);
        return res.result_int();
    }

    std::uint16_t oversized_frame() { return close_after(encode_frame(0x2, std::string(max_frame + 1, 'f'), true)); }
    std::uint16_t long_control_frame() { return close_after(encode_frame(0x9, std::string(126, 'p'), true)); }
    std::uint16_t fragmented_control_frame() { return close_after(encode_frame(0x9, "ping", true, false)); }
    std::uint16_t reserved_bits() { return close_after(encode_frame(0x1, "rsv1", true, true, 0x40)); }
    std::uint16_t unknown_opcode() { return close_after(encode_frame(0x3, "three", true)); }
    std::uint16_t unmasked_frame() { return close_after(encode_frame(0x1, "bare", false)); }

    // The client's status for the upgrade past the per-client cap, from a full source address.
    // Waits (bounded) until no session is open any more, on any upstream.
    void wait_no_sessions() {
        for (int i = 0; i < 500; ++i) {
            const std::string m = scrape(admin_);
            double open = 0;
            for (const char* u : {"app", "silent", "stalled", "masked", "refused", "unreachable"})
                open += metric(m, std::string(R"(wsdrain_sessions_active{upstream=")") + u + "\"}");
            if (open == 0) return;
            std::this_thread::sleep_for(10ms);
        }
        ADD_FAILURE() << "sessions still open";
    }

    unsigned per_client_cap() {
        wait_no_sessions();  // the cap counts every session of the address
        std::vector<std::unique_ptr<ws_client>> held;
        for (int i = 0; i < per_client; ++i) held.push_back(std::make_unique<ws_client>(port_));
        const unsigned past_cap = upgrade_status("/");
        ws_client other_address{port_, "/", {}, "127.0.0.2"};  // another client is not held back
        other_address.close();
        for (auto& c : held) c->close();
        return past_cap;
    }

    // The Close code the client gets, and the one the backend gets, for a masked backend frame.
    std::pair<std::uint16_t, std::uint16_t> masked_backend_frame() {
        raw_client c{port_, "/masked"};
        auto f = c.read_frame();
        const std::uint16_t client_code = f && f->opcode == 0x8 ? f->close_code() : 1006;
        std::string seen;
        for (int i = 0; i < 100 && (seen = masked_.received()).size() < 4; ++i) std::this_thread::sleep_for(10ms);
        // The proxy's Close to the backend is masked (it is the client there): unmask its code.
        std::uint16_t backend_code = 0;
        if (seen.size() >= 8 && (static_cast<unsigned char>(seen[0]) & 0x0f) == 0x8) {
            const auto* key = reinterpret_cast<const unsigned char*>(seen.data() + 2);
            backend_code = static_cast<std::uint16_t>((static_cast<unsigned char>(seen[6]) ^ key[0]) << 8 |
                                                      (static_cast<unsigned char>(seen[7]) ^ key[1]));
        }
        return {client_code, backend_code};
    }

    // How many bytes a client could push into a session whose backend stopped reading, and how
    // much the proxy's memory grew meanwhile (KiB).
    std::pair<std::size_t, long> stalled_backend() {
        const long before = rss_kib(px_->pid());
        raw_client c{port_, "/stalled"};
        c.socket().non_blocking(true);
        const std::string frame = encode_frame(0x2, std::string(60000, 's'), true);
        std::size_t sent = 0, offset = 0;
        for (auto idle_since = std::chrono::steady_clock::now();
             std::chrono::steady_clock::now() - idle_since < 500ms && sent < (256u << 20);) {
            beast::error_code ec;
            const std::size_t n = c.socket().write_some(asio::buffer(frame.data() + offset, frame.size() - offset), ec);
            if (ec == asio::error::would_block) {
                std::this_thread::sleep_for(5ms);
                continue;
            }
            if (ec) break;
            sent += n;
            offset = (offset + n) % frame.size();
            idle_since = std::chrono::steady_clock::now();
        }
        return {sent, rss_kib(px_->pid()) - before};
    }

    temp_dir dir_;
    backend app_{named("app")};
    bad_backend silent_{bad_backend::behaviour::silent};
    bad_backend stalled_{bad_backend::behaviour::stops_reading};
    bad_backend masked_{bad_backend::behaviour::sends_masked_frame};
    black_hole hole_;
    std::uint16_t port_ = 0, admin_ = 0;
    std::unique_ptr<process> px_;
};

}  // namespace

TEST_F(hostile, headers_over_the_limit_get_431) { EXPECT_EQ(oversized_header(), 431u); }
TEST_F(hostile, a_header_never_finished_gets_408) { EXPECT_EQ(slow_header(), 408u); }
TEST_F(hostile, a_body_over_the_limit_gets_413) { EXPECT_EQ(oversized_body(), 413u); }
TEST_F(hostile, a_chunked_body_running_over_the_limit_gets_413) { EXPECT_EQ(oversized_chunked_body(), 413u); }
TEST_F(hostile, a_frame_over_the_limit_gets_1009) { EXPECT_EQ(oversized_frame(), 1009); }
TEST_F(hostile, a_control_frame_over_125_bytes_gets_1002) { EXPECT_EQ(long_control_frame(), 1002); }
TEST_F(hostile, a_fragmented_control_frame_gets_1002) { EXPECT_EQ(fragmented_control_frame(), 1002); }
TEST_F(hostile, reserved_bits_not_negotiated_get_1002) { EXPECT_EQ(reserved_bits(), 1002); }
TEST_F(hostile, an_unknown_opcode_gets_1002) { EXPECT_EQ(unknown_opcode(), 1002); }
TEST_F(hostile, an_unmasked_client_frame_gets_1002) { EXPECT_EQ(unmasked_frame(), 1002); }

TEST_F(hostile, sessions_past_the_per_client_cap_get_503_and_other_clients_go_on) {
    EXPECT_EQ(per_client_cap(), 503u);
    EXPECT_EQ(metric(scrape(admin_), R"(wsdrain_upgrades_total{result="rejected_limit",upstream="app"})"), 1);
}

TEST_F(hostile, a_masked_backend_frame_gets_the_backend_1002_and_the_client_1014) {
    EXPECT_EQ(masked_backend_frame(), (std::pair<std::uint16_t, std::uint16_t>{1014, 1002}));
}

TEST_F(hostile, a_refused_backend_connection_gets_502) { EXPECT_EQ(upgrade_status("/refused"), 502u); }

TEST_F(hostile, a_backend_connection_that_never_completes_gets_502_after_connect_timeout) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(upgrade_status("/unreachable"), 502u);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 450ms) << "answered before upstreams[].connect_timeout";
}

TEST_F(hostile, a_backend_that_never_answers_the_handshake_gets_504_after_connect_timeout) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(upgrade_status("/silent"), 504u);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 450ms) << "answered before upstreams[].connect_timeout";
}

TEST_F(hostile, a_backend_that_stops_reading_stops_the_client_and_memory_stays_bounded) {
    const auto [sent, growth] = stalled_backend();
    // The socket buffers on the way hold a few MiB; the proxy holds at most one read of 16 KiB.
    EXPECT_LT(sent, 48u << 20) << "the client was not held back: it sent " << (sent >> 20) << " MiB";
    if (rss_is_meaningful) {
        EXPECT_LT(growth, 4 * 1024) << "proxy RSS grew " << growth << " KiB";
    }
}

TEST_F(hostile, after_the_whole_barrage_many_times_a_session_works_and_memory_is_where_it_was) {
    normal_session_works();
    for (int i = 0; i < 3; ++i) oversized_header();  // warm up the allocator's pools
    const long rss_start = rss_kib(px_->pid());
    for (int round = 0; round < 10; ++round) {
        SCOPED_TRACE("round " + std::to_string(round));
        EXPECT_EQ(oversized_header(), 431u);
        EXPECT_EQ(slow_header(), 408u);
        EXPECT_EQ(oversized_body(), 413u);
        EXPECT_EQ(oversized_chunked_body(), 413u);
        EXPECT_EQ(oversized_frame(), 1009);
        EXPECT_EQ(long_control_frame(), 1002);
        EXPECT_EQ(fragmented_control_frame(), 1002);
        EXPECT_EQ(reserved_bits(), 1002);
        EXPECT_EQ(unknown_opcode(), 1002);
        EXPECT_EQ(unmasked_frame(), 1002);
        EXPECT_EQ(per_client_cap(), 503u);
        EXPECT_EQ(masked_backend_frame().first, 1014);
        const unsigned refused = upgrade_status("/refused");  // 503 once the endpoint is marked down
        EXPECT_TRUE(refused == 502u || (round >= 3 && refused == 503u)) << refused;
        EXPECT_EQ(upgrade_status("/silent"), 504u);
        if (round % 5 == 0) {  // the slow ones, less often
            EXPECT_EQ(upgrade_status("/unreachable"), 502u);
            stalled_backend();
        }
    }
    normal_session_works();
    wait_no_sessions();  // every session of the barrage ended
    const long rss_end = rss_kib(px_->pid());
    std::printf("proxy RSS before the barrage %ld KiB, after %ld KiB\n", rss_start, rss_end);
    if (rss_is_meaningful) {
        EXPECT_LT(rss_end - rss_start, 4 * 1024) << "RSS from " << rss_start << " to " << rss_end << " KiB";
    }
}

namespace {
// CPU seconds a process has used (user + system), from /proc.
double cpu_seconds(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), {});
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string f;
    double ticks = 0;
    for (int i = 3; i <= 15 && fields >> f; ++i)
        if (i == 14 || i == 15) ticks += std::stod(f);  // utime, stime
    return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}
}  // namespace

TEST(resources, out_of_descriptors_accept_pauses_without_spinning_and_resumes) {
    if (::access("/usr/bin/prlimit", X_OK) != 0) GTEST_SKIP() << "no prlimit (util-linux)";
#if defined(__SANITIZE_ADDRESS__)
    // UBSan's vptr check opens a pipe to probe memory; out of descriptors it fails and reports
    // valid objects (boost::system's static error categories among them) as invalid.
    GTEST_SKIP() << "UBSan's vptr check needs spare descriptors; this test runs in the plain and TSan builds";
#endif
    backend app{{}};
    const auto port = free_port(), admin = free_port();
    // 64 descriptors in all: what the process needs for itself, and room for a few dozen clients.
    process px{"/usr/bin/prlimit",
               {"--nofile=64:64", binary_path("wsdrain"), "--upstream", "127.0.0.1:" + std::to_string(app.port()),
                "--listen", "127.0.0.1:" + std::to_string(port), "--admin", "127.0.0.1:" + std::to_string(admin)},
               true};
    for (int i = 0; i < 100 && px.read_line().find("wsdrain started") == std::string::npos; ++i) {
    }
    // Idle connections (a descriptor each in the proxy) until accepting fails.
    asio::io_context ctx;
    std::vector<std::unique_ptr<tcp::socket>> idle;
    for (int i = 0; i < 80; ++i) {
        idle.push_back(std::make_unique<tcp::socket>(ctx));
        idle.back()->connect({asio::ip::make_address("127.0.0.1"), port});  // completes in the kernel's backlog
    }
    std::string line;
    for (int i = 0; i < 20 && line.find("accept paused") == std::string::npos; ++i) line = px.read_line(1s);
    ASSERT_NE(line.find("accept paused"), std::string::npos) << line;
    EXPECT_NE(line.find("Too many open files"), std::string::npos) << line;

    // Paused, not spinning: a loop retrying accept would burn a core.
    const double cpu_before = cpu_seconds(px.pid());
    std::this_thread::sleep_for(1s);
    EXPECT_LT(cpu_seconds(px.pid()) - cpu_before, 0.3) << "the proxy spins while out of descriptors";

    // Descriptors come back: accepting resumes, the waiting connections and new ones are served.
    idle.erase(idle.begin(), idle.begin() + 60);
    for (int i = 0; i < 20 && line.find("accept resumed") == std::string::npos; ++i) line = px.read_line(1s);
    EXPECT_NE(line.find("accept resumed"), std::string::npos) << line;
    idle.clear();
    for (int i = 0; i < 200; ++i) {
        try {
            ws_client c{port};
            c.send_text("served again");
            EXPECT_EQ(c.receive(), "served again");
            c.close();
            break;
        } catch (const std::exception&) {
            std::this_thread::sleep_for(20ms);
        }
    }
    EXPECT_GE(metric(scrape(admin), "wsdrain_accept_paused_total"), 1);
    px.kill(SIGTERM);
    EXPECT_EQ(px.wait(), 0);
}

TEST(resources, an_endpoint_marked_down_is_tried_again_later_and_comes_back_up) {
    const std::uint16_t port = closed_port();
    proxy px{local_config({port})};
    const std::string up_series = R"(wsdrain_upstream_endpoint_up{endpoint="127.0.0.1:)" + std::to_string(port) +
                                  R"(",upstream="app"})";
    const auto status = [&] { return http_request(px.port(), bhttp::verb::get, "/", {}, upgrade_headers).status; };
    for (int i = 0; i < 3; ++i) EXPECT_EQ(status(), 502u);
    EXPECT_EQ(metric(scrape(px.admin_port()), up_series), 0);
    EXPECT_EQ(status(), 503u) << "a down endpoint is not tried at once";

    backend_options o;
    o.port = port;  // the backend comes up where the endpoint was
    backend b{o};
    // After the retry interval (5 s) the endpoint is offered again, and a success brings it up.
    bool served = false;
    for (int i = 0; i < 80 && !served; ++i) {
        std::this_thread::sleep_for(100ms);
        served = status() == 101u;
    }
    EXPECT_TRUE(served);
    EXPECT_EQ(metric(scrape(px.admin_port()), up_series), 1);
}
