#include "net/readable_wait.hpp"

#include "net/asio_access.hpp"

#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>

#include <sys/epoll.h>

namespace wsdrain::net {

namespace asio = boost::asio;
using boost::system::error_code;

readable_wait::op::op(callback c, void* o) : reactor_op(error_code(), &op::perform, &op::complete), cb(c), owner(o) {}

// Run by the reactor when the descriptor reports input (or an error): the wait is over.
// "Exhausted" tells the reactor not to try the next wait speculatively, so it queues quietly.
asio::detail::reactor_op::status readable_wait::op::perform(reactor_op*) { return done_and_exhausted; }

void readable_wait::op::complete(void* scheduler, asio::detail::scheduler_operation* base, const error_code&, std::size_t) {
    auto* o = static_cast<op*>(base);
    if (scheduler == nullptr) return o->cb(o->owner, nullptr);  // destroyed at shutdown
    const error_code ec = o->ec_;
    o->cb(o->owner, &ec);  // may end the owner, and this operation with it
}

#if !defined(BOOST_ASIO_HAS_EPOLL) || defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
#error "net::readable_wait reaches into Asio's epoll reactor (Linux)"
#endif

namespace {

using reactor = asio::detail::epoll_reactor;

// Asio keeps a descriptor's registered events, its last reported events and an acceptor's
// implementation private. An explicit instantiation may name a private member (access is not
// checked there); this one hands out a pointer to it.
template <auto Member, typename Tag>
struct expose {
    friend constexpr auto member(Tag) { return Member; }
};
struct registered_events_tag {
    friend constexpr auto member(registered_events_tag);
};
struct ready_events_tag {
    friend constexpr auto member(ready_events_tag);
};
struct acceptor_tag {
    friend constexpr auto member(acceptor_tag);
};
struct try_speculative_tag {
    friend constexpr auto member(try_speculative_tag);
};
template struct expose<&reactor::descriptor_state::registered_events_, registered_events_tag>;
template struct expose<&asio::detail::scheduler_operation::task_result_, ready_events_tag>;
template struct expose<&asio::ip::tcp::acceptor::impl_, acceptor_tag>;
template struct expose<&reactor::descriptor_state::try_speculative_, try_speculative_tag>;

auto& implementation_of(asio::ip::tcp::socket& s) { return detail::implementation_of<asio::ip::tcp::socket>::get(s); }
auto& implementation_of(asio::ip::tcp::acceptor& a) { return (a.*member(acceptor_tag{})).get_implementation(); }

// Each event loop thread runs one io_context: its reactor is looked up once per thread.
template <class IoObject>
reactor& reactor_of(IoObject& s) {
    thread_local asio::execution_context* context = nullptr;
    thread_local reactor* cached = nullptr;
    asio::execution_context& c = asio::query(s.get_executor(), asio::execution::context);
    if (&c != context) {
        cached = &asio::use_service<reactor>(c);
        context = &c;
    }
    return *cached;
}

}  // namespace

template <class IoObject>
void readable_wait::start_on(IoObject& object) {
    auto& impl = implementation_of(object);
    op_.ec_ = error_code();
    reactor_of(object).start_op(reactor::read_op, impl.socket_, impl.reactor_data_, &op_, true, true);
}

void readable_wait::start(asio::ip::tcp::socket& socket) { start_on(socket); }
void readable_wait::start(asio::ip::tcp::acceptor& acceptor) { start_on(acceptor); }

void readable_wait::start_watching_shutdown(asio::ip::tcp::socket& socket) {
    auto& impl = implementation_of(socket);
    if (impl.reactor_data_ == nullptr) return start(socket);  // closed: the wait fails as start() reports it
    impl.reactor_data_->*member(registered_events_tag{}) |= EPOLLRDHUP;
    op_.ec_ = error_code();
    // Not speculative: with no read queued, the reactor re-registers the descriptor
    // (EPOLL_CTL_MOD with the events above) and queues the wait.
    reactor_of(socket).start_op(reactor::read_op, impl.socket_, impl.reactor_data_, &op_, true, false);
}

bool readable_wait::input_may_remain(asio::ip::tcp::socket& socket) {
    const auto* state = implementation_of(socket).reactor_data_;
    if (state == nullptr) return true;
    // The reactor stores each event's flags in the descriptor record (a scheduler operation,
    // privately) before it runs the operations; a C-style cast may name a private base.
    const auto* record = (const asio::detail::scheduler_operation*)state;
    return (record->*member(ready_events_tag{}) & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) != 0;
}

void readable_wait::expect_no_input_yet(asio::ip::tcp::socket& socket) {
    auto* state = implementation_of(socket).reactor_data_;
    if (state) (state->*member(try_speculative_tag{}))[reactor::read_op] = false;
}

}  // namespace wsdrain::net
