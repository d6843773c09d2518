#pragma once
// The TLS contexts: the listener's (certificate and key, replaced whole on reload while
// sessions made with the old one go on) and the one for TLS to backends.

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <mutex>
#include <string>

namespace wsdrain::net {

class tls_contexts {
public:
    // A client context only; reload() adds the listener's.
    tls_contexts();

    // Any thread. The listener's context for a new connection; null without listener TLS.
    std::shared_ptr<boost::asio::ssl::context> server() const;
    // The context for TLS to backends (no verification, as nginx's proxy_ssl_verify off).
    boost::asio::ssl::context& client() { return *client_; }

    // Any thread. Reads the certificate and key (again); on error keeps the old ones and throws
    // std::runtime_error naming the file.
    void reload(const std::string& cert, const std::string& key);

private:
    mutable std::mutex mutex_;
    std::shared_ptr<boost::asio::ssl::context> server_;
    std::unique_ptr<boost::asio::ssl::context> client_;
};

}  // namespace wsdrain::net
