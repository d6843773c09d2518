#pragma once
// A WebSocket session after the 101: two TCP legs, downstream (client) and upstream
// (backend), and the frames relayed between them without re-encoding.
//
// A tunnel lives on one event-loop thread and is only touched there. It reads a leg into
// the thread's scratch buffer, scans frame boundaries, and writes the bytes on at once with
// one gathered write; only what the other leg could not take is kept, and reading that
// side pauses until it is written (backpressure). The proxy's own Close and Ping frames are
// injected between frames, never inside one.

#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "codec/frame_scanner.hpp"
#include "metrics/metrics.hpp"
#include "net/readable_wait.hpp"
#include "net/worker.hpp"
#include "relay/leg_phase.hpp"

namespace wsdrain::net {
struct tls_stream;
struct leg_transport;
class client_sessions;
}  // namespace wsdrain::net

namespace wsdrain::routing {
class endpoint;
}  // namespace wsdrain::routing

namespace wsdrain::config {
struct drain_config;
}  // namespace wsdrain::config

namespace wsdrain::relay {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock = std::chrono::steady_clock;

struct tunnel_params {
    std::uint64_t max_frame_bytes = 16 * 1024 * 1024;
    std::uint8_t allowed_rsv = 0;  // RSV bits the negotiated extensions use
    std::uint8_t client_ip_size = 0;  // client_address starts with the client's IP: this long
    std::uint32_t read_size = 64 * 1024;  // at most net::worker::scratch_size
    std::chrono::milliseconds ping_interval{30000};
    std::chrono::milliseconds keepalive_timeout{10000};
    std::chrono::milliseconds close_timeout{5000};
    // Counts this session already; the tunnel gives it back. Its upstream names the metrics.
    std::shared_ptr<routing::endpoint> endpoint;
    std::string client_address;                          // "IP:port"
    std::atomic<std::int64_t>* session_count = nullptr;  // decremented when the session ends
    net::client_sessions* per_client = nullptr;          // released for the client's IP when it ends
};

class tunnel final : public net::session_link, private net::deadline {
public:
    // Starts relaying. `*_early` are bytes already read from each leg after the handshake
    // (frames that arrived with the request or the 101); they are relayed first. A session
    // born while its loop is draining, or on a drained endpoint, is asked to close at once, as
    // `drain` says (it is not kept).
    static void start(net::worker& w, net::leg_transport downstream, net::leg_transport upstream,
                      tunnel_params params, std::span<const std::uint8_t> downstream_early,
                      std::span<const std::uint8_t> upstream_early, const config::drain_config& drain);

    void drain_close(std::uint16_t code, const std::string& reason, net::drain_kind kind) override;
    void force_close() override;
    const routing::endpoint* upstream_endpoint() const override { return params_.endpoint.get(); }

    // How long a drain Close waits for the message in flight to the client to end.
    static constexpr std::chrono::seconds message_boundary_wait{1};
    // How long a forced close waits for the peers' answering Close before closing sockets.
    static constexpr std::chrono::seconds force_linger{1};

    friend void intrusive_ptr_add_ref(tunnel* t) { ++t->refs_; }
    friend void intrusive_ptr_release(tunnel* t) {
        if (--t->refs_ == 0) delete t;
    }

private:
    // Why the session ended, when it is not a plain clean close by one side.
    enum class verdict : std::uint8_t { none, idle, error, forced };

    struct leg {
        leg(net::leg_transport&& t, net::readable_wait::callback on_readable, tunnel* owner);
        ~leg();
        tcp::socket& raw();  // the TCP socket, under TLS or not

