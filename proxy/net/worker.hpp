#pragma once
// One event-loop thread: its io_context, the sessions it owns and its metrics shard.
// Nothing here is touched from another thread except through post(context(), ...).

#include <boost/asio/io_context.hpp>
#include <boost/intrusive/list.hpp>

#include <cstdint>
#include <memory>

#include "metrics/metrics.hpp"

namespace wsdrain::net {

namespace asio = boost::asio;

// What the control side may ask of a session, always on the session's own thread.
class session_link
    : public boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
public:
    virtual ~session_link() = default;
    // Ends the session at once: a Close frame where a socket takes it now, then FIN.
    virtual void force_close() = 0;
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
    session_list& sessions() { return sessions_; }

    // A read buffer shared by every session of this thread: a session reads into it,
    // relays what it can at once and keeps only what the other side could not take.
    std::uint8_t* scratch() { return scratch_.get(); }

    // Fast non-cryptographic randomness for frame masks (xorshift64*).
    std::uint64_t random();
    std::uint64_t next_session_id() { return (std::uint64_t{index_} << 48) | ++sessions_started_; }

private:
    unsigned index_;
    asio::io_context context_{1};
    metrics::thread_shard& stats_;
    session_list sessions_;
    std::unique_ptr<std::uint8_t[]> scratch_;
    std::uint64_t rng_;
    std::uint64_t sessions_started_ = 0;
};

}  // namespace wsdrain::net
