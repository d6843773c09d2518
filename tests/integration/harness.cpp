#include "harness.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "log/log.hpp"

extern char** environ;

namespace wsdrain::testing {

namespace {

void set_receive_timeout(tcp::socket& s, int seconds) {
    timeval tv{seconds, 0};
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void init_logging_once() {
    static const bool done = [] {
        config::log_config c;
        const char* level = std::getenv("WSDRAIN_TEST_LOG");  // e.g. debug, when a test needs it
        c.level = level ? level : "warn";
        log::setup(c);
        return true;
    }();
    (void)done;
}

}  // namespace

config::proxy_config local_config(std::vector<std::uint16_t> app_ports) {
    config::proxy_config cfg;
    cfg.listen = {"127.0.0.1", 0};
    cfg.admin.listen = {"127.0.0.1", 0};
    cfg.threads = 2;
    cfg.upstreams = {{"app", {}}};
    for (auto p : app_ports) cfg.upstreams[0].endpoints.push_back({"127.0.0.1", p});
    cfg.routes = {{"", "/", "app"}};
    return cfg;
}

proxy::proxy(config::proxy_config cfg) {
    init_logging_once();
    server_ = std::make_unique<app::server>(std::move(cfg));
    server_->start();
}

proxy::~proxy() { server_->stop(); }

void run_bounded(asio::io_context& ctx, tcp::socket& socket, std::chrono::milliseconds timeout) {
    ctx.restart();
    ctx.run_for(timeout);
    if (!ctx.stopped()) {
        beast::error_code ec;
        socket.close(ec);
        ctx.restart();
        ctx.run_for(std::chrono::seconds(1));
        throw std::runtime_error("test client: no answer within the time limit");
    }
}

// --- ws_client -------------------------------------------------------------------------

ws_client::ws_client(std::uint16_t port, const std::string& target, std::vector<std::string> subprotocols,
                     const std::string& source_address)
    : ws_(context_) {
    auto& s = ws_.next_layer();
    s.open(tcp::v4());
    s.bind({asio::ip::make_address(source_address), 0});
    s.connect({asio::ip::make_address("127.0.0.1"), port});
    set_receive_timeout(s, 10);
    ws_.set_option(websocket::stream_base::decorator([subprotocols](websocket::request_type& req) {
        std::string list;
        for (const auto& p : subprotocols) list += (list.empty() ? "" : ", ") + p;
        if (!list.empty()) req.set(bhttp::field::sec_websocket_protocol, list);
    }));
    ws_.handshake(response_, "127.0.0.1:" + std::to_string(port), target);
}

namespace {
void throw_if(const beast::error_code& ec) {
    if (ec) throw boost::system::system_error(ec);
}
}  // namespace

void ws_client::send(const std::string& s, bool text) {
    ws_.text(text);
    beast::error_code result;
    ws_.async_write(asio::buffer(s), [&](beast::error_code ec, std::size_t) { result = ec; });
    run_bounded(context_, ws_.next_layer());
    throw_if(result);
}

std::string ws_client::receive() {
    beast::flat_buffer b;
    beast::error_code result;
    ws_.async_read(b, [&](beast::error_code ec, std::size_t) { result = ec; });
    run_bounded(context_, ws_.next_layer());
    throw_if(result);
    return beast::buffers_to_string(b.data());
}

std::uint16_t ws_client::wait_close(std::string* reason) {
    for (;;) {
        beast::flat_buffer b;
        beast::error_code result;
        ws_.async_read(b, [&](beast::error_code ec, std::size_t) { result = ec; });
        run_bounded(context_, ws_.next_layer());
        if (result == websocket::error::closed) {
            if (reason) *reason = ws_.reason().reason.c_str();
            return static_cast<std::uint16_t>(ws_.reason().code);
        }
        if (result) {
            if (std::getenv("WSDRAIN_TEST_LOG")) std::fprintf(stderr, "wait_close: %s\n", result.message().c_str());
            return 1006;
        }
    }
}

void ws_client::close(std::uint16_t code) {
    beast::error_code result;
    ws_.async_close(websocket::close_reason(static_cast<websocket::close_code>(code)),
                    [&](beast::error_code ec) { result = ec; });
    run_bounded(context_, ws_.next_layer());
    throw_if(result);
}

// --- client_pool -----------------------------------------------------------------------

struct client_pool::client : std::enable_shared_from_this<client_pool::client> {
    client_pool& pool;
    websocket::stream<tcp::socket> ws;
    beast::flat_buffer buffer;
    result r;
    std::uint64_t next_seq = 1;
    std::string out;
    bool stream = false;
    std::chrono::milliseconds every{0};
    asio::steady_timer pace;
    bool done = false;

