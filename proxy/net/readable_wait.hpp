#pragma once
// A wait for a plain TCP socket to become readable, for a reader that reads until recv would
// block and only then waits (edge-triggered), as a tunnel leg does.
//
// Asio's socket.async_wait(wait_read) costs a syscall each time: it is never "speculative", so
// the epoll reactor re-arms the descriptor with epoll_ctl(EPOLL_CTL_MOD) on every call, one
// syscall per relayed message in a ping-pong. Asio registers every socket edge-triggered for
// input when it is opened, so a reader that has just seen EAGAIN needs no re-arm: this wait
// queues on the reactor the way a speculative read does (no syscall), and its "perform" step,
// run by the reactor when input arrives, only reports it. The operation lives inside its
// owner: no allocation per wait, and one wait at a time.
//
// Wait after EAGAIN, or after a short read once the socket also reports the peer's shutdown
// (EPOLLRDHUP, which Asio does not register). Without it a FIN queued behind the bytes a
// short read returned was reported by the same edge as they were, and nothing would report
// it again. With it that edge says so, and a reader that sees no shutdown reported can wait
// at once: what arrives after an event was reported makes another one. nginx reads the same
// way. It saves a recv that would block per message, a third of a ping-pong's syscalls.
// Urgent data is the other thing a short read can leave behind: recv stops at its mark. The
// event says so too (EPOLLPRI), and the reader reads on.
//
// It reaches into Asio's reactor (detail::epoll_reactor, Boost 1.81): Linux and epoll only.

#include <boost/asio/async_result.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <memory>

#include "net/deadlines.hpp"

namespace wsdrain::net {

class readable_wait {
public:
    // Runs on the socket's thread once it is readable, at EOF, or failed (ec empty: read to
    // find out which); with operation_aborted once the socket is closed. At io_context shutdown
    // it runs with ec == nullptr instead: release what the wait held, do nothing else.
    using callback = void (*)(void* owner, const boost::system::error_code* ec);

    readable_wait(callback cb, void* owner) : op_(cb, owner) {}
    readable_wait(const readable_wait&) = delete;
    readable_wait& operator=(const readable_wait&) = delete;

    // At most one wait at a time; the socket must stay open (or be closed, which aborts the
    // wait) until the callback has run.
    void start(boost::asio::ip::tcp::socket& socket);
    // The same for a listener: it is readable when a connection waits to be accepted.
    void start(boost::asio::ip::tcp::acceptor& acceptor);

    // Adds EPOLLRDHUP to the socket's registration and waits as start() does. This costs one
    // epoll_ctl, which also re-arms the descriptor: input or a FIN already queued is reported
    // again, so it may follow a short read.
    void start_watching_shutdown(boost::asio::ip::tcp::socket& socket);

    // May a short read have left input behind, by the events last reported for the socket:
    // the peer's shutdown (or an error), or urgent data, at whose mark recv stops? Only
    // meaningful once start_watching_shutdown() has been called on it. It may say yes for
    // nothing (the reactor reuses descriptor records), never the reverse: the kernel reports a
    // shutdown, and urgent data not read out of band, with every event after it.
    static bool input_may_remain(boost::asio::ip::tcp::socket& socket);

    // Tells the reactor that the socket has nothing to read yet: the caller has just sent a
    // request on it, in this same handler, and nothing can have answered. The next read then
    // waits for an event instead of first trying a recv that would block. Any event from here
    // on (the reactor has not looked since the request went out) lets reads try again.
    static void expect_no_input_yet(boost::asio::ip::tcp::socket& socket);

private:
    template <class IoObject>
    void start_on(IoObject& object);

    struct op : boost::asio::detail::reactor_op {
        op(callback c, void* o);
        static status perform(reactor_op* base);
        static void complete(void* scheduler, boost::asio::detail::scheduler_operation* base, const boost::system::error_code&, std::size_t);
        callback cb;
        void* owner;
    };
    op op_;
};

namespace detail {

// One async_wait_readable: the wait and its deadline, with the handler they complete.
template <class Handler>
class readable_within_op : deadline {
public:
    readable_within_op(Handler&& h, boost::asio::ip::tcp::socket& socket, deadline_queue& queue)
        : deadline(&on_timeout), handler_(std::move(h)), socket_(socket), queue_(queue), wait_(&on_readable, this) {}

    void start(steady_clock::duration timeout) {
        queue_.schedule(*this, steady_clock::now() + timeout);
        wait_.start(socket_);
    }

private:
    static void on_timeout(deadline& d) {
        auto& self = static_cast<readable_within_op&>(d);
        self.timed_out_ = true;
        boost::system::error_code ignored;
        self.socket_.cancel(ignored);  // the wait ends, aborted
    }
    static void on_readable(void* owner, const boost::system::error_code* ec) {
        std::unique_ptr<readable_within_op> self(static_cast<readable_within_op*>(owner));
        if (ec == nullptr) return;  // the loop is shutting down: the handler is destroyed, not run
        self->queue_.cancel(*self);
        const boost::system::error_code result =
            self->timed_out_ ? boost::system::error_code(boost::asio::error::timed_out) : *ec;
        Handler handler = std::move(self->handler_);
        self.reset();
        std::move(handler)(result);
    }

    Handler handler_;
    boost::asio::ip::tcp::socket& socket_;
    deadline_queue& queue_;
    readable_wait wait_;
    bool timed_out_ = false;
};

}  // namespace detail

// Waits, from a coroutine or any other handler, until `socket` is readable (or at EOF, or
// failed: read to find out), as readable_wait does, for at most `timeout`, kept in the loop's
// deadline queue: completes with no error, with timed_out, or with operation_aborted when the
// socket is closed. One allocation; no syscall unless the deadline is the loop's next one.
template <class Token>
auto async_wait_readable(boost::asio::ip::tcp::socket& socket, deadline_queue& queue, steady_clock::duration timeout,
                         Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [&socket, &queue, timeout](auto handler) {
            using op = detail::readable_within_op<std::decay_t<decltype(handler)>>;
            (new op(std::move(handler), socket, queue))->start(timeout);
        },
        token);
}

}  // namespace wsdrain::net
