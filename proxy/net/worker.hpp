#pragma once
// One event-loop thread: its io_context, the sessions it owns and its metrics shard.
// Nothing here is touched from another thread except through post(context(), ...).

#include <boost/asio/io_context.hpp>
#include <boost/intrusive/list.hpp>

#include <cstdint>
#include <memory>
#include <string>

#include "metrics/metrics.hpp"
#include "net/deadlines.hpp"

namespace wsdrain::routing {
class endpoint;
}  // namespace wsdrain::routing

namespace wsdrain::net {

namespace asio = boost::asio;

// Which drain asked a session to close: a full drain, a partial one (POST /drain?fraction=),
// or the drain of its endpoint or upstream (Close 1012).
enum class drain_kind : std::uint8_t { full, partial, endpoint };

// The reason of the Close 1012 sent for the drain of an endpoint or upstream.
inline constexpr const char* endpoint_drain_reason = "backend restarting";

// What the control side may ask of a session or connection, always on its own thread.
class session_link
    : public boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
public:
    virtual ~session_link() = default;
    // Begins a graceful close: a WebSocket session sends its client `code` and `reason` at
    // the next message boundary and completes the handshake on both legs; an HTTP connection
    // closes now if idle, else after the response in flight (which says Connection: close).
    virtual void drain_close(std::uint16_t code, const std::string& reason, drain_kind kind) = 0;
    // Ends at once: a Close frame where a socket takes it now, then FIN.
    virtual void force_close() = 0;
    // The backend endpoint a WebSocket session is relayed to (a partial drain chooses evenly
    // across them); nullptr for an HTTP connection.
    virtual const routing::endpoint* upstream_endpoint() const { return nullptr; }
};

using session_list = boost::intrusive::list<session_link, boost::intrusive::constant_time_size<false>>;

class worker {
public:
    static constexpr std::size_t scratch_size = 64 * 1024;

    worker(unsigned index, metrics::thread_shard& stats);
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    unsigned index() const { return index_; }
    asio::io_context& context() { return context_; }
    metrics::thread_shard& stats() { return stats_; }
    // WebSocket sessions not yet asked to close, oldest first.
    session_list& sessions() { return sessions_; }
    // WebSocket sessions a partial drain has chosen and not yet asked to close, in the order
    // it will ask them.
    session_list& chosen() { return chosen_; }
    // WebSocket sessions of drained endpoints not yet asked to close, in the order they will be.
    session_list& retiring() { return retiring_; }
    // WebSocket sessions asked to close by a drain (full, partial or of their endpoint).
    session_list& closing() { return closing_; }
    // Client HTTP connections that have not become sessions.
    session_list& connections() { return connections_; }

    // Ends every session and connection of this loop at once (force_close on each).
    void force_close_all();

    // True from the start of a drain: sessions ending now count toward its progress.
    bool draining() const { return draining_; }
    void set_draining(bool d) { draining_ = d; }
    // True once the drain closes this loop's sessions: a session starting now (its upgrade was
    // under way when the drain began refusing) is asked to close at once.
    bool closing_sessions() const { return closing_sessions_; }
    void set_closing_sessions(bool c) { closing_sessions_ = c; }

    // The deadlines of this loop's sessions.
    deadline_queue& deadlines() { return deadlines_; }

    // A read buffer shared by every session of this thread: a session reads into it,
    // relays what it can at once and keeps only what the other side could not take.
    std::uint8_t* scratch() { return scratch_.get(); }

    // Fast non-cryptographic randomness for frame masks (xorshift64*).
    std::uint64_t random();
    // Session ids for the logs: 1, 2, 3... across every thread (once per session).
    static std::uint64_t next_session_id();

private:
    unsigned index_;
    // One thread runs it, and only that thread touches its sockets: other threads post to it
    // (the scheduler keeps its lock for that), so the reactor's per-descriptor lock is off.
    asio::io_context context_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    deadline_queue deadlines_{context_};
    metrics::thread_shard& stats_;
    session_list sessions_;
    session_list chosen_;
    session_list retiring_;
    session_list closing_;
    session_list connections_;
    bool draining_ = false;
    bool closing_sessions_ = false;
    std::unique_ptr<std::uint8_t[]> scratch_;
    std::uint64_t rng_;
};

}  // namespace wsdrain::net
