// wsdrain_loadgen: WebSocket load for comparing proxies side by side (tests/bench/compare.py).
// One thread; prints one JSON object on stdout when done.
//
//   wsdrain_loadgen MODE --port P [--sessions N] [--size BYTES] [--seconds S] [--sources K]
//     pingpong  one message in flight per session; counts round trips
//     stream    --inflight K messages in flight per session (pipelined)
//     latency   --rate R messages a second over all sessions, sent at fixed times whatever the
//               answers do (open loop: no coordinated omission); latency is measured from the
//               time a message was due, not from when it could be sent
//     idle      opens N sessions, prints {"open":N} and holds them until stdin closes
//     drain     opens N sessions, prints {"open":N}, then waits (at most --seconds) for the
//               proxy to close every one; reports when each Close frame arrived (system clock,
//               ns since the epoch, for tests/bench/drain_bench.py), its code, and whether the
//               close handshake completed
//     upgrades  --sessions N loops of: connect, upgrade, Close, TCP close
// --sources K spreads client connections over 127.0.0.1 .. 127.0.0.K (more than 64k sessions
// per destination port need more source addresses; it also spreads kernel hash buckets).
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
    std::string mode;
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    int sessions = 100;
    std::size_t size = 64;
    int inflight = 1;
    double rate = 0;
    double seconds = 10;
    int sources = 1;
};

struct totals {
    std::uint64_t messages = 0;  // echoes received
    std::uint64_t bytes = 0;
    std::uint64_t errors = 0;
    std::uint64_t upgrades = 0;
    std::vector<std::uint32_t> latencies_us;  // latency mode
    int open = 0;                             // drain mode: sessions not closed yet
};

std::int64_t wall_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

tcp::endpoint source_address(int index, int sources) {
    const unsigned last = 1 + static_cast<unsigned>(index % std::max(1, sources));
    return {asio::ip::make_address_v4((127u << 24) | last), 0};
}

class session : public std::enable_shared_from_this<session> {
public:
    session(asio::io_context& ctx, const options& o, totals& t, int index)
        : ws_(ctx), timer_(ctx), o_(o), t_(t), index_(index), payload_(o.size, 'x') {}

    // Connects and upgrades; `ready` runs once that is done (or failed).
    template <class F>
    void open(const tcp::endpoint& target, F ready) {
        auto& s = ws_.next_layer();
        beast::error_code ec;
        s.open(tcp::v4(), ec);
        s.bind(source_address(index_, o_.sources), ec);
        s.async_connect(target, [self = shared_from_this(), ready](beast::error_code cec) mutable {
            if (cec) return self->fail(ready);
            self->ws_.next_layer().set_option(tcp::no_delay(true));
            self->ws_.binary(true);
            self->ws_.auto_fragment(false);
            self->ws_.async_handshake(self->o_.host, "/", [self, ready](beast::error_code hec) mutable {
                if (hec) return self->fail(ready);
                ++self->t_.upgrades;
                ready(true);
            });
        });
    }

    void run_pingpong(clock_type::time_point end) {
        end_ = end;
        read_loop();
        for (int i = 0; i < o_.inflight; ++i) send_now();
    }

    // Open loop: one message every `interval`, starting at `first`.
    void run_latency(clock_type::time_point first, clock_type::duration interval, clock_type::time_point end) {
        end_ = end;
        open_loop_ = true;
        next_due_ = first;
        interval_ = interval;
        read_loop();
        schedule();
    }

    // Drain mode: reads (and drops) whatever comes until the proxy closes the session.
    void watch_close(asio::io_context& ctx) {
        ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
            if (kind == websocket::frame_type::close && close_frame_ns == 0) close_frame_ns = wall_ns();
        });
        read_to_close(ctx);
    }

    std::int64_t close_frame_ns = 0;  // when the Close frame arrived (0: none)
    std::int64_t ended_ns = 0;        // when the session ended, handshake or not
    bool clean = false;               // Close both ways, then the TCP connection ended
    std::uint16_t close_code = 0;

    void close_then(std::function<void()> done) {
        ws_.async_close(websocket::close_code::normal, [self = shared_from_this(), done](beast::error_code) {
            beast::error_code ec;
            self->ws_.next_layer().close(ec);
            done();
        });
    }

    void stop() {
        beast::error_code ec;
        ws_.next_layer().close(ec);
    }

