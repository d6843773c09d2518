#pragma once
// The deadlines of one event loop's sessions (keepalive Pings, close handshakes), kept in one
// ordered set behind one Asio timer, as nginx keeps its timers in one red-black tree.
//
// A session embeds a `deadline` (a set hook and a time, 32 bytes) instead of an Asio timer
// (120 bytes, plus an allocated operation while it waits): an idle session costs less memory,
// and moving a deadline is a tree update, not a timer cancellation and a new wait.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/set.hpp>

#include <chrono>

namespace wsdrain::net {

using steady_clock = std::chrono::steady_clock;

class deadline : public boost::intrusive::set_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>,
                                                          boost::intrusive::optimize_size<true>> {
public:
    // Runs on the loop's thread when the deadline passes (it is then no longer scheduled).
    using callback = void (*)(deadline&);
    explicit deadline(callback fire) : fire_(fire) {}

    bool scheduled() const { return is_linked(); }
    // When it fires; time_point::max() when it is not scheduled.
    steady_clock::time_point at() const { return at_; }

private:
    friend class deadline_queue;
    friend bool operator<(const deadline& a, const deadline& b) { return a.at_ < b.at_; }
    steady_clock::time_point at_ = steady_clock::time_point::max();
    callback fire_;
};

class deadline_queue {
public:
    explicit deadline_queue(boost::asio::io_context& context) : timer_(context) {}
    deadline_queue(const deadline_queue&) = delete;
    deadline_queue& operator=(const deadline_queue&) = delete;

    // Schedules `d` at `at`, or moves it there if it was scheduled.
    void schedule(deadline& d, steady_clock::time_point at);
    void cancel(deadline& d);
    std::size_t size() const { return set_.size(); }

private:
    void arm();
    void expire();

    boost::intrusive::multiset<deadline, boost::intrusive::constant_time_size<false>> set_;
    boost::asio::steady_timer timer_;
    steady_clock::time_point armed_ = steady_clock::time_point::max();  // when timer_ fires
    bool expiring_ = false;
};

}  // namespace wsdrain::net