        tcp::socket socket;               // a plain leg's socket (empty under TLS)
        net::readable_wait readable;      // a plain leg's wait for input (holds a reference)
        std::unique_ptr<net::tls_stream> tls;  // a TLS leg's stream, read and written asynchronously
        std::unique_ptr<std::uint8_t[]> tls_input;  // what a TLS read delivered...
        std::size_t tls_held = 0;              // ...and not relayed yet (the other leg was busy)
        leg_phase phase = leg_phase::open;
        bool waiting = false;   // an async_wait for readability (or a posted read) is pending
        bool watching_shutdown = false;  // EPOLLRDHUP registered: a short read may end reading
        bool input_empty = false;        // a plain leg's last recv left nothing behind (it was short)
        bool writing = false;   // an async_write of `pending` is in flight
        bool paused = false;    // not read: the other leg has bytes it has not taken yet
        bool eof = false;       // the peer ended its byte stream
        bool fin_sent = false;  // shutdown(send) done
        bool finished = false;  // socket closed
        bool ping_due = false;  // a keepalive Ping waits for the next frame boundary
        std::uint16_t close_code = 0;  // a Close waiting for the next frame boundary (0: none)
        std::string close_reason;
        std::vector<std::uint8_t> pending;  // bytes for this leg that it could not take yet
    };

    // Bytes flowing from one leg to the other.
    struct stream {
        codec::frame_scanner scanner;
        bool dropping = false;  // the current data frame is not relayed
        std::uint64_t frames = 0, bytes = 0;
        std::uint64_t frames_published = 0, bytes_published = 0;
    };

    class batch;

    tunnel(net::worker& w, net::leg_transport downstream, net::leg_transport upstream, tunnel_params params);
    ~tunnel() override;

    leg& leg_of(leg_id l) { return legs_[index(l)]; }
    // The stream that flows from leg `from`.
    stream& stream_from(leg_id from) { return streams_[index(from)]; }
    metrics::direction direction_from(leg_id from) const {
        return from == leg_id::downstream ? metrics::direction::to_backend : metrics::direction::to_client;
    }

    void read(leg_id from);
    void read_tls(leg_id from);
    void read_to_fin(leg_id from);
    void begin_reading(leg_id from);
    void wait_readable(leg_id from);
    void watch_shutdown(leg_id from);
    template <leg_id From>
    static void on_readable(void* owner, const boost::system::error_code* ec);
    void relay(leg_id from, const std::uint8_t* data, std::size_t size);
    bool on_control(leg_id from, const codec::scan_event& e, const std::uint8_t* input);
    void on_protocol_error(leg_id from, codec::scan_error err);
    void flush(leg_id to, batch& out);
    void start_write(leg_id to);
    void resume_reader_of(leg_id to);
    void on_end(leg_id from, const boost::system::error_code& ec);

    void queue_close(leg_id to, std::uint16_t code, std::string_view reason);
    bool injection_due(leg_id to) const;
    void inject(leg_id to, batch& out);
    void pump_injections(leg_id to);
    void send_fin_if_done(leg_id l);
    void close_leg(leg_id l);
    void finish();

    void arm_timer();
    static void on_deadline(net::deadline& d);
    void on_timer();
    void publish_counts();
    void count_drop(leg_id from, metrics::drop_reason why);

    std::uint32_t refs_ = 0;
    net::worker& worker_;
    tunnel_params params_;
    leg legs_[2];
    stream streams_[2];

    std::uint64_t id_;
    clock::time_point started_;
    clock::time_point close_started_{};         // first Close seen or sent
    clock::time_point close_deadline_ = clock::time_point::max();
    clock::time_point last_downstream_activity_;
    clock::time_point next_ping_ = clock::time_point::max();
    clock::time_point pong_deadline_ = clock::time_point::max();
    clock::time_point message_wait_until_ = clock::time_point::max();  // drain Close: wait for a message end

    leg_id close_initiator_ = leg_id::downstream;
    bool close_by_proxy_ = false;
    bool drained_ = false;  // a drain asked this session to close
    net::drain_kind drain_kind_ = net::drain_kind::full;
    bool close_seen_ = false;
    std::uint16_t first_close_code_ = codec::close_code::abnormal;
    verdict verdict_ = verdict::none;
    bool finished_ = false;
};

}  // namespace wsdrain::relay
