#include "net/sockets.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "net/asio_access.hpp"

namespace wsdrain::net {

using boost::system::error_code;

tcp::socket adopt_socket(const tcp::socket::executor_type& ex, const tcp& protocol, int fd, error_code& ec) {
    tcp::socket socket(ex);
    socket.assign(protocol, fd, ec);
    if (ec) {
        ::close(fd);
        return socket;
    }
    // Asio marks an assigned descriptor a possible duplicate, and not (yet) non-blocking.
    namespace ops = boost::asio::detail::socket_ops;
    auto& impl = detail::implementation_of<tcp::socket>::get(socket);
    impl.state_ = static_cast<ops::state_type>((impl.state_ & ~ops::possible_dup) | ops::internal_non_blocking);
    return socket;
}

tcp::socket open_socket(const tcp::socket::executor_type& ex, const tcp& protocol, error_code& ec) {
    const int fd = ::socket(protocol.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol.protocol());
    if (fd < 0) {
        ec.assign(errno, boost::system::system_category());
        return tcp::socket(ex);
    }
    const int on = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    return adopt_socket(ex, protocol, fd, ec);
}

}  // namespace wsdrain::net