    client(client_pool& p, asio::io_context& ctx) : pool(p), ws(ctx), pace(ctx) {}

    void read() {
        buffer.clear();
        ws.async_read(buffer, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (!ec) {
                std::lock_guard lock(self->pool.mutex_);
                ++self->r.messages;
            }
            if (!ec) return self->read();
            self->finish(ec);
        });
    }
    void write() {
        out = "SEQ " + std::to_string(next_seq);
        ws.async_write(asio::buffer(out), [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return;
            {
                std::lock_guard lock(self->pool.mutex_);
                self->r.last_sequence_sent = self->next_seq++;
            }
            if (self->every.count() == 0) return self->write();
            self->pace.expires_after(self->every);
            self->pace.async_wait([self](beast::error_code tec) {
                if (!tec && !self->done) self->write();
            });
        });
    }
    void finish(beast::error_code ec) {
        if (done) return;
        done = true;
        std::lock_guard lock(pool.mutex_);
        r.closed_at = std::chrono::steady_clock::now();
        if (ec == websocket::error::closed) {
            r.code = static_cast<std::uint16_t>(ws.reason().code);
            r.reason = ws.reason().reason.c_str();
        } else {
            r.code = 1006;
        }
        ++pool.closed_;
    }
};

client_pool::client_pool(std::uint16_t port, int count, bool stream_sequence, const std::string& target,
                         std::chrono::milliseconds stream_every) {
    for (int i = 0; i < count; ++i) {
        auto c = std::make_shared<client>(*this, context_);
        c->stream = stream_sequence;
        c->every = stream_every;
        c->ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
        c->ws.handshake("127.0.0.1:" + std::to_string(port), target);
        c->ws.write(asio::buffer("ID " + std::to_string(i)));
        clients_.push_back(c);
    }
    for (auto& c : clients_) {
        c->read();
        if (c->stream) c->write();
    }
    thread_ = std::thread([this] { context_.run(); });
}

client_pool::~client_pool() {
    context_.stop();
    if (thread_.joinable()) thread_.join();
}

void client_pool::send_to_open(const std::string& text) {
    asio::post(context_, [this, text] {
        for (auto& c : clients_) {
            if (c->done || c->stream) continue;
            auto message = std::make_shared<std::string>(text);
            c->ws.async_write(asio::buffer(*message), [c, message](beast::error_code, std::size_t) {});
        }
    });
}

bool client_pool::wait_closed(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
        {
            std::lock_guard lock(mutex_);
            if (closed_ == static_cast<int>(clients_.size())) return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

std::vector<client_pool::result> client_pool::results() const {
    std::lock_guard lock(mutex_);
    std::vector<result> out;
    for (const auto& c : clients_) out.push_back(c->r);
    return out;
}

int client_pool::open() const {
    std::lock_guard lock(mutex_);
    return static_cast<int>(clients_.size()) - closed_;
}

// --- raw frames ------------------------------------------------------------------------

std::string encode_frame(std::uint8_t opcode, const std::string& payload, bool masked, bool fin, std::uint8_t rsv) {
    std::string out;
    out.push_back(static_cast<char>((fin ? 0x80 : 0) | rsv | opcode));
    const char m = masked ? static_cast<char>(0x80) : 0;
    const std::size_t n = payload.size();
    if (n < 126) {
        out.push_back(static_cast<char>(m | static_cast<char>(n)));
    } else if (n <= 0xffff) {
        out.push_back(static_cast<char>(m | 126));
        out.push_back(static_cast<char>(n >> 8));
        out.push_back(static_cast<char>(n));
    } else {
        out.push_back(static_cast<char>(m | 127));
        for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(std::uint64_t{n} >> (8 * i)));
    }
    const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    if (masked) out.append(reinterpret_cast<const char*>(key), 4);
    for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<char>(masked ? payload[i] ^ key[i & 3] : payload[i]));
    return out;
}

std::uint16_t raw_frame::close_code() const {
    if (payload.size() < 2) return 1005;
    return static_cast<std::uint16_t>(static_cast<unsigned char>(payload[0]) << 8 | static_cast<unsigned char>(payload[1]));
}

raw_client::raw_client(std::uint16_t port, const std::string& target) : socket_(context_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
    set_receive_timeout(socket_, 10);
    send_bytes("GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    char c;
    while (buffer_.find("\r\n\r\n") == std::string::npos) {
        beast::error_code ec;
        if (socket_.read_some(asio::buffer(&c, 1), ec) != 1) throw std::runtime_error("no upgrade response");
        buffer_.push_back(c);
    }
    if (!buffer_.starts_with("HTTP/1.1 101")) throw std::runtime_error("upgrade refused: " + buffer_);
    buffer_.clear();
}

void raw_client::send_bytes(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }

void raw_client::send_frame(std::uint8_t opcode, const std::string& payload, bool masked, bool fin) {
    send_bytes(encode_frame(opcode, payload, masked, fin));
}

std::optional<raw_frame> raw_client::read_frame() {
    auto need = [&](std::size_t n) {
        while (buffer_.size() < n) {
            char chunk[4096];
            beast::error_code result;
            std::size_t got = 0;
            socket_.async_read_some(asio::buffer(chunk), [&](beast::error_code ec, std::size_t k) { result = ec, got = k; });
            try {
                run_bounded(context_, socket_);
            } catch (const std::exception&) {
                return false;
            }
            if (result || got == 0) return false;
            buffer_.append(chunk, got);
        }
        return true;
    };
    if (!need(2)) return std::nullopt;
    raw_frame f;
    const auto b0 = static_cast<unsigned char>(buffer_[0]), b1 = static_cast<unsigned char>(buffer_[1]);
    f.fin = b0 & 0x80;
    f.opcode = b0 & 0x0f;
    f.masked = b1 & 0x80;
    std::uint64_t len = b1 & 0x7f;
    std::size_t pos = 2;
    if (len == 126) {
        if (!need(4)) return std::nullopt;
        len = static_cast<unsigned char>(buffer_[2]) << 8 | static_cast<unsigned char>(buffer_[3]);
        pos = 4;
    } else if (len == 127) {
        if (!need(10)) return std::nullopt;
        len = 0;
        for (int i = 0; i < 8; ++i) len = len << 8 | static_cast<unsigned char>(buffer_[2 + i]);
        pos = 10;
    }
    unsigned char key[4] = {};
    if (f.masked) {
        if (!need(pos + 4)) return std::nullopt;
        std::memcpy(key, buffer_.data() + pos, 4);
        pos += 4;
    }
    if (!need(pos + len)) return std::nullopt;
    f.payload = buffer_.substr(pos, len);
    if (f.masked)
        for (std::size_t i = 0; i < f.payload.size(); ++i) f.payload[i] = static_cast<char>(f.payload[i] ^ key[i & 3]);
    buffer_.erase(0, pos + len);
    return f;
}

bool raw_client::at_eof() {
    char c;
    beast::error_code result;
    std::size_t n = 0;
    socket_.async_read_some(asio::buffer(&c, 1), [&](beast::error_code ec, std::size_t k) { result = ec, n = k; });
    try {
        run_bounded(context_, socket_);
    } catch (const std::exception&) {
        return false;
    }
    return n == 0 && (result == asio::error::eof || result == asio::error::connection_reset);
}

// --- HTTP and metrics ------------------------------------------------------------------

http_result http_request(std::uint16_t port, bhttp::verb method, const std::string& target, const std::string& body,
                         std::map<std::string, std::string> headers) {
    asio::io_context ctx;
    tcp::socket s(ctx);
    s.connect({asio::ip::make_address("127.0.0.1"), port});
    set_receive_timeout(s, 30);
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1:" + std::to_string(port));
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    if (!body.empty() || method == bhttp::verb::post) req.prepare_payload();
    bhttp::write(s, req);
    beast::flat_buffer buf;
    bhttp::response_parser<bhttp::string_body> p;
    p.body_limit(1ULL << 30);
    bhttp::read(s, buf, p);
    http_result r;
    r.status = p.get().result_int();
    for (const auto& f : p.get()) r.headers[std::string(f.name_string())] = std::string(f.value());
    r.body = p.get().body();
    return r;
}

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
        if (done()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
}

bool open_sessions_echo(client_pool& pool) {
    std::vector<std::uint64_t> before;
    for (const auto& r : pool.results()) before.push_back(r.messages);
    pool.send_to_open("still there?");
    return wait_for(
        [&] {
            const auto now = pool.results();
            for (std::size_t i = 0; i < now.size(); ++i)
                if (now[i].open() && now[i].messages <= before[i]) return false;
            return true;
        },
        std::chrono::seconds(5));
}

http_result refused_upgrade(std::uint16_t port, const std::string& target) {
    return http_request(port, bhttp::verb::get, target, {},
                        {{"Upgrade", "websocket"},
                         {"Connection", "Upgrade"},
                         {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                         {"Sec-WebSocket-Version", "13"}});
}

std::string scrape(std::uint16_t admin_port) { return http_request(admin_port, bhttp::verb::get, "/metrics").body; }

std::string json_field(const std::string& json, const std::string& key) {
    const std::string needle = "\"" + key + "\":";
    auto pos = json.find(needle);
    if (pos == std::string::npos) return {};
    pos += needle.size();
    if (json[pos] == '"') return json.substr(pos + 1, json.find('"', pos + 1) - pos - 1);
    return json.substr(pos, json.find_first_of(",}", pos) - pos);
}

double metric(const std::string& text, const std::string& sample) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (line.starts_with(sample + " ")) return std::stod(line.substr(sample.size() + 1));
    return std::nan("");
}

// --- processes -------------------------------------------------------------------------

std::string binary_path(const std::string& name) {
    if (name == "wsdrain") return WSDRAIN_BINARY;
    if (name == "demo_backend") return DEMO_BACKEND_BINARY;
    throw std::invalid_argument(name);
}

std::string source_path(const std::string& relative) { return std::string(WSDRAIN_SOURCE_DIR) + "/" + relative; }

process::process(const std::string& path, const std::vector<std::string>& args, bool with_stderr) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    if (with_stderr) posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(path.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, path.c_str(), &actions, nullptr, argv.data(), environ) != 0)
        throw std::runtime_error("cannot start " + path);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    out_fd_ = fds[0];
}

