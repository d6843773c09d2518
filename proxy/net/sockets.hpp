#pragma once
// Sockets that are non-blocking from birth (accept4 or socket with SOCK_NONBLOCK), handed to
// Asio without the syscalls it would otherwise spend on each: an ioctl(FIONBIO) before the
// first asynchronous operation, and an epoll_ctl(EPOLL_CTL_DEL) before closing a socket it
// was given (in case the descriptor is a duplicate, which these never are).

#include <boost/asio/ip/tcp.hpp>

namespace wsdrain::net {

using tcp = boost::asio::ip::tcp;

// Takes `fd`, a non-blocking socket of `protocol` this process made itself, and registers it
// with the executor's reactor. On failure `fd` is closed and the socket returned is closed.
tcp::socket adopt_socket(const tcp::socket::executor_type& ex, const tcp& protocol, int fd,
                         boost::system::error_code& ec);

// A new non-blocking TCP socket of `protocol`, with TCP_NODELAY, registered with the reactor.
tcp::socket open_socket(const tcp::socket::executor_type& ex, const tcp& protocol, boost::system::error_code& ec);

}  // namespace wsdrain::net