private:
    template <class F>
    void fail(F& ready) {
        ++t_.errors;
        ready(false);
    }

    void read_loop() {
        ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t n) {
            if (ec) return;
            self->buffer_.consume(n);
            ++self->t_.messages;
            self->t_.bytes += n;
            const auto now = clock_type::now();
            if (self->open_loop_) {  // latency mode: the oldest message in flight came back
                if (self->due_.empty()) return self->read_loop();
                self->t_.latencies_us.push_back(static_cast<std::uint32_t>(
                    std::chrono::duration_cast<std::chrono::microseconds>(now - self->due_.front()).count()));
                self->due_.pop_front();
            } else if (now < self->end_) {
                self->send_now();  // closed loop: the next one as soon as this one is back
            }
            self->read_loop();
        });
    }

    void read_to_close(asio::io_context& ctx) {
        ws_.async_read(buffer_, [self = shared_from_this(), &ctx](beast::error_code ec, std::size_t n) {
            if (!ec) {
                self->buffer_.consume(n);
                return self->read_to_close(ctx);
            }
            self->ended_ns = wall_ns();
            self->clean = ec == websocket::error::closed;
            self->close_code = self->ws_.reason().code;
            if (--self->t_.open == 0) ctx.stop();
        });
    }

    void send_now() {
        ++queued_;
        pump();
    }

    void pump() {
        if (writing_ || queued_ == 0) return;
        writing_ = true;
        --queued_;
        ws_.async_write(asio::buffer(payload_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
            self->writing_ = false;
            if (ec) {
                ++self->t_.errors;
                return;
            }
            self->pump();
        });
    }

    void schedule() {
        if (next_due_ >= end_) return;
        timer_.expires_at(next_due_);
        timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
            if (ec) return;
            // Every message due by now is counted from its due time, sent or queued.
            const auto now = clock_type::now();
            while (self->next_due_ <= now && self->next_due_ < self->end_) {
                self->due_.push_back(self->next_due_);
                self->next_due_ += self->interval_;
                self->send_now();
            }
            self->schedule();
        });
    }

    websocket::stream<tcp::socket> ws_;
    asio::steady_timer timer_;
    const options& o_;
    totals& t_;
    int index_;
    std::string payload_;
    beast::flat_buffer buffer_;
    bool writing_ = false;
    bool open_loop_ = false;
    int queued_ = 0;
    clock_type::time_point end_{};
    clock_type::time_point next_due_{};
    clock_type::duration interval_{};
    std::deque<clock_type::time_point> due_;
};

double percentile(std::vector<std::uint32_t>& v, double p) {
    if (v.empty()) return 0;
    const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
}

