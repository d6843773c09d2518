#pragma once
// A connection's byte stream, plain TCP or TLS over it, chosen at run time. The HTTP front
// uses one type for both, so each Beast operation is compiled once; a tunnel takes what it
// holds (a bare socket, or the TLS stream) when the connection upgrades.

#include <boost/asio/async_result.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <memory>

namespace wsdrain::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

// A named type (not an alias) so that headers can declare it without including OpenSSL's.
struct tls_stream : asio::ssl::stream<beast::tcp_stream> {
    using asio::ssl::stream<beast::tcp_stream>::stream;
};

// What a tunnel leg is made of: a plain socket, or a TLS stream that owns its socket.
struct leg_transport {
    tcp::socket socket;
    std::unique_ptr<tls_stream> tls;
};

class stream {
public:
    using executor_type = beast::tcp_stream::executor_type;

    explicit stream(tcp::socket socket) : plain_(std::move(socket)) {}
    explicit stream(const executor_type& ex) : plain_(ex) {}

    // Wraps the (connected) TCP stream in TLS; the handshake is the caller's next step.
    // `plain_` keeps its (now closed) place, so the executor and socket() stay valid.
    void wrap_tls(asio::ssl::context& ctx) {
        tls_ = std::make_unique<tls_stream>(beast::tcp_stream(plain_.release_socket()), ctx);
    }
    tls_stream* tls() { return tls_.get(); }

    beast::tcp_stream& tcp_layer() { return tls_ ? tls_->next_layer() : plain_; }
    tcp::socket& socket() { return tcp_layer().socket(); }
    executor_type get_executor() { return plain_.get_executor(); }
    template <class Duration>
    void expires_after(Duration d) { tcp_layer().expires_after(d); }
    void expires_never() { tcp_layer().expires_never(); }
    void close() { tcp_layer().close(); }

    // The stream for a tunnel leg; this object is left empty.
    leg_transport release() {
        if (tls_) {
            tls_->next_layer().expires_never();
            return {tcp::socket(get_executor()), std::move(tls_)};
        }
        return {plain_.release_socket(), nullptr};
    }

    template <class MutableBuffers, class Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token) {
        return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const MutableBuffers& b) {
                if (tls_) tls_->async_read_some(b, std::move(handler));
                else plain_.async_read_some(b, std::move(handler));
            },
            token, buffers);
    }

    template <class ConstBuffers, class Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token) {
        return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const ConstBuffers& b) {
                if (tls_) tls_->async_write_some(b, std::move(handler));
                else plain_.async_write_some(b, std::move(handler));
            },
            token, buffers);
    }

private:
    beast::tcp_stream plain_;  // without a socket once wrapped in TLS
    std::unique_ptr<tls_stream> tls_;
};

}  // namespace wsdrain::net