process::~process() {
    if (!status_) {
        kill(SIGKILL);
        wait(std::chrono::seconds(5));
    }
    if (out_fd_ >= 0) ::close(out_fd_);
}

std::string process::read_line(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (auto nl = pending_.find('\n'); nl != std::string::npos) {
            std::string line = pending_.substr(0, nl);
            pending_.erase(0, nl + 1);
            return line;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) return {};
        pollfd p{out_fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return {};
        char buf[4096];
        const ssize_t n = ::read(out_fd_, buf, sizeof buf);
        if (n <= 0) return std::exchange(pending_, {});
        pending_.append(buf, static_cast<std::size_t>(n));
    }
}

std::string process::read_all(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        pollfd p{out_fd_, POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
        char buf[4096];
        const ssize_t n = ::read(out_fd_, buf, sizeof buf);
        if (n <= 0) break;
        pending_.append(buf, static_cast<std::size_t>(n));
    }
    return std::exchange(pending_, {});
}

void process::kill(int signo) {
    if (!status_ && pid_ > 0) ::kill(pid_, signo);
}

std::optional<int> process::wait(std::chrono::milliseconds timeout) {
    if (status_) return status_;
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        int st = 0;
        const pid_t r = ::waitpid(pid_, &st, WNOHANG);
        if (r == pid_) {
            status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
            return status_;
        }
        if (std::chrono::steady_clock::now() >= until) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

std::uint16_t free_port() {
    asio::io_context ctx;
    tcp::acceptor a(ctx, {asio::ip::make_address("127.0.0.1"), 0});
    return a.local_endpoint().port();
}

long rss_kib(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
    return -1;
}

}  // namespace wsdrain::testing

namespace wsdrain::testing {

temp_dir::temp_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "wsdrain-test-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path = pattern;
}

temp_dir::~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
}

certificate make_certificate(const temp_dir& dir, const std::string& cn) {
    certificate c{dir.path / (cn + ".crt"), dir.path / (cn + ".key")};
    process openssl{"/usr/bin/openssl",
                    {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days",
                     "2", "-subj", "/CN=" + cn, "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout",
                     c.key.string(), "-out", c.cert.string()},
                    true};
    const std::string out = openssl.read_all();
    if (openssl.wait() != 0) throw std::runtime_error("openssl req failed: " + out);
    return c;
}

}  // namespace wsdrain::testing