bool parse(int argc, char** argv, options& o) {
    if (argc < 2) return false;
    o.mode = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--port") o.port = static_cast<std::uint16_t>(std::stoi(v));
        else if (k == "--host") o.host = v;
        else if (k == "--sessions") o.sessions = std::stoi(v);
        else if (k == "--size") o.size = std::stoul(v);
        else if (k == "--inflight") o.inflight = std::stoi(v);
        else if (k == "--rate") o.rate = std::stod(v);
        else if (k == "--seconds") o.seconds = std::stod(v);
        else if (k == "--sources") o.sources = std::stoi(v);
        else return false;
    }
    return o.port != 0;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    if (!parse(argc, argv, o)) {
        std::cerr << "usage: wsdrain_loadgen pingpong|stream|latency|idle|drain|upgrades --port P [--sessions N] "
                     "[--size B] [--inflight K] [--rate R] [--seconds S] [--sources K]\n";
        return 2;
    }
    // Descriptors: one a session; the soft limit goes up to the hard one.
    if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    asio::io_context ctx{1};
    totals t;
    const tcp::endpoint target{asio::ip::make_address(o.host), o.port};
    std::vector<std::shared_ptr<session>> sessions;
    const auto span = std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(o.seconds));

    if (o.mode == "upgrades") {
        // N loops of open + close, for the given time.
        const auto end = clock_type::now() + span;
        std::function<void(int)> loop = [&](int i) {
            if (clock_type::now() >= end) return;
            auto s = std::make_shared<session>(ctx, o, t, i);
            s->open(target, [&, s, i](bool ok) {
                if (!ok) return loop(i);
                s->close_then([&, i] { loop(i); });
            });
        };
        const auto t0 = clock_type::now();
        for (int i = 0; i < o.sessions; ++i) loop(i);
        ctx.run();
        const double elapsed = std::chrono::duration<double>(clock_type::now() - t0).count();
        std::printf("{\"mode\":\"upgrades\",\"upgrades\":%llu,\"errors\":%llu,\"seconds\":%.3f}\n",
                    static_cast<unsigned long long>(t.upgrades), static_cast<unsigned long long>(t.errors), elapsed);
        return t.errors == 0 ? 0 : 1;
    }

    // Open every session first (at most 200 handshakes at a time), then run the mode.
    int opened = 0, next = 0, failed = 0;
    std::function<void()> open_next = [&] {
        if (next >= o.sessions) return;
        auto s = std::make_shared<session>(ctx, o, t, next++);
        sessions.push_back(s);
        s->open(target, [&](bool ok) {
            ok ? ++opened : ++failed;
            if (opened + failed == o.sessions) ctx.stop();
            else open_next();
        });
    };
    for (int i = 0; i < std::min(200, o.sessions); ++i) open_next();
    ctx.run();
    ctx.restart();
    if (failed) {
        std::printf("{\"mode\":\"%s\",\"error\":\"%d of %d sessions failed to open\"}\n", o.mode.c_str(), failed,
                    o.sessions);
        return 1;
    }

    if (o.mode == "idle") {
        std::printf("{\"mode\":\"idle\",\"open\":%d}\n", opened);
        std::fflush(stdout);
        char c;
        while (std::cin.get(c)) {
        }  // held until stdin closes
        for (auto& s : sessions) s->stop();
        return 0;
    }

    if (o.mode == "drain") {
        std::printf("{\"mode\":\"drain\",\"open\":%d}\n", opened);
        std::fflush(stdout);
        t.open = opened;
        for (auto& s : sessions) s->watch_close(ctx);
        asio::steady_timer give_up{ctx, span};
        give_up.async_wait([&](beast::error_code) { ctx.stop(); });
        ctx.run();
        int clean = 0, unclean = 0, no_close_frame = 0;
        std::map<std::uint16_t, int> codes;
        for (auto& s : sessions) {
            if (s->ended_ns == 0) continue;
            s->clean ? ++clean : ++unclean;
            if (s->close_frame_ns == 0) ++no_close_frame;
            else ++codes[s->close_code];
        }
        std::printf("{\"mode\":\"drain\",\"sessions\":%d,\"clean\":%d,\"unclean\":%d,\"still_open\":%d,"
                    "\"no_close_frame\":%d,\"codes\":{",
                    opened, clean, unclean, t.open, no_close_frame);
        const char* sep = "";
        for (const auto& [code, n] : codes) std::printf("%s\"%u\":%d", std::exchange(sep, ","), code, n);
        std::printf("},\"close_frame_ns\":[");
        sep = "";
        for (auto& s : sessions)
            if (s->close_frame_ns) std::printf("%s%lld", std::exchange(sep, ","), static_cast<long long>(s->close_frame_ns));
        std::printf("],\"ended_ns\":[");
        sep = "";
        for (auto& s : sessions)
            if (s->ended_ns) std::printf("%s%lld", std::exchange(sep, ","), static_cast<long long>(s->ended_ns));
        std::printf("]}\n");
        return t.open == 0 && unclean == 0 ? 0 : 1;
    }

    const auto t0 = clock_type::now();
    const auto end = t0 + span;
    if (o.mode == "pingpong" || o.mode == "stream") {
        if (o.mode == "pingpong") o.inflight = 1;
        for (auto& s : sessions) s->run_pingpong(end);
    } else if (o.mode == "latency") {
        const auto interval = std::chrono::duration_cast<clock_type::duration>(
            std::chrono::duration<double>(static_cast<double>(o.sessions) / o.rate));
        for (std::size_t i = 0; i < sessions.size(); ++i)  // phases spread evenly over one interval
            sessions[i]->run_latency(t0 + interval * static_cast<long>(i) / static_cast<long>(sessions.size()),
                                     interval, end);
    } else {
        std::cerr << "unknown mode " << o.mode << "\n";
        return 2;
    }
    // Stop at the end (plus a moment for the last answers), without waiting for stragglers.
    asio::steady_timer stop{ctx, end + std::chrono::milliseconds(500)};
    stop.async_wait([&](beast::error_code) {
        for (auto& s : sessions) s->stop();
    });
    ctx.run();
    const double elapsed = std::chrono::duration<double>(end - t0).count();
    std::printf("{\"mode\":\"%s\",\"sessions\":%d,\"size\":%zu,\"messages\":%llu,\"bytes\":%llu,\"errors\":%llu,"
                "\"seconds\":%.3f,\"messages_per_second\":%.1f",
                o.mode.c_str(), o.sessions, o.size, static_cast<unsigned long long>(t.messages),
                static_cast<unsigned long long>(t.bytes), static_cast<unsigned long long>(t.errors), elapsed,
                static_cast<double>(t.messages) / elapsed);
    if (o.mode == "latency") {
        std::printf(",\"rate\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f,\"max_us\":%.0f", o.rate,
                    percentile(t.latencies_us, 0.50), percentile(t.latencies_us, 0.99),
                    percentile(t.latencies_us, 1.0));
    }
    std::printf("}\n");
    return 0;
}
