#pragma once
// Shared pieces of the integration tests: the proxy run in-process on port 0, real clients
// (Beast's WebSocket client, a raw-frame client for what Beast refuses to send), child
// processes ended by PID, and a Prometheus text scraper.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <optional>
#include <string>
#include <vector>

#include "app/server.hpp"
#include "backend.hpp"
#include "config/config.hpp"

namespace wsdrain::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

// A config listening on 127.0.0.1:0 (proxy and admin) with one upstream "app".
config::proxy_config local_config(std::vector<std::uint16_t> app_ports);

// The proxy, running in this process on its own threads.
class proxy {
public:
    explicit proxy(config::proxy_config cfg);
    ~proxy();
    std::uint16_t port() const { return server_->listen_port(); }
    std::uint16_t admin_port() const { return server_->admin_port(); }
    app::server& server() { return *server_; }

private:
    std::unique_ptr<app::server> server_;
};

// Runs one asynchronous operation on `ctx` to its end, or throws after `timeout` (after
// closing `socket`, so that nothing waits forever in a failing test).
void run_bounded(asio::io_context& ctx, tcp::socket& socket, std::chrono::milliseconds timeout = std::chrono::seconds(10));

// A Beast WebSocket client; every call gives up after 10 s.
class ws_client {
public:
    ws_client(std::uint16_t port, const std::string& target = "/", std::vector<std::string> subprotocols = {},
              const std::string& source_address = "127.0.0.1");
    websocket::stream<tcp::socket>& ws() { return ws_; }
    const websocket::response_type& response() const { return response_; }
    std::string header(const std::string& name) const { return std::string(response_[name]); }

    void send(const std::string& s, bool text);
    void send_text(const std::string& s) { send(s, true); }
    void send_binary(const std::string& s) { send(s, false); }
    std::string receive();  // throws on error or close
    // Reads until the peer's Close; returns its code (1006 when the stream ended without one).
    std::uint16_t wait_close(std::string* reason = nullptr);
    void close(std::uint16_t code = 1000);

private:
    asio::io_context context_;
    websocket::stream<tcp::socket> ws_;
    websocket::response_type response_;
};

// Many WebSocket clients on one thread of their own. Each reads until the proxy's Close
// (Beast answers it), optionally streaming "SEQ n" messages as fast as it can, and records
// how and when its session ended and how many messages it received. The first message of
// client k is "ID k".
class client_pool {
public:
    struct result {
        std::uint16_t code = 0;  // 1006: no Close frame
        std::string reason;
        std::chrono::steady_clock::time_point closed_at{};
        std::uint64_t last_sequence_sent = 0;  // the last SEQ whose write completed
        std::uint64_t messages = 0;            // messages received
        bool open() const { return code == 0; }
    };

    // With `stream_every` above 0, each client sends its next SEQ that long after the last.
    client_pool(std::uint16_t port, int count, bool stream_sequence = false, const std::string& target = "/",
                std::chrono::milliseconds stream_every = std::chrono::milliseconds(0));
    // Sends `text` on every session still open (not with stream_sequence).
    void send_to_open(const std::string& text);
    ~client_pool();
    // Waits (bounded) until every session has ended.
    bool wait_closed(std::chrono::milliseconds timeout);
    std::vector<result> results() const;
    int open() const;

    struct client;

private:
    asio::io_context context_;
    std::vector<std::shared_ptr<client>> clients_;
    std::thread thread_;
    mutable std::mutex mutex_;
    int closed_ = 0;
};

struct raw_frame {
    std::uint8_t opcode = 0;
    bool fin = true;
    bool masked = false;
    std::string payload;
    std::uint16_t close_code() const;
};

// A TCP client that does the upgrade by hand and then speaks raw frames.
class raw_client {
public:
    explicit raw_client(std::uint16_t port, const std::string& target = "/");
    void send_bytes(const std::string& bytes);
    void send_frame(std::uint8_t opcode, const std::string& payload, bool masked = true, bool fin = true);
    std::optional<raw_frame> read_frame();  // nullopt at EOF, reset or timeout
    bool at_eof();                          // true once the proxy closed its side
    tcp::socket& socket() { return socket_; }

private:
    asio::io_context context_;
    tcp::socket socket_;
    std::string buffer_;
};

// Encodes one frame; masked frames use a fixed key.
std::string encode_frame(std::uint8_t opcode, const std::string& payload, bool masked, bool fin = true,
                         std::uint8_t rsv = 0);

struct http_result {
    unsigned status = 0;
    std::map<std::string, std::string> headers;
    std::string body;
};

http_result http_request(std::uint16_t port, bhttp::verb method, const std::string& target, const std::string& body = {},
                         std::map<std::string, std::string> headers = {});

// Polls `done` every 10 ms until it holds or `timeout` passes; its last answer.
bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds timeout = std::chrono::seconds(10));
// Sends one message on every open session of `pool` and waits (5 s at most) until each has
// its echo.
bool open_sessions_echo(client_pool& pool);
// An upgrade request whose answer is expected to be an error: that answer, read whole.
http_result refused_upgrade(std::uint16_t port, const std::string& target);

// The value of one sample in Prometheus text, e.g. `wsdrain_state` or
// `wsdrain_upgrades_total{result="ok",upstream="app"}`; NaN when absent.
double metric(const std::string& text, const std::string& sample);
std::string scrape(std::uint16_t admin_port);
// The value of "key" in wsdrain's flat JSON status (GET /drain); "" when absent.
std::string json_field(const std::string& json, const std::string& key);

// A child process with its stdout piped to us; ended by PID.
class process {
public:
    // With `with_stderr`, the child's stderr (wsdrain's log) comes through the same pipe.
    process(const std::string& path, const std::vector<std::string>& args, bool with_stderr = false);
    ~process();
    int pid() const { return pid_; }
    std::string read_line(std::chrono::milliseconds timeout = std::chrono::seconds(10));
    std::string read_all(std::chrono::milliseconds timeout = std::chrono::seconds(30));
    void kill(int signo);
    // Waits for the exit; returns the exit status, or -signal, or nullopt on timeout.
    std::optional<int> wait(std::chrono::milliseconds timeout = std::chrono::seconds(30));

private:
    int pid_ = -1;
    int out_fd_ = -1;
    std::string pending_;
    std::optional<int> status_;
};

std::string binary_path(const std::string& name);  // wsdrain, demo_backend
std::string source_path(const std::string& relative);

// A loopback port that was free a moment ago (for processes that must be told a port).
std::uint16_t free_port();

// A folder of its own for a test, removed with everything in it at the end.
struct temp_dir {
    std::filesystem::path path;
    temp_dir();
    ~temp_dir();
};

// A self-signed certificate and its key (for localhost and 127.0.0.1, common name `cn`),
// made with Debian's openssl in `dir`. Throws when openssl fails.
struct certificate {
    std::filesystem::path cert, key;
};
certificate make_certificate(const temp_dir& dir, const std::string& cn);

// Resident memory of a process in KiB (VmRSS).
long rss_kib(int pid);

}  // namespace wsdrain::testing
