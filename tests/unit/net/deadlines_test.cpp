// The per-loop deadline queue, on a real io_context and its real timer.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <vector>

#include "net/deadlines.hpp"

namespace {

using namespace std::chrono_literals;
using wsdrain::net::deadline;
using wsdrain::net::deadline_queue;
using wsdrain::net::steady_clock;

// A deadline that records its firing in a shared log.
struct probe : deadline {
    probe(int id_, std::vector<int>& log_) : deadline(&probe::fired), id(id_), log(log_) {}
    static void fired(deadline& d) {
        auto& p = static_cast<probe&>(d);
        p.log.push_back(p.id);
        if (p.then) p.then(p);
    }
    int id;
    std::vector<int>& log;
    std::function<void(probe&)> then;
};

TEST(deadlines, fire_in_time_order_whatever_the_order_they_were_set) {
    boost::asio::io_context ctx;
    deadline_queue q{ctx};
    std::vector<int> log;
    probe a{1, log}, b{2, log}, c{3, log};
    const auto now = steady_clock::now();
    q.schedule(c, now + 30ms);
    q.schedule(a, now + 10ms);
    q.schedule(b, now + 20ms);
    EXPECT_EQ(q.size(), 3u);
    ctx.run();
    EXPECT_EQ(log, (std::vector<int>{1, 2, 3}));
    EXPECT_FALSE(a.scheduled());
    EXPECT_EQ(a.at(), steady_clock::time_point::max());
    EXPECT_EQ(q.size(), 0u);
}

TEST(deadlines, a_moved_deadline_fires_once_at_its_new_time_and_a_cancelled_one_never) {
    boost::asio::io_context ctx;
    deadline_queue q{ctx};
    std::vector<int> log;
    probe a{1, log}, b{2, log}, c{3, log};
    const auto now = steady_clock::now();
    q.schedule(a, now + 10ms);
    q.schedule(b, now + 20ms);
    q.schedule(c, now + 30ms);
    q.schedule(a, now + 40ms);  // later
    q.schedule(c, now + 5ms);   // earlier than the armed timer
    q.cancel(b);
    ctx.run();
    EXPECT_EQ(log, (std::vector<int>{3, 1}));
}

TEST(deadlines, a_callback_may_reschedule_itself_and_cancel_others) {
    boost::asio::io_context ctx;
    deadline_queue q{ctx};
    std::vector<int> log;
    probe a{1, log}, b{2, log};
    int rounds = 0;
    a.then = [&](probe& self) {
        if (++rounds < 3) q.schedule(self, steady_clock::now() + 1ms);
        else q.cancel(b);
    };
    const auto now = steady_clock::now();
    q.schedule(a, now + 1ms);
    q.schedule(b, now + 200ms);
    ctx.run();
    EXPECT_EQ(log, (std::vector<int>{1, 1, 1}));
}

TEST(deadlines, a_destroyed_deadline_leaves_the_queue) {
    boost::asio::io_context ctx;
    deadline_queue q{ctx};
    std::vector<int> log;
    probe a{1, log};
    {
        probe gone{2, log};
        q.schedule(gone, steady_clock::now() + 1ms);
        q.schedule(a, steady_clock::now() + 2ms);
    }
    EXPECT_EQ(q.size(), 1u);
    ctx.run();
    EXPECT_EQ(log, (std::vector<int>{1}));
}

}  // namespace
