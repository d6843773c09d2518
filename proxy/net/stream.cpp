#include "net/stream.hpp"

namespace wsdrain::net {

void stream::start_read(asio::mutable_buffer b, io_handler h) {
    if (tls_) tls_->async_read_some(b, std::move(h));
    else plain_.async_read_some(b, std::move(h));
}

void stream::start_write(const write_buffers& b, io_handler h) {
    if (tls_) tls_->async_write_some(b, std::move(h));
    else plain_.async_write_some(b, std::move(h));
}

}  // namespace wsdrain::net
