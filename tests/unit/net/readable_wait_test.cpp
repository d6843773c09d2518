// net::async_wait_readable on a real io_context, with a connected pair of loopback sockets:
// it ends when bytes arrive, when its deadline passes, or when the socket is closed, and a
// wait still pending when the loop is destroyed is dropped without running its handler.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <optional>

#include "net/deadlines.hpp"
#include "net/readable_wait.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using wsdrain::net::async_wait_readable;
using wsdrain::net::deadline_queue;
using wsdrain::net::readable_wait;

// A connected pair on the loopback; `near` is the side that waits.
struct loopback_pair {
    explicit loopback_pair(asio::io_context& ctx) : near(ctx), far(ctx) {
        tcp::acceptor acceptor(ctx, {asio::ip::make_address("127.0.0.1"), 0});
        far.connect(acceptor.local_endpoint());
        acceptor.accept(near);
        // As after sending a request: nothing can be there yet, so the wait queues on the
        // reactor instead of completing at once to let the caller try a recv first.
        readable_wait::expect_no_input_yet(near);
    }
    tcp::socket near, far;
};

TEST(readable_wait, a_wait_ends_when_bytes_arrive_and_they_are_there_to_read) {
    asio::io_context ctx;
    deadline_queue q{ctx};
    loopback_pair p{ctx};
    bool sent = false;
    std::optional<error_code> result;
    bool sent_before_the_end = false;
    async_wait_readable(p.near, q, 10s, [&](error_code ec) {
        result = ec;
        sent_before_the_end = sent;
        ctx.stop();  // the queue's timer stays armed for the cancelled deadline
    });
    asio::steady_timer later{ctx, 20ms};
    later.async_wait([&](error_code) {
        asio::write(p.far, asio::buffer("hello", 5));
        sent = true;
    });
    ctx.run();
    ASSERT_TRUE(result);
    EXPECT_FALSE(*result) << result->message();
    EXPECT_TRUE(sent_before_the_end) << "the wait ended before anything was sent";
    EXPECT_EQ(q.size(), 0u);
    char buf[8];
    EXPECT_EQ(p.near.read_some(asio::buffer(buf)), 5u);
}

TEST(readable_wait, a_wait_with_nothing_to_read_ends_at_its_deadline_with_timed_out) {
    asio::io_context ctx;
    deadline_queue q{ctx};
    loopback_pair p{ctx};
    std::optional<error_code> result;
    const auto start = std::chrono::steady_clock::now();
    std::chrono::steady_clock::duration waited{};
    async_wait_readable(p.near, q, 50ms, [&](error_code ec) {
        result = ec;
        waited = std::chrono::steady_clock::now() - start;
    });
    ctx.run();
    ASSERT_TRUE(result);
    EXPECT_EQ(*result, asio::error::timed_out);
    EXPECT_GE(waited, 50ms);
    EXPECT_TRUE(p.near.is_open()) << "a timeout cancels the wait, not the socket";
}

TEST(readable_wait, closing_the_socket_ends_the_wait_with_operation_aborted) {
    asio::io_context ctx;
    deadline_queue q{ctx};
    loopback_pair p{ctx};
    std::optional<error_code> result;
    async_wait_readable(p.near, q, 10s, [&](error_code ec) {
        result = ec;
        ctx.stop();
    });
    asio::steady_timer later{ctx, 20ms};
    later.async_wait([&](error_code) { p.near.close(); });
    ctx.run();
    ASSERT_TRUE(result);
    EXPECT_EQ(*result, asio::error::operation_aborted);
    EXPECT_EQ(q.size(), 0u);
}

TEST(readable_wait, a_wait_pending_when_the_loop_is_destroyed_never_runs_its_handler) {
    bool ran = false;
    {
        asio::io_context ctx;
        deadline_queue q{ctx};
        loopback_pair p{ctx};
        async_wait_readable(p.near, q, 10s, [&](error_code) { ran = true; });
        ctx.run_for(10ms);
        EXPECT_EQ(q.size(), 1u);
    }  // the sanitizer builds check that the operation is freed
    EXPECT_FALSE(ran);
}

}  // namespace
