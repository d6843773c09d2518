// Demo clients: opens N WebSocket sessions to a URL, sends a message on each every second,
// and once every session has ended prints how each one ended (Close code, reason, and
// whether the close handshake was clean).
//   demo_clients [--sessions N] ws://HOST:PORT/PATH
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <iostream>
#include <map>
#include <memory>
#include <string>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

struct outcome {
    int code = 1006;
    std::string reason;
    bool clean = false;
};

struct session : std::enable_shared_from_this<session> {
    websocket::stream<tcp::socket> ws;
    asio::steady_timer timer;
    beast::flat_buffer buffer;
    std::string message;
    outcome result;
    bool done = false;
    int& open;

    session(asio::io_context& ctx, int& open_count) : ws(ctx), timer(ctx), open(open_count) {}

    void start(int id) {
        message = "hello from demo client " + std::to_string(id);
        read();
        tick();
    }
    void read() {
        buffer.clear();
        ws.async_read(buffer, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (!ec) return self->read();
            self->end(ec);
        });
    }
    void tick() {
        timer.expires_after(std::chrono::seconds(1));
        timer.async_wait([self = shared_from_this()](beast::error_code ec) {
            if (ec || self->done) return;
            self->ws.async_write(asio::buffer(self->message), [self](beast::error_code, std::size_t) { self->tick(); });
        });
    }
    void end(beast::error_code ec) {
        if (done) return;
        done = true;
        timer.cancel();
        if (ec == websocket::error::closed) {
            result = {ws.reason().code, std::string(ws.reason().reason.c_str()), true};
        } else {
            result.reason = ec.message();
        }
        --open;
    }
};

}  // namespace

int main(int argc, char** argv) {
    int count = 20;
    std::string url;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--sessions" && i + 1 < argc) count = std::stoi(argv[++i]);
        else url = a;
    }
    const std::string prefix = "ws://";
    if (!url.starts_with(prefix)) {
        std::cerr << "usage: demo_clients [--sessions N] ws://HOST:PORT/PATH\n";
        return 2;
    }
    const std::string rest = url.substr(prefix.size());
    const std::string authority = rest.substr(0, rest.find('/'));
    const std::string path = rest.find('/') == std::string::npos ? "/" : rest.substr(rest.find('/'));
    const std::string host = authority.substr(0, authority.rfind(':'));
    const std::string port = authority.substr(authority.rfind(':') + 1);

    asio::io_context ctx;
    tcp::resolver resolver{ctx};
    const auto endpoints = resolver.resolve(host, port);
    int open = 0;
    std::vector<std::shared_ptr<session>> sessions;
    for (int i = 0; i < count; ++i) {
        auto s = std::make_shared<session>(ctx, open);
        beast::error_code ec;
        asio::connect(s->ws.next_layer(), endpoints, ec);
        if (!ec) s->ws.handshake(authority, path, ec);
        if (ec) {
            std::cerr << "session " << i << " could not connect: " << ec.message() << "\n";
            continue;
        }
        ++open;
        s->start(i);
        sessions.push_back(s);
    }
    std::cout << sessions.size() << " demo sessions connected to " << url << std::endl;
    ctx.run();

    std::map<std::string, int> summary;
    for (const auto& s : sessions) {
        const auto& r = s->result;
        std::string line = r.clean ? "Close " + std::to_string(r.code) + " \"" + r.reason + "\", clean handshake"
                                   : "no Close frame (1006): " + r.reason;
        ++summary[line];
    }
    std::cout << sessions.size() << " sessions ended:\n";
    for (const auto& [line, n] : summary) std::cout << "  " << n << " x " << line << "\n";
    return 0;
}
